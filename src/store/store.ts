/**
 * The level 10 (LevelDB) database of a tokenim node, at `<dataDir>/store`.
 *
 * Keys are UTF-8 text; values are CBOR (cborg, maps in the record's field order, byte strings for
 * Uint8Array) unless noted. Sublevels (level prefixes them as `!name!`):
 *
 *   meta        name                                  → value          ('schemaVersion' → 1, checked on open;
 *                                                                          'storeId' → the id in `<path>.json`, see marker.ts;
 *                                                                          'conversationRevs' → 1 once every summary has a change token)
 *   msg         <conversation>!<ts:16 digits>!<id>    → StoredMessage  (per-conversation order by (ts, id))
 *   msg-id      <id>                                  → msg key (utf8) (uniqueness + lookups by id)
 *   conv        <peer address>                        → ConversationRevision (a summary written in the same batch as
 *                                                                          rows; its `rev` is replaced by every write of them)
 *   contact     <address>                             → Contact
 *   outbox      <message id>                          → OutboxEntry    (envelope as CBOR bytes)
 *   outbox-due  <nextAttemptAt:16 digits>!<id>        → '' (utf8)      (due entries in time order)
 *   backup      <version:16 digits>                   → BackupRecord
 *   seen        <envelope id>                         → ts             (replay protection)
 *   seen-ts     <ts:16 digits>!<envelope id>          → '' (utf8)      (pruning in time order)
 *
 * Addresses are lowercase `0x` + 40 hex (42 characters), so a conversation's rows are the range
 * [`<conv>!`, `<conv>"`) and the whole `msg` sublevel is conversation by conversation in time order.
 * ts/versions are zero-padded decimal (16 digits covers Number.MAX_SAFE_INTEGER), so text order is
 * numeric order. Ids are printable ASCII, so (ts, id) order is the same in JS and in LevelDB.
 *
 * Every write that touches several keys is one LevelDB batch (atomic). Writes that read before they
 * write (uniqueness, counts) are serialised by an in-process lock; LevelDB's LOCK file keeps other
 * processes out.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { Level } from 'level'
import * as cborg from 'cborg'
import { TokenimError } from '../errors.ts'
import { ensurePrivateDir, exists } from '../util/fs.ts'
import { log } from '../util/log.ts'
import { NOT_DECODED, decodeRecord, encodeRecord } from './cbor.ts'
import { rowHasAttachment, rowStatus, withStatus } from './row.ts'
import { markerPathFor, readMarker, writeMarker } from './marker.ts'
import type { StoreMarker, StoreMarkerStatus } from './marker.ts'
import { StoreErrorCode, invalidArgument, invalidMessage, toOpenError, toStoreError } from './errors.ts'
import {
  checkAddress, checkId, checkStatus, checkTime, MAX_ID_LENGTH, normalizeBackup, normalizeContact, normalizeMessage,
  normalizeOutboxEntry
} from './validate.ts'
import type {
  AddMessagesResult, BackupRecord, ConsistencyProblem, Contact, ConversationRevision, ConversationSummary, MessageQuery,
  MessageStatus, OutboxEntry, StoredMessage
} from './types.ts'

const logger = log('store')

/** The schema this code reads and writes. */
export const SCHEMA_VERSION = 1
const SCHEMA_KEY = 'schemaVersion'
/** meta: this store's id (also in the marker file, see marker.ts) */
const STORE_ID_KEY = 'storeId'
/** meta: written with sync before the marker, so the count the marker records is durable */
const MARKER_SYNC_KEY = 'markerSyncedAt'
/** meta: written with sync by {@link Store.sync} */
const SYNC_KEY = 'syncedAt'
/** meta: 1 once every conversation summary has a change token (see giveRevs): later opens skip the scan */
const REVS_KEY = 'conversationRevs'
/** the marker is rewritten at most this often while messages are added (and on close) */
export const DEFAULT_MARKER_INTERVAL_MS = 60_000
const SEP = '!'
/** the character after SEP: upper bound of a `<prefix>!` range */
const SEP_END = '"'
const NUM_WIDTH = 16
const ADDRESS_LENGTH = 42
const CHUNK = 512
/** rows, and bytes of rows, per read of a message scan (see Reader.messages) */
const READ_AHEAD = 1000
/** classic-level's byte limit per read (its option, not in abstract-level's types) */
const SCAN_OPTIONS: object = { highWaterMarkBytes: 1024 * 1024 }

export function padNum (n: number): string {
  return String(n).padStart(NUM_WIDTH, '0')
}

export function messageKey (conversation: string, ts: number, id: string): string {
  return `${conversation}${SEP}${padNum(ts)}${SEP}${id}`
}

export function parseMessageKey (key: string): { conversation: string, ts: number, id: string } | undefined {
  const tsStart = ADDRESS_LENGTH + 1
  const idStart = tsStart + NUM_WIDTH + 1
  if (key.length <= idStart || key[ADDRESS_LENGTH] !== SEP || key[idStart - 1] !== SEP) return undefined
  const ts = Number(key.slice(tsStart, idStart - 1))
  if (!Number.isSafeInteger(ts)) return undefined
  return { conversation: key.slice(0, ADDRESS_LENGTH), ts, id: key.slice(idStart) }
}

const cborCodec = {
  name: 'tokenim-cbor',
  format: 'view' as const,
  // no map sorting: records are built in a fixed field order, which is then kept on disk and on read;
  // the same bytes through a fast path for the plain records the store writes (cbor.ts)
  encode: (v: unknown): Uint8Array => encodeRecord(v) ?? cborg.encode(v, { mapSorter: undefined }),
  decode: (b: Uint8Array): unknown => {
    const v = decodeRecord(b)
    return v === NOT_DECODED ? cborg.decode(b) : v
  }
}

/** the CBOR value encoding, typed for one sublevel's records (validated before they are written) */
function cbor<T> (): { name: string, format: 'view', encode: (v: T) => Uint8Array, decode: (b: Uint8Array) => T } {
  return cborCodec as { name: string, format: 'view', encode: (v: T) => Uint8Array, decode: (b: Uint8Array) => T }
}

/**
 * LevelDB keeps every table file it has open memory-mapped, and every page read stays in the process's
 * RSS while the file is in its table cache (max_open_files - 10; default 1,000 files of 2 MiB): a backup
 * that reads a 1,000,000-message store once held ~220 MB of it. 74, LevelDB's minimum, bounds that to
 * 64 tables, and tables of at most 1 MiB (LevelDB's smallest max_file_size; it writes them ~1.06 MB) to
 * ~68 MB (was ~128 MiB with 2 MiB tables). Tables written before keep their size until compacted.
 */
const MAX_OPEN_FILES = 74
const MAX_FILE_SIZE = 1024 * 1024

function db0 (path: string, createIfMissing: boolean, writeBufferSize?: number): Level<string, Uint8Array> {
  return new Level<string, Uint8Array>(path, {
    keyEncoding: 'utf8', valueEncoding: 'view', createIfMissing, maxOpenFiles: MAX_OPEN_FILES, maxFileSize: MAX_FILE_SIZE,
    ...(writeBufferSize !== undefined ? { writeBufferSize } : {})
  })
}
type Root = ReturnType<typeof db0>
function subs (db: Root) {
  return {
    meta: db.sublevel<string, unknown>('meta', { keyEncoding: 'utf8', valueEncoding: cbor<unknown>() }),
    msg: db.sublevel<string, StoredMessage>('msg', { keyEncoding: 'utf8', valueEncoding: cbor<StoredMessage>() }),
    msgId: db.sublevel<string, string>('msg-id', { keyEncoding: 'utf8', valueEncoding: 'utf8' }),
    conv: db.sublevel<string, ConversationRevision>('conv', { keyEncoding: 'utf8', valueEncoding: cbor<ConversationRevision>() }),
    contact: db.sublevel<string, Contact>('contact', { keyEncoding: 'utf8', valueEncoding: cbor<Contact>() }),
    outbox: db.sublevel<string, OutboxEntry>('outbox', { keyEncoding: 'utf8', valueEncoding: cbor<OutboxEntry>() }),
    outboxDue: db.sublevel<string, string>('outbox-due', { keyEncoding: 'utf8', valueEncoding: 'utf8' }),
    backup: db.sublevel<string, BackupRecord>('backup', { keyEncoding: 'utf8', valueEncoding: cbor<BackupRecord>() }),
    seen: db.sublevel<string, number>('seen', { keyEncoding: 'utf8', valueEncoding: cbor<number>() }),
    seenTs: db.sublevel<string, string>('seen-ts', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  }
}
type Subs = ReturnType<typeof subs>
/** the value types of the sublevels read by the messaging paths (see Store.#getMany) */
interface SubValues { msg: StoredMessage, msgId: string, conv: ConversationRevision, outbox: OutboxEntry, seen: number }
type SubValue<N extends keyof SubValues> = SubValues[N]
type Snapshot = ReturnType<Root['snapshot']>
type Batch = ReturnType<Root['batch']>

/** read a record's stored bytes, not its decoding */
const RAW = { valueEncoding: 'view' }

/** classic-level's `sync` write option (fsync the log before the write returns); not in abstract-level's types */
const SYNC_WRITE = { sync: true } as unknown as Parameters<Subs['meta']['put']>[2]

interface MarkerState {
  path: string
  storeId: string
  /** messages in the store (counted at open, then kept up to date by the writes) */
  messages: number
  marker?: StoreMarker
  intervalMs: number
  lastWriteAt: number
  task: Promise<void>
}

/** the store may (re)write its marker: none yet, or it still holds every message the marker recorded */
function markerOk (mk: MarkerState): boolean {
  return mk.marker === undefined || mk.messages >= mk.marker.messages
}

/** Serialises read-modify-write operations within this process. */
class Lock {
  #tail: Promise<void> = Promise.resolve()
  run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn)
    this.#tail = result.then(() => {}, () => {})
    return result
  }
}

