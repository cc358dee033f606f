/** Small helpers shared by the bench sections. */
import { spawn } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** the repository root (scripts/bench/../..) */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

export const PASSWORD = 'bench password (not secret)'
/** keystore scrypt cost for bench identities (real keystores use 2^17) */
export const CHEAP_KDF = 1024

/** Poll until `check` holds, with a deadline (never a fixed sleep). */
export async function until (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
  ms: number
  timedOut: boolean
}

/** Run a command to its end (killed after `timeoutMs`), capturing its output. */
export async function run (cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv, cwd?: string, timeoutMs?: number } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, options.timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, ms: performance.now() - t0, timedOut })
    })
  })
}

export function median (values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]
}
