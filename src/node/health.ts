/**
 * Store health at start: the node (daemon) refuses to run on a damaged message store and says what to do,
 * instead of crashing with a stack trace or silently serving a broken history.
 *
 * Three layers, cheapest first:
 *  1. opening: LevelDB corruption → STORE_CORRUPT, an unknown schema → STORE_SCHEMA_UNKNOWN (src/store);
 *     a store whose CURRENT/MANIFEST names a file that is gone (an I/O error from LevelDB) is corruption too;
 *  2. a small store (≤ `fullCheckUpTo` messages) gets the store's full consistency check;
 *  3. a larger one gets a bounded check: per conversation, its first and last rows against the summary
 *     (firstTs, lastTs, lastMessageId, and the id index of the last message), and the rows counted against
 *     the summary's count while a budget of rows and time lasts (the full check takes ~57 µs per message:
 *     5.7 s for 100,000, too slow for every start; `tokenim doctor` and `tokenim repair` do the full one).
 *
 * After those: the store marker (`<dataDir>/store.json`, src/store/marker.ts). LevelDB silently drops the
 * records of a damaged `.log` and recreates a store whose files are gone: such a store is consistent but
 * holds fewer messages than the marker recorded (or is another store), and is reported as STORE_CORRUPT
 * with the number lost, until `tokenim repair` merges a backup (or the messages come back another way).
 */
import { TokenimError, isTokenimError } from '../errors.ts'
import { StoreErrorCode } from '../store/index.ts'
import type { ConsistencyProblem, Store, StoreMarkerStatus } from '../store/index.ts'
import { log } from '../util/log.ts'

const logger = log('node:health')

/** What to tell a person whose store is damaged. */
export const STORE_REPAIR_ADVICE = 'run `tokenim repair` (rebuilds the indexes; with a chain profile it also merges the latest verified backup), or `tokenim restore --merge --mnemonic-file F` to add a backup to this data dir'

export interface StoreHealthOptions {
  /** at most this many problems are reported (default 10) */
  limit?: number
  /** stores with at most this many messages get the full consistency check (default 5,000) */
  fullCheckUpTo?: number
  /** larger stores: rows counted against the summaries, at most this many in all (default 20,000) */
  countBudget?: number
  /** larger stores: stop counting after this long (default 1,000 ms); the bounds checks always run */
  timeBudgetMs?: number
  signal?: AbortSignal
  /** messages the store may have lost against its marker before that is an error (default 0: the
   *  marker's count is durable and messages are never deleted, so any loss is damage) */
  lossTolerance?: number
}

export interface StoreHealth {
  ok: boolean
  /** 'full': every row and index entry checked; 'bounded': see the module doc */
  mode: 'full' | 'bounded'
  messages: number
  conversations: number
  problems: ConsistencyProblem[]
  ms: number
}

/** Check the store's consistency within a bounded cost (see the module doc). Never writes. */
export async function checkStoreHealth (store: Store, o: StoreHealthOptions = {}): Promise<StoreHealth> {
  const started = performance.now()
  const limit = o.limit ?? 10
  const sums = await store.conversations()
  let messages = 0
  for (const s of sums) messages += s.count
  if (messages <= (o.fullCheckUpTo ?? 5_000)) {
    const problems = await store.checkConsistency({ limit })
    return { ok: problems.length === 0, mode: 'full', messages, conversations: sums.length, problems, ms: Math.round(performance.now() - started) }
  }
  const problems: ConsistencyProblem[] = []
  const add = (p: ConsistencyProblem): void => { if (problems.length < limit) problems.push(p) }
  const deadline = started + (o.timeBudgetMs ?? 1_000)
  let budget = o.countBudget ?? 20_000
  for (const sum of sums) {
    o.signal?.throwIfAborted()
    const peer = sum.peer
    const first = await firstOf(store.messages(peer, { limit: 1 }))
    const last = await firstOf(store.messages(peer, { limit: 1, reverse: true }))
    if (first === undefined || last === undefined) {
      add({ kind: 'empty-conversation', conversation: peer, expected: 0, actual: sum.count, message: `conversation ${peer} has a summary (count ${sum.count}) but no messages` })
      continue
    }
    if (first.ts !== sum.firstTs || last.ts !== sum.lastTs || last.id !== sum.lastMessageId) {
      add({ kind: 'bounds-mismatch', conversation: peer, message: `conversation ${peer}: summary first/last (${sum.firstTs}, ${sum.lastTs}, ${sum.lastMessageId}) differ from rows (${first.ts}, ${last.ts}, ${last.id})` })
    }
    if ((await store.getMessage(last.id))?.id !== last.id) {
      add({ kind: 'index-missing', id: last.id, message: `message ${last.id} is missing from the id index` })
    }
    if (sum.count <= budget && performance.now() < deadline) {
      let rows = 0
      for await (const _ of store.messages(peer)) rows++
      budget -= rows
      if (rows !== sum.count) {
        add({ kind: 'count-mismatch', conversation: peer, expected: rows, actual: sum.count, message: `conversation ${peer}: summary count ${sum.count}, rows ${rows}` })
      }
    }
  }
  return { ok: problems.length === 0, mode: 'bounded', messages, conversations: sums.length, problems, ms: Math.round(performance.now() - started) }
}