function outboxFromDb (e: OutboxEntry): OutboxEntry {
  return { ...e, envelope: new Uint8Array(e.envelope) }
}

function dueKey (nextAttemptAt: number, id: string): string {
  return `${padNum(nextAttemptAt)}${SEP}${id}`
}

/**
 * A new change token for the conversations a batch writes rows of (ConversationRevision.rev). Random
 * rather than a counter: rebuildIndexes recomputes summaries from the rows, and a counter recomputed or
 * restored could repeat a value that once named other rows; 128 random bits never do.
 */
function newRev (): string {
  return randomBytes(16).toString('base64url')
}

/** the summary without its change token (which stays inside the store and the backup) */
function summaryOf (r: ConversationRevision): ConversationSummary {
  return { peer: r.peer, count: r.count, firstTs: r.firstTs, lastTs: r.lastTs, lastMessageId: r.lastMessageId }
}

function isNewer (ts: number, id: string, than: { lastTs: number, lastMessageId: string }): boolean {
  return ts > than.lastTs || (ts === than.lastTs && id > than.lastMessageId)
}

/** the summary with m added; its append run (ConversationRevision.run) is kept only when m sorts after every row */
/** what a message's keys are made of */
interface Keyed { id: string, conversation: string, ts: number }

/**
 * A message as the store writes it: its id, conversation and ts (what its keys are made of) and its record's
 * bytes, which must be exactly what the store encodes for the validated message ({@link messageRecord}).
 */
export interface MessageRecord extends Keyed {
  bytes: Uint8Array
}

/** The record of a message, validated as addMessages validates it (INVALID_MESSAGE). */
export function messageRecord (msg: StoredMessage): MessageRecord {
  const m = normalizeMessage(msg)
  return { id: m.id, conversation: m.conversation, ts: m.ts, bytes: cborCodec.encode(m) }
}

/** the parts of records that make keys: checked as normalizeMessage checks them (INVALID_MESSAGE, with the index) */
function checkRecords (records: MessageRecord[]): void {
  if (!Array.isArray(records)) throw invalidArgument('addMessageRecords needs an array of records')
  // records come conversation by conversation: an address is tested once while it stays the same
  let lastConversation: string | undefined
  records.forEach((r, index) => {
    const ok = r !== null && typeof r === 'object' && typeof r.id === 'string' && r.id.length > 0 && r.id.length <= MAX_ID_LENGTH && RECORD_ID_RE.test(r.id) &&
      typeof r.conversation === 'string' && (r.conversation === lastConversation || RECORD_ADDRESS_RE.test(r.conversation)) &&
      Number.isSafeInteger(r.ts) && r.ts >= 0 && r.bytes instanceof Uint8Array && r.bytes.length > 0
    if (!ok) throw invalidMessage(`record ${index} is not a message record (id, lowercase conversation address, ts, bytes)`, { index })
    lastConversation = r.conversation
  })
}

const RECORD_ID_RE = /^[\x21-\x7e]+$/
const RECORD_ADDRESS_RE = /^0x[0-9a-f]{40}$/

/** a record's bytes put as they are into a sublevel whose values are otherwise encoded */
function RECORD_OPTIONS (sublevel: unknown): object {
  return { sublevel, valueEncoding: 'view' }
}

function bump (sum: ConversationRevision | undefined, m: Keyed): ConversationRevision {
  if (sum === undefined) return { peer: m.conversation, count: 1, firstTs: m.ts, lastTs: m.ts, lastMessageId: m.id }
  const newer = isNewer(m.ts, m.id, sum)
  const next: ConversationRevision = {
    peer: sum.peer,
    count: sum.count + 1,
    firstTs: Math.min(sum.firstTs, m.ts),
    lastTs: newer ? m.ts : sum.lastTs,
    lastMessageId: newer ? m.id : sum.lastMessageId
  }
  if (newer && sum.run !== undefined) next.run = sum.run
  return next
}

/** bump() on a summary this batch made (not one read from the store): the same fields, in place */
function bumpInPlace (sum: ConversationRevision, m: Keyed): void {
  const newer = isNewer(m.ts, m.id, sum)
  sum.count++
  if (m.ts < sum.firstTs) sum.firstTs = m.ts
  if (newer) {
    sum.lastTs = m.ts
    sum.lastMessageId = m.id
  } else {
    delete sum.run
  }
}

function range (conversation: string | undefined, q: MessageQuery): { gte?: string, lt?: string } {
  if (conversation === undefined) return {}
  const since = q.since === undefined ? undefined : Math.max(0, Math.ceil(q.since))
  const until = q.until === undefined ? undefined : Math.floor(q.until)
  return {
    gte: since === undefined ? `${conversation}${SEP}` : `${conversation}${SEP}${padNum(since)}${SEP}`,
    lt: until === undefined || until >= Number.MAX_SAFE_INTEGER
      ? `${conversation}${SEP_END}`
      : `${conversation}${SEP}${padNum(Math.max(0, until + 1))}${SEP}`
  }
}

function checkQuery (q: MessageQuery): void {
  for (const f of ['since', 'until'] as const) {
    const v = q[f]
    if (v !== undefined && (typeof v !== 'number' || Number.isNaN(v))) throw invalidArgument(`${f} must be a number (ms)`, { field: f })
  }
  if (q.limit !== undefined && (!Number.isInteger(q.limit) || q.limit < 0)) throw invalidArgument('limit must be a non-negative integer', { field: 'limit' })
}

/**
 * Store.allMessages' `skip`: asked once per conversation at its first row; `true` passes over its rows,
 * `{ after }` over those up to and including that (ts, id), `false` reads them all.
 */
export type SkipConversation = (conversation: string) => boolean | { after: { ts: number, id: string } }

/** Reads shared by Store and StoreSnapshot. */
class Reader {
  readonly s: Subs
  readonly path: string
  constructor (s: Subs, path: string) {
    this.s = s
    this.path = path
  }

  async getMessage (id: string, snapshot?: Snapshot): Promise<StoredMessage | undefined> {
    try {
      const key = await this.s.msgId.get(id, { snapshot })
      if (key === undefined) return undefined
      return await this.s.msg.get(key, { snapshot })
    } catch (err) {
      throw toStoreError(err, this.path)
    }
  }

  async * messages (conversation: string | undefined, q: MessageQuery, snapshot?: Snapshot): AsyncGenerator<StoredMessage> {
    const conv = conversation === undefined ? undefined : checkAddress(conversation, 'conversation')
    checkQuery(q)
    if (q.limit === 0) return
    const filter = conv === undefined && (q.since !== undefined || q.until !== undefined)
    const since = q.since ?? -Infinity
    const until = q.until ?? Infinity
    let left = q.limit ?? Infinity
    const it = this.s.msg.values({
      ...range(conv, q),
      reverse: q.reverse === true,
      ...(q.limit !== undefined && !filter ? { limit: q.limit } : {}),
      ...SCAN_OPTIONS,
      snapshot
    })
    // up to READ_AHEAD rows per LevelDB read (one promise each, not one per row; classic-level's default
    // stops a read at 16 KiB, ~40 rows: SCAN_OPTIONS), the next read already under way on the thread pool
    // while this one's rows are taken: a backup, which takes every row, waited for ~2,500 reads in turn
    // at 100,000 messages
    let next: Promise<StoredMessage[]> | undefined = it.nextv(READ_AHEAD)
    try {
      while (next !== undefined) {
        const rows: StoredMessage[] = await next
        next = rows.length === 0 ? undefined : it.nextv(READ_AHEAD)
        next?.catch(() => {}) // awaited next round, or left to close() when the reader stops
        for (const m of rows) {
          if (filter && (m.ts < since || m.ts > until)) continue
          yield m
          if (--left <= 0) return
        }
      }
    } catch (err) {
      throw toStoreError(err, this.path)
    } finally {
      // waits for a read under way
      await it.close().catch(() => {})
    }
  }

