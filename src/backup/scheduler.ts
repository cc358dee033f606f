/**
 * Scheduled backups (`daemon --backup-every DUR`): every period (± jitter) the scheduler anchors
 * pending versions and, when the store changed since the last version (storeFingerprint), makes a new
 * one. A failure (an error, or a version left pending) is logged and retried with exponential backoff
 * (1 min, 2 min, … up to the period). `status()` (and the store meta key `backup.scheduler`) tells the
 * last success and the pending problem.
 */
import { isTokenimError } from '../errors.ts'
import { log } from '../util/log.ts'
import { META_FINGERPRINT, runBackup, storeFingerprint } from './job/run.ts'
import type { BackupDeps, RunBackupOptions } from './job/run.ts'

const logger = log('backup:scheduler')

import { META_SCHEDULER } from './job/health.ts'
export { META_SCHEDULER }
export const DEFAULT_RETRY_BASE_MS = 60_000

export interface SchedulerStatus {
  everyMs: number
  running: boolean
  nextRunAt?: number
  lastRunAt?: number
  lastSuccessAt?: number
  lastSuccessVersion?: number
  /** consecutive failed runs */
  failures: number
  /** the problem of the last run, when it failed or left a version pending */
  problem?: { code: string, message: string, at: number }
}

export interface BackupSchedulerOptions {
  deps: BackupDeps
  everyMs: number
  /** options passed to every run (chain, replicas, keepLast, passphrase, …) */
  backup?: Omit<RunBackupOptions, 'node' | 'deps' | 'signal' | 'anchorPending' | 'out' | 'onProgress'>
  /** fraction of the period added or removed at random (default 0.1) */
  jitter?: number
  /** first retry delay after a failure (default 1 min; doubles up to everyMs) */
  retryBaseMs?: number
  /** delay before the first run (default: one period) */
  firstRunMs?: number
}

export interface BackupScheduler {
  status: () => SchedulerStatus
  /** run now (waits for it); resolves the status after the run */
  runNow: () => Promise<SchedulerStatus>
  stop: () => Promise<void>
}

export function startBackupScheduler (o: BackupSchedulerOptions): BackupScheduler {
  if (!Number.isSafeInteger(o.everyMs) || o.everyMs < 1) throw new RangeError('everyMs must be a positive integer')
  const jitter = o.jitter ?? 0.1
  const retryBase = o.retryBaseMs ?? DEFAULT_RETRY_BASE_MS
  const { store } = o.deps
  const shutdown = new AbortController()
  const state: SchedulerStatus = { everyMs: o.everyMs, running: false, failures: 0 }
  let timer: NodeJS.Timeout | undefined
  let current: Promise<void> | undefined
  let stopped = false

  const jittered = (ms: number): number => Math.max(1_000, Math.round(ms * (1 + (Math.random() * 2 - 1) * jitter)))

  const schedule = (ms: number): void => {
    if (stopped) return
    clearTimeout(timer)
    state.nextRunAt = Date.now() + ms
    timer = setTimeout(() => { void tick() }, ms)
    timer.unref()
  }

  const persist = async (): Promise<void> => {
    await store.setMeta(META_SCHEDULER, { ...state }).catch(() => {})
  }

  const once = async (): Promise<void> => {
    const signal = shutdown.signal
    const base = { ...o.backup, deps: o.deps, signal }
    let problem: { code: string, message: string } | undefined
    let version: number | undefined
    const pending = (await store.backups()).some(r => r.pending === true)
    if (pending && base.chain !== undefined && base.noAnchor !== true) {
      const r = await runBackup({ ...base, anchorPending: true })
      if (r.pending.length > 0) problem = r.versions.find(v => v.error !== undefined)?.error ?? { code: 'ANCHOR_PENDING', message: `versions ${r.pending.join(', ')} are still pending` }
    }
    const changed = (await storeFingerprint(store)) !== await store.getMeta<string>(META_FINGERPRINT)
    if (problem === undefined && changed) {
      const r = await runBackup(base)
      version = r.version
      if (r.outcome === 'pending') problem = r.warnings.find(w => w.code === 'ANCHOR_PENDING') ?? { code: 'ANCHOR_PENDING', message: `version ${r.version} is pending` }
      for (const w of r.warnings) logger('backup v%d: %s %s', r.version, w.code, w.message)
    } else if (!changed) {
      logger('nothing changed since the last backup')
    }
    if (problem !== undefined) throw Object.assign(new Error(problem.message), { code: problem.code })
    state.lastSuccessAt = Date.now()
    if (version !== undefined) state.lastSuccessVersion = version
  }

  const tick = async (): Promise<void> => {
    if (stopped || current !== undefined) return await current
    state.running = true
    state.lastRunAt = Date.now()
    current = (async () => {
      try {
        await once()
        state.failures = 0
        delete state.problem
        schedule(jittered(o.everyMs))
      } catch (err) {
        if (stopped) return
        state.failures++
        const code = isTokenimError(err) ? err.code : typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'INTERNAL'
        state.problem = { code, message: (err as Error).message, at: Date.now() }
        const delay = Math.min(o.everyMs, retryBase * 2 ** Math.min(20, state.failures - 1))
        logger.error('scheduled backup failed (%s: %s); retrying in %d s', code, (err as Error).message, Math.round(delay / 1000))
        schedule(jittered(delay))
      } finally {
        state.running = false
        await persist()
        current = undefined
      }
    })()
    await current
  }

  schedule(o.firstRunMs ?? jittered(o.everyMs))
  return {
    status: () => ({ ...state }),
    runNow: async () => {
      clearTimeout(timer)
      await tick()
      return { ...state }
    },
    stop: async () => {
      stopped = true
      clearTimeout(timer)
      shutdown.abort()
      await current?.catch(() => {})
    }
  }
}
