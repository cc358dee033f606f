import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export const REPO = resolve(import.meta.dirname, '../..')
export const BIN = join(REPO, 'bin/tokenim.js')
export const PASSWORD = 'cli test password'

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** The environment of every child: cheap keystores, the test password, no inherited tokenim settings. */
export function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TOKENIM_INSECURE_FAST_KDF: '1', TOKENIM_PASSWORD: PASSWORD }
  for (const k of ['TOKENIM_HOME', 'TOKENIM_LISTEN', 'TOKENIM_BOOTSTRAP', 'TOKENIM_CHAIN', 'TOKENIM_MDNS', 'DEBUG']) delete env[k]
  return { ...env, ...extra }
}

/** Every child a test starts; `killAll()` in after hooks. */
export const children = new Set<ChildProcess>()

/**
 * Run any command from the repo root to completion with this environment (default: childEnv()); killed
 * (SIGKILL) after `timeoutMs` when given.
 */
export async function output (cmd: string, args: string[], env: NodeJS.ProcessEnv = childEnv(), timeoutMs?: number): Promise<RunResult> {
  const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c) => { resolve(c) })
    })
    return { code, stdout, stderr }
  } finally {
    clearTimeout(timer)
    children.delete(child)
  }
}

/** Run `node bin/tokenim.js ARGS` from the repo root to completion. */
export async function run (args: string[], { env = {}, timeoutMs = 30_000 }: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<RunResult> {
  return await output(process.execPath, [BIN, ...args], childEnv(env), timeoutMs)
}

/** Parse the whole of stdout as exactly one JSON document (fails on anything else there). */
export function json<T = Record<string, unknown>> (r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`)
  }
}

/** Run with --json and parse stdout; fails with the output when the exit code differs. */
export async function runJson<T = Record<string, unknown>> (args: string[], expectCode = 0, opts: { env?: Record<string, string> } = {}): Promise<T> {
  const r = await run([...args, '--json'], opts)
  if (r.code !== expectCode) throw new Error(`tokenim ${args.join(' ')} exited ${r.code}, expected ${expectCode}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`)
  return json<T>(r)
}

export interface Daemon {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
}

/** Start `tokenim daemon ARGS` in the background (the caller waits for readiness). */
export function startDaemon (args: string[], env: Record<string, string> = {}): Daemon {
  const child = spawn(process.execPath, [BIN, 'daemon', ...args], { cwd: REPO, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const exited = new Promise<number | null>(resolve => { child.once('exit', (c) => { children.delete(child); resolve(c) }) })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** Kill every child still running (SIGKILL) and wait for them. */
export async function killAll (): Promise<void> {
  await Promise.all([...children].map(async c => {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise(resolve => c.once('exit', resolve))
      c.kill('SIGKILL')
      await gone
    }
    children.delete(c)
  }))
}

export { waitFor } from '../support/wait.ts'

export class TempDirs {
  private readonly dirs: string[] = []
  async make (prefix = 'tokenim-cli-'): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix))
    this.dirs.push(dir)
    return dir
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}