  /**
   * Every message row's stored bytes (its record as written, not decoded), in key order (conversation by
   * conversation, each by ts and id), in batches of up to READ_AHEAD rows, the next LevelDB read under way
   * while one batch is taken: for a reader that makes its own form of the rows (a backup's segment
   * messages, src/backup/transcode.ts) and decodes only the rows it cannot ({@link decodeMessageRecord}).
   */
  async * messageRecords (snapshot?: Snapshot): AsyncGenerator<Uint8Array[]> {
    const it = this.s.msg.values<string, Uint8Array>({ ...SCAN_OPTIONS, valueEncoding: 'view', snapshot })
    let next: Promise<Uint8Array[]> | undefined = it.nextv(READ_AHEAD)
    try {
      while (next !== undefined) {
        const rows: Uint8Array[] = await next
        next = rows.length === 0 ? undefined : it.nextv(READ_AHEAD)
        next?.catch(() => {}) // awaited next round, or left to close() when the reader stops
        if (rows.length > 0) yield rows
      }
    } catch (err) {
      throw toStoreError(err, this.path)
    } finally {
      await it.close().catch(() => {})
    }
  }

  /**
   * Every message with an attachment, in store order, as messages() gives them: the other rows are read as
   * bytes only (row.ts rowHasAttachment; a row it cannot tell about is decoded). For the attachment
   * service's scan at start, which decoded every message of the store to find the few with one.
   */
  async * messagesWithAttachments (snapshot?: Snapshot): AsyncGenerator<StoredMessage> {
    for await (const rows of this.messageRecords(snapshot)) {
      for (const row of rows) {
        if (rowHasAttachment(row) === false) continue
        const m = this.decodeMessageRecord(row)
        if (m.attachment !== undefined && m.attachment !== null) yield m
      }
    }
  }

  /** A row's bytes from {@link messageRecords} as messages() gives it (the same decoding, the same error). */
  decodeMessageRecord (bytes: Uint8Array): StoredMessage {
    try {
      return cborCodec.decode(bytes) as StoredMessage
    } catch (err) {
      throw toStoreError(Object.assign(new Error(`Could not decode value: ${(err as Error).message}`), { code: 'LEVEL_DECODE_ERROR', cause: err }), this.path)
    }
  }

  /**
   * Every message, as messages(undefined, {}), except the conversations `skip` names: `skip` is asked
   * once per conversation, when its first row is reached, and for a yes the iterator seeks past the
   * conversation's rows (they are never read further or decoded); for `{ after }` it seeks past the
   * conversation's rows up to and including the (ts, id) given and goes on from there.
   */
  async * allMessages (snapshot?: Snapshot, skip?: SkipConversation): AsyncGenerator<StoredMessage> {
    if (skip === undefined) {
      yield * this.messages(undefined, {}, snapshot)
      return
    }
    const it = this.s.msg.values({ snapshot })
    const asked = new Set<string>()
    let current: string | undefined
    try {
      for await (const m of it) {
        if (m.conversation !== current) {
          current = m.conversation
          if (!asked.has(current)) {
            asked.add(current)
            const answer = skip(current)
            if (answer === true) {
              it.seek(`${current}${SEP_END}`)
              continue
            }
            if (typeof answer === 'object' && answer !== null && !isNewer(m.ts, m.id, { lastTs: answer.after.ts, lastMessageId: answer.after.id })) {
              // this row is not after it: on from the first key after it ('\0' sorts first)
              it.seek(`${messageKey(current, answer.after.ts, answer.after.id)}\0`)
              continue
            }
          }
        }
        yield m
      }
    } catch (err) {
      throw toStoreError(err, this.path)
    } finally {
      await it.close().catch(() => {})
    }
  }

  async conversation (peer: string, snapshot?: Snapshot): Promise<ConversationSummary | undefined> {
    const key = checkAddress(peer, 'peer')
    try {
      const sum = await this.s.conv.get(key, { snapshot })
      return sum === undefined ? undefined : summaryOf(sum)
    } catch (err) {
      throw toStoreError(err, this.path)
    }
  }

  async conversations (snapshot?: Snapshot): Promise<ConversationSummary[]> {
    return (await this.revisions(snapshot)).map(summaryOf)
  }

  async revisions (snapshot?: Snapshot): Promise<ConversationRevision[]> {
    try {
      return await this.s.conv.values({ snapshot }).all()
    } catch (err) {
      throw toStoreError(err, this.path)
    }
  }

  async countMessages (conversation?: string, snapshot?: Snapshot): Promise<number> {
    if (conversation !== undefined) return (await this.conversation(conversation, snapshot))?.count ?? 0
    let total = 0
    try {
      for await (const c of this.s.conv.values({ snapshot })) total += c.count
    } catch (err) {
      throw toStoreError(err, this.path)
    }
    return total
  }
}

export interface OpenStoreOptions {
  /** create the database when missing (default true); false → STORE_NOT_FOUND */
  createIfMissing?: boolean
  /** keep the marker `<path>.json` (see marker.ts; default true) */
  marker?: boolean
  /** rewrite the marker at most this often while messages are added (default 60 s; also on close) */
  markerIntervalMs?: number
  /** LevelDB's write buffer (its memtable) for this open: larger for a bulk import (default LevelDB's 4 MiB) */
  writeBufferBytes?: number
}

/**
 * Open (creating if needed) the store at `path` (normally `<dataDir>/store`).
 * Throws STORE_LOCKED, STORE_CORRUPT, STORE_SCHEMA_UNKNOWN, STORE_NOT_FOUND or STORE_IO.
 */
export async function openStore (path: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const createIfMissing = opts.createIfMissing ?? true
  if (createIfMissing) await ensurePrivateDir(path).catch((err: unknown) => { throw toOpenError(err, path) })
  // LevelDB asked to open a database that is not there makes its directory, LOCK and LOG before it
  // refuses: a look at a data dir without a store (doctor, anchor-request) left an empty store behind,
  // which a restore into that dir then took for data (TARGET_NOT_EMPTY). CURRENT names a database's
  // manifest: without it LevelDB refuses anyway, so the answer is the same, with nothing written.
  else if (!await exists(join(path, 'CURRENT'))) throw new TokenimError(StoreErrorCode.NOT_FOUND, `no message store at ${path}`, { path })
  const db = db0(path, createIfMissing, opts.writeBufferBytes)
  try {
    await db.open()
  } catch (err) {
    throw toOpenError(err, path)
  }
  try {
    const s = subs(db)
    const version = await s.meta.get(SCHEMA_KEY)
    if (version === undefined) {
      let empty = true
      for await (const _ of db.keys({ limit: 1 })) empty = false
      if (!empty) {
        throw new TokenimError(StoreErrorCode.CORRUPT,
          `the message store at ${path} has data but no schema version: run \`tokenim repair\` (or restore from a backup)`, { path })
      }
      await s.meta.put(SCHEMA_KEY, SCHEMA_VERSION)
      logger('created store at %s (schema %d)', path, SCHEMA_VERSION)
    } else if (version !== SCHEMA_VERSION) {
      throw new TokenimError(StoreErrorCode.SCHEMA_UNKNOWN,
        `the message store at ${path} has schema version ${JSON.stringify(version)}, this tokenim understands version ${SCHEMA_VERSION}: upgrade tokenim (or use a different data dir)`,
        { path, found: typeof version === 'number' || typeof version === 'string' ? version : String(version), supported: SCHEMA_VERSION })
    }
    let storeId = await s.meta.get(STORE_ID_KEY)
    if (typeof storeId !== 'string') {
      storeId = randomUUID()
      await s.meta.put(STORE_ID_KEY, storeId)
    }
    await giveRevs(s)
    const store = new Store(db, s, path)
    if (opts.marker !== false) {
      const markerPath = markerPathFor(path)
      const messages = await store.countMessages()
      store.initMarker({ path: markerPath, storeId: storeId as string, messages, marker: await readMarker(markerPath), intervalMs: opts.markerIntervalMs ?? DEFAULT_MARKER_INTERVAL_MS })
    }
    return store
  } catch (err) {
    await db.close().catch(() => {})
    throw toStoreError(err, path)
  }
}

