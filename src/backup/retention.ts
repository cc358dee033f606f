/**
 * Local retention (`backup --keep-last N`, config `keepLast`): unpin the bundles of older local
 * versions. The chain keeps every anchor and the backup index keeps every record; only the local pin
 * goes, so the blocks that no kept version shares become garbage-collectable. Never unpinned: the
 * newest version, and versions that are still waiting to be anchored (pending).
 */
import type { CID } from 'multiformats/cid'
import type { BackupRecord } from '../store/index.ts'
import { log } from '../util/log.ts'
import { toCid } from './blocks.ts'

const logger = log('backup:retention')

/** The part of Helia's pinning API retention needs. */
export interface PinsLike {
  rm: (cid: CID, options?: { signal?: AbortSignal }) => AsyncGenerator<CID, void, undefined>
  isPinned: (cid: CID, options?: { signal?: AbortSignal }) => Promise<boolean>
}

export interface RetentionResult {
  /** versions whose local pin was removed now */
  unpinned: number[]
  /** versions kept pinned */
  kept: number[]
}

export interface RetentionOptions {
  signal?: AbortSignal
  /**
   * unpins a version in one batch without reading its segments (a running node's `p2p.localPins().rm`);
   * else `pins.rm`, Helia's walk, which reads every block of the version back
   */
  unpin?: (cid: CID, options: { signal?: AbortSignal }) => Promise<unknown>
}

/** Which versions of `records` retention keeps pinned with `keepLast` (pure; for tests and dry runs). */
export function versionsToKeep (records: Array<Pick<BackupRecord, 'version' | 'pending'>>, keepLast: number): Set<number> {
  const sorted = [...records].sort((a, b) => b.version - a.version)
  const keep = new Set<number>()
  sorted.slice(0, Math.max(1, keepLast)).forEach(r => keep.add(r.version))
  for (const r of sorted) if (r.pending === true) keep.add(r.version)
  return keep
}

/** Drain an async generator (Helia's pins.add / pins.rm do their work only when iterated). */
export async function drain (it: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of it) n++
  return n
}

/** Unpin every version of the index but the newest `keepLast` ones and the pending ones. */
export async function applyRetention (store: { backups: () => Promise<BackupRecord[]> }, pins: PinsLike, keepLast: number, options: RetentionOptions = {}): Promise<RetentionResult> {
  if (!Number.isSafeInteger(keepLast) || keepLast < 1) throw new RangeError('keepLast must be a positive integer')
  const records = await store.backups()
  const keep = versionsToKeep(records, keepLast)
  const result: RetentionResult = { unpinned: [], kept: [] }
  for (const r of records) {
    if (keep.has(r.version)) {
      result.kept.push(r.version)
      continue
    }
    const cid = toCid(r.cid, 'cid')
    if (!(await pins.isPinned(cid, options))) continue
    if (options.unpin !== undefined) await options.unpin(cid, { signal: options.signal })
    else await drain(pins.rm(cid, { signal: options.signal }))
    result.unpinned.push(r.version)
    logger('unpinned backup version %d (%s)', r.version, r.cid)
  }
  return result
}
