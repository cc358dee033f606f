/**
 * restic, the reference for backup and restore: found on PATH, else installed from Debian when we are
 * root (`apt-get install -y restic`), else skipped with the reason. Each bench uses a fresh repository
 * in a temp dir, its password in RESTIC_PASSWORD, its cache in the temp dir too.
 */
import { join } from 'node:path'
import { run } from './util.ts'

export interface Restic {
  version: string
  env: NodeJS.ProcessEnv
  timeoutMs: number
}

export interface ResticBackup {
  ms: number
  dataAdded: number
  bytesProcessed: number
}

/** restic ready to use, or the reason it is not (installed from Debian when missing, if `mayInstall` and root). */
export async function findRestic (timeoutMs: number, mayInstall: boolean): Promise<{ restic?: string, reason?: string }> {
  const found = await run('restic', ['version']).catch(() => undefined)
  if (found?.code === 0) return { restic: found.stdout.trim() }
  if (!mayInstall) return { reason: 'restic is not installed (this scale does not install it: apt-get install -y restic)' }
  if (process.getuid?.() !== 0) return { reason: 'restic is not installed and we are not root to install it (apt-get install -y restic)' }
  const update = await run('apt-get', ['update', '-qq'], { timeoutMs: 300_000 }).catch((err: Error) => ({ code: 1, stderr: err.message, timedOut: false }))
  if (update.code !== 0) return { reason: `apt-get update failed: ${update.stderr.trim().split('\n').pop() ?? ''}` }
  const install = await run('apt-get', ['install', '-y', '-qq', 'restic'], { timeoutMs: Math.max(timeoutMs, 300_000), env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    .catch((err: Error) => ({ code: 1, stderr: err.message, timedOut: false }))
  if (install.code !== 0) return { reason: `apt-get install -y restic failed${install.timedOut ? ' (timed out)' : ''}: ${install.stderr.trim().split('\n').pop() ?? ''}` }
  const again = await run('restic', ['version']).catch(() => undefined)
  return again?.code === 0 ? { restic: again.stdout.trim() } : { reason: 'restic still not runnable after apt-get install' }
}

export function resticIn (dir: string, version: string, timeoutMs: number): Restic {
  return {
    version,
    timeoutMs,
    env: {
      ...process.env,
      RESTIC_REPOSITORY: join(dir, 'repo'),
      RESTIC_PASSWORD: process.env.RESTIC_PASSWORD ?? 'tokenim bench (not secret)',
      RESTIC_CACHE_DIR: join(dir, 'cache')
    }
  }
}

async function restic (r: Restic, args: string[], cwd?: string): Promise<{ stdout: string, ms: number }> {
  const res = await run('restic', args, { env: r.env, cwd, timeoutMs: r.timeoutMs })
  if (res.timedOut) throw new Error(`restic ${args[0]} took longer than ${r.timeoutMs} ms`)
  if (res.code !== 0) throw new Error(`restic ${args[0]} exited ${String(res.code)}: ${res.stderr.trim().split('\n').slice(-2).join(' ')}`)
  return { stdout: res.stdout, ms: res.ms }
}

export async function resticInit (r: Restic): Promise<void> {
  await restic(r, ['init'])
}

/** `restic backup --json DIR` (run inside DIR's parent so paths are stable); its summary. */
export async function resticBackup (r: Restic, parent: string, dir: string): Promise<ResticBackup> {
  const { stdout, ms } = await restic(r, ['backup', '--json', '--quiet', dir], parent)
  const summary = stdout.trim().split('\n').map(line => { try { return JSON.parse(line) as Record<string, unknown> } catch { return {} } })
    .find(o => o.message_type === 'summary')
  if (summary === undefined) throw new Error('restic backup printed no summary')
  return { ms, dataAdded: Number(summary.data_added), bytesProcessed: Number(summary.total_bytes_processed) }
}

export async function resticRestore (r: Restic, target: string): Promise<number> {
  return (await restic(r, ['restore', 'latest', '--target', target])).ms
}

/**
 * What any restic command costs before it does its work: opening the repository (reading the config and
 * deriving the key from the password with its scrypt). The median of `runs` `restic cat config`, for the
 * bench's notes: most of restic's time at these sizes is this.
 */
export async function resticFixedCost (r: Restic, runs = 3): Promise<number> {
  const ms: number[] = []
  for (let i = 0; i < runs; i++) ms.push((await restic(r, ['cat', 'config'])).ms)
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]
}