/**
 * Summaries written before the store kept change tokens get one, once (one scan of the summaries and one
 * batch, at the first open by a version that keeps them; the meta flag written after it spares later
 * opens the scan): the backup's conversation cache can then take the conversations that do not change
 * afterwards, instead of only those written since. A crash before the flag only means another scan.
 */
async function giveRevs (s: Subs): Promise<void> {
  if (await s.meta.get(REVS_KEY) === 1) return
  const missing: Array<[string, ConversationRevision]> = []
  for await (const [peer, sum] of s.conv.iterator()) if (typeof sum.rev !== 'string') missing.push([peer, sum])
  if (missing.length > 0) {
    const rev = newRev()
    await s.conv.batch(missing.map(([peer, sum]) => ({ type: 'put' as const, key: peer, value: { ...sum, rev, run: rev } })))
    logger('gave %d conversation summaries a change token', missing.length)
  }
  await s.meta.put(REVS_KEY, 1)
}

/**
 * Run LevelDB's repair on a closed store (salvages what it can from damaged table/log files), then
 * open it and rebuild the derived indexes (see Store.rebuildIndexes). For `tokenim repair`.
 */
export async function repairStore (path: string): Promise<{ store: Store, fixes: RebuildResult }> {
  const repair = (Level as unknown as { repair?: (location: string) => Promise<void> }).repair
  if (repair !== undefined) {
    try {
      await repair.call(Level, path)
    } catch (err) {
      throw toOpenError(err, path)
    }
  }
  const store = await openStore(path, { createIfMissing: false })
  try {
    return { store, fixes: await store.rebuildIndexes() }
  } catch (err) {
    await store.close()
    throw err
  }
}

export interface RebuildResult {
  /** conversation summaries rewritten or removed */
  conversations: number
  /** byId entries added or corrected */
  indexFixed: number
  /** byId entries removed (pointing to no row) */
  indexRemoved: number
}

/**
 * A point-in-time read view (LevelDB snapshot): e.g. the backup reads conversation counts and streams
 * every message from the same state while the node keeps writing. Close it when done.
 */
export class StoreSnapshot {
  readonly #r: Reader
  readonly #snap: Snapshot
  constructor (r: Reader, snap: Snapshot) {
    this.#r = r
    this.#snap = snap
  }