async function firstOf<T> (it: AsyncIterable<T>): Promise<T | undefined> {
  for await (const x of it) return x
  return undefined
}

/** The STORE_CORRUPT error for a store whose check found problems (info.problems lists them). */
export function storeInconsistentError (path: string, problems: ConsistencyProblem[]): TokenimError {
  const shown = problems.slice(0, 3).map(p => p.message).join('; ')
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''
  return new TokenimError(StoreErrorCode.CORRUPT,
    `the message store at ${path} is damaged: ${shown}${more}. To fix it: ${STORE_REPAIR_ADVICE}`,
    { path, problems: problems.map(p => ({ ...p })) })
}

/**
 * The STORE_CORRUPT error for a store that lost messages against its marker, or undefined when it did
 * not (no marker, or the store holds every message the marker recorded).
 */
export function storeLossError (store: Store, o: { lossTolerance?: number } = {}): TokenimError | undefined {
  const st: StoreMarkerStatus | undefined = store.markerStatus()
  if (st?.marker === undefined) return undefined
  // a store that is not the one the marker names is lost as a whole, whatever the tolerance
  if (st.lost === 0 || (!st.idChanged && st.lost <= (o.lossTolerance ?? 0))) return undefined
  const since = new Date(st.marker.updatedAt).toISOString()
  const replaced = st.idChanged ? ' (the store was recreated: its id differs from the one recorded)' : ''
  return new TokenimError(StoreErrorCode.CORRUPT,
    `the message store lost ${st.lost} message${st.lost === 1 ? '' : 's'} since ${since}${replaced}: it has ${st.messages}, ${st.marker.messages} were recorded in ${st.path}. Run \`tokenim repair\` to bring them back from your latest backup (with no backup, \`tokenim repair --no-backup --accept-loss\` accepts the loss)`,
    { path: store.path, marker: st.path, lost: st.lost, messages: st.messages, recorded: st.marker.messages, since, idChanged: st.idChanged })
}

/** Throw STORE_CORRUPT (with the advice) when the bounded check finds a problem, or the store lost messages (marker). */
export async function assertStoreHealthy (store: Store, o: StoreHealthOptions = {}): Promise<StoreHealth> {
  const health = await checkStoreHealth(store, o)
  logger('store check (%s): %d messages, %d conversations, %d problems in %d ms', health.mode, health.messages, health.conversations, health.problems.length, health.ms)
  // damage inside the store first (its problems name what is wrong), then a consistent store that lost messages
  if (!health.ok) throw storeInconsistentError(store.path, health.problems)
  const loss = storeLossError(store, o)
  if (loss !== undefined) {
    logger('store %s lost %d messages (marker %s)', store.path, loss.info.lost, loss.info.marker)
    throw loss
  }
  return health
}

/**
 * An error from opening the store, with the advice a person needs: LevelDB reports a CURRENT or MANIFEST
 * that names a file which is gone as an I/O error, but it is damage that `tokenim repair` fixes.
 */
export function explainOpenError (err: unknown): unknown {
  if (!isTokenimError(err, StoreErrorCode.IO)) return err
  const detail = String(err.info.detail ?? err.message)
  if (!/MANIFEST|CURRENT|\.ldb|\.log|Corruption/i.test(detail)) return err
  const path = String(err.info.path ?? '')
  return new TokenimError(StoreErrorCode.CORRUPT, `the message store at ${path} is damaged (${detail}). To fix it: ${STORE_REPAIR_ADVICE}`, { path, detail }, { cause: err })
}