  getMessage (id: string): Promise<StoredMessage | undefined> { return this.#r.getMessage(id, this.#snap) }
  messages (conversation?: string, q: MessageQuery = {}): AsyncIterable<StoredMessage> { return this.#r.messages(conversation, q, this.#snap) }
  /** every message (see Store.allMessages; `skip` passes over whole conversations) */
  allMessages (options: { skip?: SkipConversation } = {}): AsyncIterable<StoredMessage> { return this.#r.allMessages(this.#snap, options.skip) }
  /** every message row's stored bytes, in batches (see Reader.messageRecords), and their decoding */
  messageRecords (): AsyncIterable<Uint8Array[]> { return this.#r.messageRecords(this.#snap) }
  decodeMessageRecord (bytes: Uint8Array): StoredMessage { return this.#r.decodeMessageRecord(bytes) }
  conversations (): Promise<ConversationSummary[]> { return this.#r.conversations(this.#snap) }
  conversation (peer: string): Promise<ConversationSummary | undefined> { return this.#r.conversation(peer, this.#snap) }
  /** every summary with its change token, in address order (see Store.revisions) */
  revisions (): Promise<ConversationRevision[]> { return this.#r.revisions(this.#snap) }
  countMessages (conversation?: string): Promise<number> { return this.#r.countMessages(conversation, this.#snap) }
  async close (): Promise<void> { await this.#snap.close() }
  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }
}

export class Store {
  readonly path: string
  readonly #db: Root
  readonly #s: Subs
  readonly #r: Reader
  readonly #lock = new Lock()
  #mk: MarkerState | undefined

  /** use openStore() */
  constructor (db: Root, s: Subs, path: string) {
    this.#db = db
    this.#s = s
    this.path = path
    this.#r = new Reader(s, path)
  }

  get isOpen (): boolean { return this.#db.status === 'open' }

  async close (): Promise<void> {
    // let queued writes finish first
    await this.#lock.run(async () => {})
    const mk = this.#mk
    if (mk !== undefined && this.#db.status === 'open') {
      await mk.task
      // unchanged since the marker was written (a read-only open): no fsyncs on close
      const unchanged = mk.marker?.storeId === mk.storeId && mk.marker.messages === mk.messages
      if (markerOk(mk) && !unchanged) await this.#writeMarker().catch((err: unknown) => { logger.error('could not write the store marker %s: %s', mk.path, (err as Error).message) })
    }
    await this.#db.close()
  }

  // ---- marker (see marker.ts) ----

  /** @internal openStore() sets the marker state */
  initMarker (m: { path: string, storeId: string, messages: number, marker?: StoreMarker, intervalMs: number }): void {
    this.#mk = { ...m, lastWriteAt: Date.now(), task: Promise.resolve() }
    if (m.marker !== undefined && !markerOk(this.#mk)) {
      logger.error('store %s: the marker %s records %d messages of store %s (since %s), the store has %d (id %s)', this.path, m.path, m.marker.messages, m.marker.storeId, new Date(m.marker.updatedAt).toISOString(), m.messages, m.storeId)
    }
  }

  /**
   * What the marker file says about this store: `lost` messages it recorded that the store does not
   * have, `idChanged` when it names another store. undefined when the store was opened without a marker.
   */
  markerStatus (): StoreMarkerStatus | undefined {
    const mk = this.#mk
    if (mk === undefined) return undefined
    const lost = mk.marker === undefined ? 0 : Math.max(0, mk.marker.messages - mk.messages)
    return { path: mk.path, storeId: mk.storeId, messages: mk.messages, marker: mk.marker, idChanged: mk.marker !== undefined && mk.marker.storeId !== mk.storeId, lost }
  }

  /**
   * Make every write so far durable: one synced write flushes LevelDB's log with all that came before it.
   * Writes are not synced one by one (a crash of the process loses nothing; a power cut may lose the last
   * ones); a caller that records elsewhere that they happened (the restore's restore.json) calls this first.
   */
  async sync (): Promise<void> {
    await this.#guard(() => this.#s.meta.put(SYNC_KEY, Date.now(), SYNC_WRITE))
  }

  /**
   * Accept the store as it is now: the marker is rewritten with this store's id and count (after a
   * synced write). `tokenim repair` calls it after merging a backup; a store that lost messages is
   * otherwise never allowed to overwrite the marker.
   */
  async resetMarker (): Promise<void> {
    const mk = this.#mk
    if (mk === undefined) return
    await mk.task
    await this.#writeMarker()
  }

  async #writeMarker (): Promise<void> {
    const mk = this.#mk as MarkerState
    const messages = mk.messages
    const now = Date.now()
    // a synced write flushes the LevelDB log: every message counted above is on disk before the marker says so
    await this.#guard(() => this.#s.meta.put(MARKER_SYNC_KEY, now, SYNC_WRITE))
    const marker: StoreMarker = { version: 1, storeId: mk.storeId, messages, updatedAt: now }
    await writeMarker(mk.path, marker)
    mk.marker = marker
    mk.lastWriteAt = now
  }

  /** after messages were added: count them, and rewrite the marker when it is due (in the background) */
  #added (n: number): void {
    const mk = this.#mk
    if (mk === undefined || n === 0) return
    mk.messages += n
    if (Date.now() - mk.lastWriteAt < mk.intervalMs || !markerOk(mk)) return
    mk.lastWriteAt = Date.now()
    mk.task = mk.task.then(async () => {
      if (this.#db.status === 'open') await this.#writeMarker()
    }).catch((err: unknown) => { logger.error('could not update the store marker %s: %s', mk.path, (err as Error).message) })
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  /** A consistent read view; see StoreSnapshot. */
  snapshot (): StoreSnapshot {
    try {
      return new StoreSnapshot(this.#r, this.#db.snapshot())
    } catch (err) {
      throw toStoreError(err, this.path)
    }
  }

  async #write (build: (b: Batch) => void): Promise<void> {
    let b: Batch | undefined
    try {
      b = this.#db.batch()
      build(b)
      await b.write()
    } catch (err) {
      await b?.close().catch(() => {})
      throw toStoreError(err, this.path)
    }
  }

  async #guard<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw toStoreError(err, this.path)
    }
  }

  /**
   * A few point reads on the messaging paths (seen ids, message ids, conversation summaries, outbox
   * entries: small keys, recent ones in LevelDB's memtable or block cache). Synchronous when the database
   * can (classic-level's getSync: ~2–4 µs each, where a getMany costs ~55 µs of CPU plus a thread-pool
   * round trip, the largest store cost per message in the messaging bench). A read that must go to
   * disk blocks the event loop for it; these are a handful of keys per batch.
   */
  async #getMany<N extends keyof SubValues> (name: N, keys: string[]): Promise<Array<SubValue<N> | undefined>> {
    if (keys.length === 0) return []
    const sub = this.#s[name] as unknown as { getMany: (keys: string[]) => Promise<Array<SubValue<N> | undefined>>, getSync: (key: string) => SubValue<N> | undefined }
    if ((this.#db.supports as { getSync?: boolean }).getSync === true) {
      try {
        return keys.map(k => sub.getSync(k))
      } catch (err) {
        throw toStoreError(err, this.path)
      }
    }
    return await this.#guard(() => sub.getMany(keys))
  }

  /** Message rows' stored bytes by key (synchronous reads where the database can, as #getMany). */
  async #rawRows (keys: string[]): Promise<Array<Uint8Array | undefined>> {
    if (keys.length === 0) return []
    const sub = this.#s.msg as unknown as { getMany: (keys: string[], o: object) => Promise<Array<Uint8Array | undefined>>, getSync: (key: string, o: object) => Uint8Array | undefined }
    if ((this.#db.supports as { getSync?: boolean }).getSync === true) {
      try {
        return keys.map(k => sub.getSync(k, RAW))
      } catch (err) {
        throw toStoreError(err, this.path)
      }
    }
    return await this.#guard(() => sub.getMany(keys, RAW))
  }

  // ---- messages ----

  /** Add one message. `{ added: false }` if its id is already stored (nothing changes then). */
  async addMessage (msg: StoredMessage): Promise<{ added: boolean }> {
    const r = await this.addMessages([msg])
    return { added: r.added === 1 }
  }

  /**
   * Import messages: validated first (any invalid one → INVALID_MESSAGE with info.index, nothing
   * written), then written in ONE batch together with the conversation summaries. Idempotent by id:
   * ids already stored, or repeated within the call (first wins), are skipped.
   *
   * `absent(id)` true is the caller's word that no message with that id is stored (a restore into a store
   * that was empty, which tracks the ids it handed over): the id's uniqueness read is skipped. Without it,
   * or where it is false, the store reads as usual.
   */
  async addMessages (msgs: Iterable<StoredMessage>, options: { absent?: (id: string) => boolean } = {}): Promise<AddMessagesResult> {
    const clean = validateAll(msgs)
    return await this.#lock.run(async () => {
      const fresh = await this.#freshMessages(clean, options.absent)
      if (fresh.length > 0) {
        const sums = await this.#bumpedSummaries(fresh)
        await this.#write(b => this.#putMessages(b, fresh, sums))
        this.#added(fresh.length)
      }
      return { added: fresh.length, skipped: clean.length - fresh.length }
    })
  }

  /**
   * Import message records ({@link MessageRecord}: what the store writes for a validated message) in ONE
   * batch with the conversation summaries, idempotent by id as addMessages. The records' bytes are taken as
   * they are (made by {@link messageRecord}, or by a reader that makes the same bytes from a checked backup
   * segment, src/backup/segment-rows.ts); their ids, conversations and times, which make the keys, are
   * checked (INVALID_MESSAGE, nothing written). `absent` as for addMessages.
   */
  async addMessageRecords (records: MessageRecord[], options: { absent?: (id: string) => boolean } = {}): Promise<AddMessagesResult> {
    checkRecords(records)
    return await this.#lock.run(async () => {
      const fresh = await this.#freshMessages(records, options.absent)
      if (fresh.length > 0) {
        const sums = await this.#bumpedSummaries(fresh)
        await this.#write(b => this.#putRecords(b, fresh, sums))
        this.#added(fresh.length)
      }
      return { added: fresh.length, skipped: records.length - fresh.length }
    })
  }

  /**
   * Store an outgoing message and its outbox entry in one batch. If the message id is already stored
   * nothing changes and `{ added: false }` is returned.
   */
  async addOutgoing (msg: StoredMessage, entry: OutboxEntry): Promise<{ added: boolean }> {
    const [added] = await this.addOutgoingMany([{ msg, entry }])
    return { added }
  }

  /**
   * Several outgoing messages with their outbox entries (group commit of sends), all in ONE batch with
   * the conversation summaries. All are validated first (any invalid one: nothing written). Returns,
   * per item, whether it was added (false: its id is already stored, or repeated earlier in the call).
   *
   * `absent(id)` true is the caller's word that neither a message nor an outbox entry with that id is
   * stored (ids it has just made): the id's reads are skipped, as for addMessages.
   */
  async addOutgoingMany (items: Array<{ msg: StoredMessage, entry: OutboxEntry }>, options: { absent?: (id: string) => boolean } = {}): Promise<boolean[]> {
    const clean = items.map(({ msg, entry }) => {
      const m = normalizeMessage(msg)
      const e = normalizeOutboxEntry(entry)
      if (m.direction !== 'out') throw invalidMessage('addOutgoing needs direction "out"', { id: m.id, field: 'direction' })
      if (e.id !== m.id) throw invalidArgument('outbox entry id must equal the message id', { field: 'id' })
      if (e.to !== m.to) throw invalidArgument('outbox entry to must equal the message to', { field: 'to' })
      return { m, e }
    })
    if (clean.length === 0) return []
    const absent = options.absent
    return await this.#lock.run(async () => {
      const fresh = await this.#freshMessages(clean.map(c => c.m), absent)
      if (fresh.length === 0) return clean.map(() => false)
      const added = new Set(fresh.map(m => m.id))
      const firsts = new Set(fresh) // the first item of each new id
      const entries = clean.filter(c => firsts.has(c.m)).map(c => c.e)
      const sums = await this.#bumpedSummaries(fresh)
      const olds = new Array<OutboxEntry | undefined>(entries.length)
      const asked: number[] = []
      entries.forEach((e, i) => { if (absent?.(e.id) !== true) asked.push(i) })
      const found = await this.#getMany('outbox', asked.map(i => entries[i].id))
      asked.forEach((i, k) => { olds[i] = found[k] })
      await this.#write(b => {
        this.#putMessages(b, fresh, sums)
        entries.forEach((e, i) => { this.#putOutbox(b, e, olds[i]) })
      })
      this.#added(fresh.length)
      return clean.map(c => added.delete(c.m.id))
    })
  }

  async #freshMessages<M extends Keyed> (clean: M[], absent?: (id: string) => boolean): Promise<M[]> {
    const unique = new Map<string, M>()
    for (const m of clean) if (!unique.has(m.id)) unique.set(m.id, m)
    const ids = [...unique.keys()]
    if (absent === undefined) {
      const existing = await this.#getMany('msgId', ids)
      return ids.filter((_, i) => existing[i] === undefined).map(id => unique.get(id) as M)
    }
    const ask = ids.filter(id => !absent(id))
    const existing = await this.#getMany('msgId', ask)
    const stored = new Set(ask.filter((_, i) => existing[i] !== undefined))
    return ids.filter(id => !stored.has(id)).map(id => unique.get(id) as M)
  }

  async #bumpedSummaries (fresh: Keyed[]): Promise<Map<string, ConversationRevision>> {
    const peers = [...new Set(fresh.map(m => m.conversation))]
    const current = await this.#getMany('conv', peers)
    const sums = new Map<string, ConversationRevision | undefined>(peers.map((p, i) => [p, current[i]]))
    // one summary per conversation, bumped in place by each of its messages after the first (a new object per
    // message was ~15 MB of garbage in a 100,000-message import)
    const own = new Set<string>()
    for (const m of fresh) {
      const sum = sums.get(m.conversation)
      if (sum !== undefined && own.has(m.conversation)) {
        bumpInPlace(sum, m)
      } else {
        sums.set(m.conversation, bump(sum, m))
        own.add(m.conversation)
      }
    }
    return sums as Map<string, ConversationRevision>
  }

  #putMessages (b: Batch, fresh: StoredMessage[], sums: Map<string, ConversationRevision>): void {
    // one options object per sublevel for the whole batch (abstract-level copies what it needs of them)
    const rowOptions = { sublevel: this.#s.msg }
    const idOptions = { sublevel: this.#s.msgId }
    for (const m of fresh) {
      const key = messageKey(m.conversation, m.ts, m.id)
      b.put(key, m, rowOptions)
      b.put(m.id, key, idOptions)
    }
    this.#putRuns(b, sums)
  }

  #putRecords (b: Batch, fresh: MessageRecord[], sums: Map<string, ConversationRevision>): void {
    const rowOptions = RECORD_OPTIONS(this.#s.msg)
    const idOptions = { sublevel: this.#s.msgId }
    for (const r of fresh) {
      const key = messageKey(r.conversation, r.ts, r.id)
      b.put(key, r.bytes as unknown as StoredMessage, rowOptions)
      b.put(r.id, key, idOptions)
    }
    this.#putRuns(b, sums)
  }

  /** the summaries of a batch that adds rows, with a new change token */
  #putRuns (b: Batch, sums: Map<string, ConversationRevision>): void {
    const rev = newRev()
    // an append keeps the conversation's append run; anything else starts one (named by this token)
    for (const [peer, sum] of sums) b.put(peer, { ...sum, rev, run: sum.run ?? rev }, { sublevel: this.#s.conv })
  }

  /**
   * The summaries of conversations whose rows a batch rewrites without adding any (status updates), with
   * a new change token each; a conversation without a summary is left so (it has no token to replace).
   */
  async #revised (peers: string[]): Promise<Array<[string, ConversationRevision]>> {
    const unique = [...new Set(peers)]
    const sums = await this.#getMany('conv', unique)
    const rev = newRev()
    const out: Array<[string, ConversationRevision]> = []
    sums.forEach((sum, i) => { if (sum !== undefined) out.push([unique[i], { ...sum, rev, run: rev }]) })
    return out
  }

  #putSummaries (b: Batch, sums: Array<[string, ConversationRevision]>): void {
    for (const [peer, sum] of sums) b.put(peer, sum, { sublevel: this.#s.conv })
  }

  getMessage (id: string): Promise<StoredMessage | undefined> {
    return this.#r.getMessage(id)
  }

  /** Set a message's status; returns the updated message. MESSAGE_NOT_FOUND if the id is unknown. */
  async updateMessageStatus (id: string, status: MessageStatus): Promise<StoredMessage> {
    checkId(id)
    checkStatus(status)
    return await this.#lock.run(async () => {
      const key = await this.#guard(() => this.#s.msgId.get(id))
      const msg = key === undefined ? undefined : await this.#guard(() => this.#s.msg.get(key))
      if (key === undefined || msg === undefined) {
        throw new TokenimError(StoreErrorCode.MESSAGE_NOT_FOUND, `no message with id ${id}`, { id })
      }
      if (msg.status === status) return msg
      const updated = { ...msg, status }
      const sums = await this.#revised([msg.conversation])
      await this.#write(b => {
        b.put(key, updated, { sublevel: this.#s.msg })
        this.#putSummaries(b, sums)
      })
      return updated
    })
  }

  /**
   * Stream messages, oldest first ((ts, id) order) unless `reverse`. With a conversation the range is
   * read directly; without one every conversation is streamed in turn (address order), each in time
   * order, filtered by since/until. since/until are inclusive ms bounds on `ts`.
   */
  messages (conversation?: string, q: MessageQuery = {}): AsyncIterable<StoredMessage> {
    return this.#r.messages(conversation, q)
  }

  /**
   * Every message, conversation by conversation, each in (ts, id) order; streamed from one LevelDB
   * iterator (a consistent point-in-time view), so memory does not grow with history. `skip`, asked once
   * per conversation when its first row is reached, passes over the conversations it says yes to (one
   * seek past their rows): the backup's conversation cache.
   */
  allMessages (options: { skip?: SkipConversation } = {}): AsyncIterable<StoredMessage> {
    return this.#r.allMessages(undefined, options.skip)
  }

  /** Every message with an attachment, in store order; the others are passed over on their bytes (no decode). */
  messagesWithAttachments (): AsyncIterable<StoredMessage> {
    return this.#r.messagesWithAttachments()
  }

  conversations (): Promise<ConversationSummary[]> { return this.#r.conversations() }
  conversation (peer: string): Promise<ConversationSummary | undefined> { return this.#r.conversation(peer) }
  /**
   * Every conversation summary with its change token (`rev`), in address order: the token is replaced
   * in the same batch as any write of the conversation's message rows (adds, imports, status updates,
   * receipts) and by rebuildIndexes, so a token read from a snapshot names the rows of that snapshot.
   */
  revisions (): Promise<ConversationRevision[]> { return this.#r.revisions() }
  /** Total messages (sum of the conversation counts), or one conversation's count. */
  countMessages (conversation?: string): Promise<number> { return this.#r.countMessages(conversation) }

  /**
   * Compare the conversation summaries and the byId index with the message rows, streaming (keys only,
   * from one snapshot). Returns at most `limit` problems (default 1000); [] means consistent.
   */
  async checkConsistency (opts: { limit?: number } = {}): Promise<ConsistencyProblem[]> {
    const limit = opts.limit ?? 1000
    const problems: ConsistencyProblem[] = []
    const add = (p: ConsistencyProblem): void => { if (problems.length < limit) problems.push(p) }
    const snapshot = this.#db.snapshot()
    try {
      const peersWithRows = new Set<string>()
      let cur: { peer: string, count: number, firstTs: number, lastTs: number, lastMessageId: string } | undefined
      const finish = async (): Promise<void> => {
        if (cur === undefined) return
        peersWithRows.add(cur.peer)
        const sum = await this.#s.conv.get(cur.peer, { snapshot })
        if (sum === undefined) {
          add({ kind: 'missing-conversation', conversation: cur.peer, expected: cur.count, actual: 0, message: `conversation ${cur.peer} has ${cur.count} messages but no summary` })
        } else {
          if (sum.count !== cur.count) {
            add({ kind: 'count-mismatch', conversation: cur.peer, expected: cur.count, actual: sum.count, message: `conversation ${cur.peer}: summary count ${sum.count}, rows ${cur.count}` })
          }
          if (sum.firstTs !== cur.firstTs || sum.lastTs !== cur.lastTs || sum.lastMessageId !== cur.lastMessageId) {
            add({ kind: 'bounds-mismatch', conversation: cur.peer, message: `conversation ${cur.peer}: summary first/last (${sum.firstTs}, ${sum.lastTs}, ${sum.lastMessageId}) differ from rows (${cur.firstTs}, ${cur.lastTs}, ${cur.lastMessageId})` })
          }
        }
      }
      let chunk: Array<{ key: string, id: string }> = []
      const checkChunk = async (): Promise<void> => {
        if (chunk.length === 0) return
        const found = await this.#s.msgId.getMany(chunk.map(c => c.id), { snapshot })
        chunk.forEach((c, i) => {
          if (found[i] !== c.key) add({ kind: 'index-missing', id: c.id, message: `message ${c.id} is missing from the id index` })
        })
        chunk = []
      }
      for await (const key of this.#s.msg.keys({ snapshot })) {
        const k = parseMessageKey(key)
        if (k === undefined) {
          add({ kind: 'bad-row', message: `unparseable message key ${JSON.stringify(key.slice(0, 200))}` })
          continue
        }
        if (cur === undefined || cur.peer !== k.conversation) {
          await finish()
          cur = { peer: k.conversation, count: 0, firstTs: k.ts, lastTs: k.ts, lastMessageId: k.id }
        }
        cur.count++
        // keys come in (ts, id) order: the last key seen is the newest
        cur.lastTs = k.ts
        cur.lastMessageId = k.id
        chunk.push({ key, id: k.id })
        if (chunk.length >= CHUNK) await checkChunk()
      }
      await finish()
      await checkChunk()
      for await (const sum of this.#s.conv.values({ snapshot })) {
        if (!peersWithRows.has(sum.peer)) {
          add({ kind: 'empty-conversation', conversation: sum.peer, expected: 0, actual: sum.count, message: `conversation ${sum.peer} has a summary (count ${sum.count}) but no messages` })
        }
      }
      let refs: Array<[string, string]> = []
      const checkRefs = async (): Promise<void> => {
        if (refs.length === 0) return
        const has = await this.#s.msg.hasMany(refs.map(r => r[1]), { snapshot })
        refs.forEach(([id, key], i) => {
          if (!has[i] || parseMessageKey(key)?.id !== id) add({ kind: 'index-dangling', id, message: `id index entry ${id} points to no message` })
        })
        refs = []
      }
      for await (const entry of this.#s.msgId.iterator({ snapshot })) {
        refs.push(entry)
        if (refs.length >= CHUNK) await checkRefs()
      }
      await checkRefs()
    } catch (err) {
      throw toStoreError(err, this.path)
    } finally {
      await snapshot.close().catch(() => {})
    }
    return problems
  }

  /**
   * Recompute every conversation summary and the byId index from the message rows (the rows are the
   * truth). Streaming; summaries are replaced in one batch at the end, index fixes in chunks. For
   * `tokenim repair` after checkConsistency found problems.
   */
  async rebuildIndexes (): Promise<RebuildResult> {
    return await this.#lock.run(async () => {
      const result: RebuildResult = { conversations: 0, indexFixed: 0, indexRemoved: 0 }
      const sums = new Map<string, ConversationSummary>()
      let chunk: Array<{ key: string, id: string }> = []
      const fixChunk = async (): Promise<void> => {
        if (chunk.length === 0) return
        const found = await this.#s.msgId.getMany(chunk.map(c => c.id))
        const wrong = chunk.filter((c, i) => found[i] !== c.key)
        if (wrong.length > 0) {
          await this.#write(b => { for (const c of wrong) b.put(c.id, c.key, { sublevel: this.#s.msgId }) })
          result.indexFixed += wrong.length
        }
        chunk = []
      }
      try {
        for await (const key of this.#s.msg.keys()) {
          const k = parseMessageKey(key)
          if (k === undefined) continue
          const prev = sums.get(k.conversation)
          sums.set(k.conversation, prev === undefined
            ? { peer: k.conversation, count: 1, firstTs: k.ts, lastTs: k.ts, lastMessageId: k.id }
            : { ...prev, count: prev.count + 1, lastTs: k.ts, lastMessageId: k.id })
          chunk.push({ key, id: k.id })
          if (chunk.length >= CHUNK) await fixChunk()
        }
        await fixChunk()
        const stale: string[] = []
        let same = 0
        for await (const [peer, sum] of this.#s.conv.iterator()) {
          const want = sums.get(peer)
          if (want === undefined) stale.push(peer)
          else if (want.count === sum.count && want.firstTs === sum.firstTs && want.lastTs === sum.lastTs && want.lastMessageId === sum.lastMessageId) same++
        }
        result.conversations = stale.length + sums.size - same
        // every summary gets a new change token, the unchanged ones too: a repair may have brought back
        // older rows (LevelDB's repair salvages tables) that the token written with them no longer names
        const rev = newRev()
        await this.#write(b => {
          for (const peer of stale) b.del(peer, { sublevel: this.#s.conv })
          for (const [peer, sum] of sums) b.put(peer, { ...sum, rev, run: rev }, { sublevel: this.#s.conv })
        })
        let refs: Array<[string, string]> = []
        const dropDangling = async (): Promise<void> => {
          if (refs.length === 0) return
          const has = await this.#s.msg.hasMany(refs.map(r => r[1]))
          const bad = refs.filter(([id, key], i) => !has[i] || parseMessageKey(key)?.id !== id)
          if (bad.length > 0) {
            await this.#write(b => { for (const [id] of bad) b.del(id, { sublevel: this.#s.msgId }) })
            result.indexRemoved += bad.length
          }
          refs = []
        }
        for await (const entry of this.#s.msgId.iterator()) {
          refs.push(entry)
          if (refs.length >= CHUNK) await dropDangling()
        }
        await dropDangling()
      } catch (err) {
        throw toStoreError(err, this.path)
      }
      logger('rebuilt indexes: %o', result)
      // the summaries may have changed: the marker's count follows them
      if (this.#mk !== undefined) this.#mk.messages = await this.#r.countMessages()
      return result
    })
  }

  // ---- contacts ----

  /** Add or rename a contact (addedAt is kept from the first time). `name` undefined removes the name. */
  async setContact (address: string, name?: string): Promise<Contact> {
    const addr = checkAddress(address)
    return await this.#lock.run(async () => {
      const old = await this.#guard(() => this.#s.contact.get(addr))
      const c = normalizeContact({ address: addr, name, addedAt: old?.addedAt ?? Date.now() })
      await this.#guard(() => this.#s.contact.put(addr, c))
      return c
    })
  }

  async getContact (address: string): Promise<Contact | undefined> {
    const addr = checkAddress(address)
    return await this.#guard(() => this.#s.contact.get(addr))
  }

  /** All contacts in address order. */
  async contacts (): Promise<Contact[]> {
    return await this.#guard(() => this.#s.contact.values().all())
  }

  async deleteContact (address: string): Promise<boolean> {
    const addr = checkAddress(address)
    return await this.#lock.run(async () => {
      if (!(await this.#guard(() => this.#s.contact.has(addr)))) return false
      await this.#guard(() => this.#s.contact.del(addr))
      return true
    })
  }

  // ---- outbox ----

  #putOutbox (b: Batch, e: OutboxEntry, old: OutboxEntry | undefined): void {
    if (old !== undefined) b.del(dueKey(old.nextAttemptAt, old.id), { sublevel: this.#s.outboxDue })
    b.put(e.id, e, { sublevel: this.#s.outbox })
    b.put(dueKey(e.nextAttemptAt, e.id), '', { sublevel: this.#s.outboxDue })
  }

  #delOutbox (b: Batch, old: OutboxEntry): void {
    b.del(old.id, { sublevel: this.#s.outbox })
    b.del(dueKey(old.nextAttemptAt, old.id), { sublevel: this.#s.outboxDue })
  }

  /** Add or replace the outbox entry for entry.id (attempts defaults to 0). */
  async enqueue (entry: OutboxEntry): Promise<void> {
    const e = normalizeOutboxEntry(entry)
    await this.#lock.run(async () => {
      const old = await this.#guard(() => this.#s.outbox.get(e.id))
      await this.#write(b => this.#putOutbox(b, e, old))
    })
  }

  async getOutbox (id: string): Promise<OutboxEntry | undefined> {
    checkId(id)
    const e = await this.#guard(() => this.#s.outbox.get(id))
    return e === undefined ? undefined : outboxFromDb(e)
  }

  async #outboxByDue (lt: string | undefined, limit: number | undefined): Promise<OutboxEntry[]> {
    return await this.#guard(async () => {
      const keys = await this.#s.outboxDue.keys({ ...(lt !== undefined ? { lt } : {}), ...(limit !== undefined ? { limit } : {}) }).all()
      if (keys.length === 0) return []
      const ids = keys.map(k => k.slice(NUM_WIDTH + 1))
      const entries = await this.#s.outbox.getMany(ids)
      return entries.filter((e): e is OutboxEntry => e !== undefined).map(outboxFromDb)
    })
  }

  /** Entries with nextAttemptAt <= now, earliest first (at most `limit`). */
  async dueOutbox (now: number, limit?: number): Promise<OutboxEntry[]> {
    checkTime(now, 'now')
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw invalidArgument('limit must be a non-negative integer', { field: 'limit' })
    if (limit === 0) return []
    return await this.#outboxByDue(`${padNum(now + 1)}${SEP}`, limit)
  }

  /** Every outbox entry, earliest nextAttemptAt first. */
  async outbox (): Promise<OutboxEntry[]> {
    return await this.#outboxByDue(undefined, undefined)
  }

  async outboxSize (): Promise<number> {
    return await this.#guard(async () => {
      let n = 0
      for await (const _ of this.#s.outbox.keys()) n++
      return n
    })
  }

  /** Record a failed attempt: attempts + 1, lastError, new time. Returns the entry, or undefined if none. */
  async rescheduleOutbox (id: string, nextAttemptAt: number, error?: string): Promise<OutboxEntry | undefined> {
    checkId(id)
    checkTime(nextAttemptAt, 'nextAttemptAt')
    return await this.#lock.run(async () => {
      const old = await this.#guard(() => this.#s.outbox.get(id))
      if (old === undefined) return undefined
      const e = normalizeOutboxEntry({ ...old, attempts: old.attempts + 1, nextAttemptAt, lastError: error ?? old.lastError })
      await this.#write(b => this.#putOutbox(b, e, old))
      return outboxFromDb(e)
    })
  }

  async #finishOutgoing (id: string, status: 'delivered' | 'failed', error?: string): Promise<boolean> {
    checkId(id)
    return await this.#lock.run(async () => {
      const old = await this.#guard(() => this.#s.outbox.get(id))
      const key = await this.#guard(() => this.#s.msgId.get(id))
      const msg = key === undefined ? undefined : await this.#guard(() => this.#s.msg.get(key))
      const update = msg !== undefined && msg.direction === 'out' && msg.status !== status && msg.status !== 'delivered'
      if (old === undefined && !update) return false
      const sums = update ? await this.#revised([msg.conversation]) : []
      await this.#write(b => {
        if (old !== undefined) this.#delOutbox(b, old)
        if (update && key !== undefined) b.put(key, { ...msg, status }, { sublevel: this.#s.msg })
        this.#putSummaries(b, sums)
      })
      if (error !== undefined) logger('message %s failed: %s', id, error)
      return true
    })
  }

  /**
   * A delivery receipt arrived: remove the outbox entry and set the (outgoing) message's status to
   * delivered, in one batch. Returns false when there was nothing to change.
   */
  async markDelivered (id: string): Promise<boolean> {
    return await this.#finishOutgoing(id, 'delivered')
  }

  /**
   * Receipts for several messages (group commit): for each id, remove its outbox entry and set the
   * outgoing message's status to delivered, all in ONE batch. Returns, per id, whether anything changed.
   */
  async markDeliveredMany (ids: string[]): Promise<boolean[]> {
    for (const id of ids) checkId(id)
    if (ids.length === 0) return []
    return await this.#lock.run(async () => {
      const unique = [...new Set(ids)]
      const olds = await this.#getMany('outbox', unique)
      const keys = await this.#getMany('msgId', unique)
      const present = keys.filter((k): k is string => k !== undefined)
      // the rows' bytes: an outgoing row's status is changed on them (row.ts), not by decoding and
      // encoding the whole record; a row that path does not take is decoded as before
      const rows = await this.#rawRows(present)
      const updates = new Map<string, Uint8Array | StoredMessage>()
      const touched: string[] = []
      present.forEach((key, i) => {
        const raw = rows[i]
        if (raw === undefined) return
        const rs = rowStatus(raw)
        if (rs !== undefined) {
          if (rs.direction !== 'out' || rs.status === 'delivered') return
          const conversation = parseMessageKey(key)?.conversation
          if (conversation === undefined) return // not a key the store writes: left to the decode below
          updates.set(key, withStatus(raw, rs, 'delivered'))
          touched.push(conversation)
          return
        }
        const msg = this.#r.decodeMessageRecord(raw)
        if (msg.direction !== 'out' || msg.status === 'delivered') return
        updates.set(key, { ...msg, status: 'delivered' })
        touched.push(msg.conversation)
      })
      const changed = new Map<string, boolean>()
      const sums = await this.#revised(touched)
      await this.#write(b => {
        this.#putSummaries(b, sums)
        unique.forEach((id, i) => {
          const old = olds[i]
          const key = keys[i]
          const update = key === undefined ? undefined : updates.get(key)
          if (old !== undefined) this.#delOutbox(b, old)
          if (update instanceof Uint8Array) b.put(key as string, update as unknown as StoredMessage, { sublevel: this.#s.msg, valueEncoding: 'view' } as object)
          else if (update !== undefined) b.put(key as string, update, { sublevel: this.#s.msg })
          changed.set(id, old !== undefined || update !== undefined)
        })
      })
      return ids.map(id => changed.get(id) === true)
    })
  }

  /**
   * Incoming messages (group commit): each message whose id is neither stored nor seen is added, and
   * every id not seen yet is recorded as seen (with the message's ts), all in ONE batch with the
   * conversation summaries. Returns, per message, whether it was added (false: a replay or duplicate).
   */
  async addIncoming (msgs: StoredMessage[]): Promise<boolean[]> {
    const clean = validateAll(msgs)
    if (clean.length === 0) return []
    return await this.#lock.run(async () => {
      const ids = [...new Set(clean.map(m => m.id))]
      const seen = await this.#getMany('seen', ids)
      const unseen = new Set(ids.filter((_, i) => seen[i] === undefined))
      const fresh = await this.#freshMessages(clean.filter(m => unseen.has(m.id)))
      const sums = fresh.length > 0 ? await this.#bumpedSummaries(fresh) : new Map<string, ConversationSummary>()
      await this.#write(b => {
        this.#putMessages(b, fresh, sums)
        for (const m of clean) {
          if (!unseen.has(m.id)) continue
          unseen.delete(m.id)
          b.put(m.id, m.ts, { sublevel: this.#s.seen })
          b.put(`${padNum(m.ts)}${SEP}${m.id}`, '', { sublevel: this.#s.seenTs })
        }
      })
      const added = new Set(fresh.map(m => m.id))
      return clean.map(m => added.delete(m.id))
    })
  }

  /** Give up on a delivery: remove the outbox entry and set the message's status to failed (one batch). */
  async markFailed (id: string, error?: string): Promise<boolean> {
    return await this.#finishOutgoing(id, 'failed', error)
  }

  // ---- seen (replay protection) ----

  /** Record an envelope id; true if it was new, false if already seen (a replay). */
  async markSeen (id: string, ts: number): Promise<boolean> {
    checkId(id)
    checkTime(ts, 'ts')
    return await this.#lock.run(async () => {
      if (await this.#guard(() => this.#s.seen.has(id))) return false
      await this.#write(b => {
        b.put(id, ts, { sublevel: this.#s.seen })
        b.put(`${padNum(ts)}${SEP}${id}`, '', { sublevel: this.#s.seenTs })
      })
      return true
    })
  }

  async hasSeen (id: string): Promise<boolean> {
    checkId(id)
    return await this.#guard(() => this.#s.seen.has(id))
  }

  /** Forget ids seen before `olderThan` (ms, exclusive). Returns how many were removed. */
  async pruneSeen (olderThan: number): Promise<number> {
    checkTime(olderThan, 'olderThan')
    return await this.#lock.run(async () => {
      let removed = 0
      let keys: string[] = []
      const flush = async (): Promise<void> => {
        if (keys.length === 0) return
        const batch = keys
        await this.#write(b => {
          for (const k of batch) {
            b.del(k, { sublevel: this.#s.seenTs })
            b.del(k.slice(NUM_WIDTH + 1), { sublevel: this.#s.seen })
          }
        })
        removed += batch.length
        keys = []
      }
      await this.#guard(async () => {
        for await (const k of this.#s.seenTs.keys({ lt: padNum(olderThan) })) {
          keys.push(k)
          if (keys.length >= CHUNK) await flush()
        }
        await flush()
      })
      return removed
    })
  }

  // ---- backups index ----

  /** Insert or replace the record of rec.version. */
  async putBackup (rec: BackupRecord): Promise<void> {
    const r = normalizeBackup(rec)
    await this.#lock.run(() => this.#guard(() => this.#s.backup.put(padNum(r.version), r)))
  }

  async getBackup (version: number): Promise<BackupRecord | undefined> {
    if (!Number.isSafeInteger(version) || version < 0) throw invalidArgument('version must be a non-negative integer', { field: 'version' })
    return await this.#guard(() => this.#s.backup.get(padNum(version)))
  }

  /** All backup records, oldest version first. */
  async backups (): Promise<BackupRecord[]> {
    return await this.#guard(() => this.#s.backup.values().all())
  }

  /** The highest version (anchored or not), or undefined. */
  async latestBackup (): Promise<BackupRecord | undefined> {
    return await this.#guard(async () => (await this.#s.backup.values({ reverse: true, limit: 1 }).all())[0])
  }

  async deleteBackup (version: number): Promise<boolean> {
    if (!Number.isSafeInteger(version) || version < 0) throw invalidArgument('version must be a non-negative integer', { field: 'version' })
    return await this.#lock.run(async () => {
      const key = padNum(version)
      if (!(await this.#guard(() => this.#s.backup.has(key)))) return false
      await this.#guard(() => this.#s.backup.del(key))
      return true
    })
  }

  // ---- meta ----

  async getMeta<T = unknown> (key: string): Promise<T | undefined> {
    if (typeof key !== 'string' || key.length === 0) throw invalidArgument('meta key must be a non-empty string', { field: 'key' })
    return await this.#guard(async () => (await this.#s.meta.get(key)) as T | undefined)
  }

  /** Set a meta value (any CBOR-encodable value; undefined deletes). 'schemaVersion' is reserved. */
  async setMeta (key: string, value: unknown): Promise<void> {
    if (typeof key !== 'string' || key.length === 0) throw invalidArgument('meta key must be a non-empty string', { field: 'key' })
    if (key === SCHEMA_KEY) throw invalidArgument(`meta key ${SCHEMA_KEY} is reserved`, { field: 'key' })
    await this.#lock.run(() => this.#guard(async () => {
      if (value === undefined) await this.#s.meta.del(key)
      else await this.#s.meta.put(key, value)
    }))
  }
}

function validateAll (msgs: Iterable<StoredMessage>): StoredMessage[] {
  if (msgs === null || typeof msgs !== 'object' || typeof (msgs as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw invalidArgument('addMessages needs an iterable of messages')
  }
  const clean: StoredMessage[] = []
  let index = 0
  for (const m of msgs) {
    try {
      clean.push(normalizeMessage(m))
    } catch (err) {
      if (err instanceof TokenimError) throw new TokenimError(err.code, `${err.message} (at index ${index})`, { ...err.info, index })
      throw err
    }
    index++
  }
  return clean
}
