import assert from 'node:assert/strict'
import { cp, rm } from 'node:fs/promises'
import * as cborg from 'cborg'
import { join } from 'node:path'
import { buildBackup, readBackup } from '../../src/backup/index.ts'
import type { CID } from 'multiformats/cid'
import type { BackupSource, BlockStore, BuildBackupResult } from '../../src/backup/index.ts'
import { rawCid } from '../../src/backup/blocks.ts'
import { decodeConversationEntry, decodeShardEntry, encodeConversationEntry, encodeShardEntry } from '../../src/backup/conversation-cache.ts'
import type { ConversationCache } from '../../src/backup/conversation-cache.ts'
import { openStore } from '../../src/store/index.ts'
import type { ConversationRevision, StoredMessage } from '../../src/store/index.ts'
import { KEY, OTHER_KEY, OWNER, attachmentCidFor, makeEnv, makeHistory, peer, prng } from './helpers.ts'
import type { Env } from './helpers.ts'

/** an in-memory conversation cache */
function memoryCache (): ConversationCache & { map: Map<string, Uint8Array> } {
  const map = new Map<string, Uint8Array>()
  return {
    map,
    get: async (k: string) => map.get(k),
    putMany: async (entries: Array<[string, Uint8Array]>) => { for (const [k, v] of entries) map.set(k, v) }
  }
}

/**
 * The store (snapshots included), counting the messages the builder takes from it; `honourSkip: false`
 * gives a source that ignores the skip option (the builder must then pass over the rows itself).
 */
function counted (env: Env, o: { honourSkip?: boolean } = {}): BackupSource & { read: Set<string> } {
  const read = new Set<string>()
  async function * count (it: AsyncIterable<StoredMessage>): AsyncGenerator<StoredMessage> {
    for await (const m of it) {
      read.add(m.conversation)
      yield m
    }
  }
  return {
    read,
    allMessages: (opts) => count(env.store.allMessages(o.honourSkip === false ? {} : opts)),
    contacts: () => env.store.contacts(),
    snapshot: () => {
      const s = env.store.snapshot()
      return { allMessages: (opts) => count(s.allMessages(o.honourSkip === false ? {} : opts)), revisions: () => s.revisions(), close: () => s.close() }
    }
  }
}

/** the test blockstore, counting the blocks the builder writes (or finds already there) one by one */
function countPuts (env: Env): BlockStore & { count: number } {
  const b = {
    count: 0,
    get: (cid: CID) => env.blockstore.get(cid),
    has: async (cid: CID) => { b.count++; return await env.blockstore.has(cid) },
    hasMany: async (cids: CID[]) => await Promise.all(cids.map(async cid => await env.blockstore.has(cid))),
    put: async (cid: CID, bytes: Uint8Array) => await env.blockstore.put(cid, bytes)
  }
  return b
}

/** an incoming message from p */
function incoming (p: string, id: string, ts: number): StoredMessage {
  return { id, conversation: p, from: p, to: OWNER, ts, text: `late ${id}`, direction: 'in', status: 'received' }
}

/** what a build reports, the bundle's own figures (bytesNew and blocksNew depend on what was stored before) */
function figures (r: BuildBackupResult): Record<string, unknown> {
  const { root, digest, messages, conversations, segments, attachments, shards, bytesTotal, blocks, plaintextBytes, formatVersion } = r
  return { root: root.toString(), digest, messages, conversations, segments, attachments, shards, bytesTotal, blocks, plaintextBytes, formatVersion }
}

describe('backup: the conversation cache (src/backup/conversation-cache.ts)', function () {
  this.timeout(60_000)
  let env: Env
  beforeEach(async () => { env = await makeEnv() })
  afterEach(async () => { await env.cleanup() })

  const build = async (version: number, o: { cache?: ConversationCache, key?: Uint8Array, store?: BackupSource, formatVersion?: 1 | 2, blockstore?: BlockStore } = {}): Promise<BuildBackupResult> =>
    await buildBackup({
      store: o.store ?? env.store,
      blockstore: o.blockstore ?? env.blockstore,
      owner: OWNER,
      version,
      backupKey: o.key ?? KEY,
      segmentSize: 32,
      created: 1_700_000_000_000 + version,
      ...(o.formatVersion !== undefined ? { formatVersion: o.formatVersion } : {}),
      ...(o.cache !== undefined ? { conversationCache: o.cache } : {})
    })

  /** 8 conversations, some messages with (linked) attachments */
  const history = async (): Promise<void> => {
    const msgs = makeHistory({ conversations: 8, messages: 700, seed: 7, attachments: 0.05 })
    for (const [i, m] of msgs.entries()) if (m.attachment !== undefined) m.attachment.cid = (await attachmentCidFor(Uint8Array.of(i % 5))).toString()
    await env.store.addMessages(msgs)
  }

  for (const formatVersion of [2, 1] as const) {
    it(`format v${formatVersion}: unchanged conversations are taken from the cache without reading their messages; the same bundle and figures, byte for byte`, async () => {
      await history()
      const cache = memoryCache()
      const v1 = await build(1, { cache, formatVersion })
      const entries = [...cache.map].filter(([k, v]) => decodeConversationEntry(KEY, k, v) !== undefined)
      assert.equal(entries.length, 8, 'one entry per conversation')
      assert.equal(cache.map.size, 8 + v1.shards, 'and one per shard')
      assert.equal((await build(1, { formatVersion })).root.toString(), v1.root.toString(), 'the cache changes nothing when it is filled')
      assert.ok(v1.attachments > 0)
      // unchanged, everything is taken from the cache: no segment or (v2) shard is encoded or put again
      const puts = countPuts(env)
      assert.deepEqual(figures(await build(1, { cache, formatVersion, blockstore: puts })), figures(v1))
      assert.equal(puts.count, formatVersion === 2 ? 3 : 2, 'only the contacts, top node and root (v2) or the manifest node and root (v1) were written')

      // new messages in two conversations, a status change in a third
      await env.store.addMessages([incoming(peer(1), 'late-1', 1_800_000_000_000), incoming(peer(5), 'late-5', 1_800_000_000_001)])
      let changed: StoredMessage | undefined
      for await (const m of env.store.messages(peer(3))) { if (m.direction === 'in') { changed = m; break } }
      await env.store.updateMessageStatus((changed as StoredMessage).id, 'failed')

      const source = counted(env)
      const cached = await build(2, { cache, store: source, formatVersion })
      const plain = await build(2, { formatVersion })
      assert.deepEqual(figures(cached), figures(plain))
      assert.deepEqual([...source.read].sort(), [peer(1), peer(3), peer(5)], 'only the changed conversations were read')
      // a source that does not skip: the builder passes over the rows itself
      const noSkip = counted(env, { honourSkip: false })
      assert.deepEqual(figures(await build(2, { cache, store: noSkip, formatVersion })), figures(plain))
      // and the bundle reads back with the changes
      const reader = await readBackup({ root: cached.root, blockstore: env.blockstore, owner: OWNER, version: 2, backupKey: KEY })
      let n = 0
      let failed = 0
      for await (const m of reader.messages()) { n++; if (m.id === changed?.id && m.status === 'failed') failed++ }
      assert.equal(n, 702)
      assert.equal(failed, 1)
    })
  }

  it('an entry\'s body is cborg\'s encoding of its fields (written through the shared CBOR fast path)', async () => {
    await history()
    const cache = memoryCache()
    await build(1, { cache })
    let n = 0
    for (const [k, v] of cache.map) {
      const e = decodeConversationEntry(KEY, k, v)
      if (e === undefined) continue
      const body = v.subarray(32)
      assert.equal(Buffer.compare(body, cborg.encode(cborg.decode(body))), 0)
      const again = encodeConversationEntry(KEY, k, e)
      assert.equal(Buffer.compare(again, v), 0, 'decoded and encoded again: the same bytes')
      n++
    }
    assert.equal(n, 8)
  })

  it('a damaged entry, an entry whose block is gone, another key, a rebuilt index: built from the messages, the same bundle', async () => {
    await history()
    const cache = memoryCache()
    await build(1, { cache })
    const reference = figures(await build(2))
    const rebuild = async (c: ConversationCache, key = KEY): Promise<Set<string>> => {
      const source = counted(env)
      const r = await build(2, { cache: c, store: source, key })
      if (key === KEY) assert.deepEqual(figures(r), reference)
      return source.read
    }
    assert.equal((await rebuild(cache)).size, 0, 'all taken from the cache')
    // a damaged tag: not used (and replaced)
    const damaged = memoryCache()
    for (const [k, v] of cache.map) { const d = Uint8Array.from(v); d[3] ^= 1; damaged.map.set(k, d) }
    assert.equal((await rebuild(damaged)).size, 8)
    assert.equal((await rebuild(damaged)).size, 0, 'the damaged entries were replaced')
    // a well-made entry naming a block the blockstore does not have
    const gone = memoryCache()
    for (const [k, v] of cache.map) {
      const e = decodeConversationEntry(KEY, k, v)
      gone.map.set(k, e === undefined ? v : encodeConversationEntry(KEY, k, { ...e, segments: e.segments.map((s, i) => i === 0 ? { ...s, cid: rawCid(Uint8Array.of(9, 9, 9)) } : s) }))
    }
    assert.equal((await rebuild(gone)).size, 8)
    // a shard entry naming a block the blockstore does not have (its conversations taken from the cache)
    const noShard = memoryCache()
    let shards = 0
    for (const [k, v] of cache.map) {
      const members = v.subarray(32, 64) // a shard entry: tag, members, size, CID
      const isShard = decodeConversationEntry(KEY, k, v) === undefined && decodeShardEntry(KEY, k, members, v) !== undefined
      if (isShard) shards++
      noShard.map.set(k, isShard ? encodeShardEntry(KEY, k, members, rawCid(Uint8Array.of(9, 9, 9)), 3) : v)
    }
    assert.ok(shards > 0)
    const writes = countPuts(env)
    assert.deepEqual(figures(await build(2, { cache: noShard, blockstore: writes })), reference)
    assert.equal(writes.count, 3 + shards, 'every shard sealed again')
    // another backup key finds nothing
    const other = memoryCache()
    for (const [k, v] of cache.map) other.map.set(k, v)
    assert.equal((await rebuild(other, OTHER_KEY)).size, 8)
    // a repair gives every conversation a new token: nothing is taken
    await env.store.rebuildIndexes()
    assert.equal((await rebuild(cache)).size, 8)
  })

  it('the tokens come from the snapshot the messages are read from: a write after it is in the next version', async () => {
    await history()
    const cache = memoryCache()
    await build(1, { cache })
    // the store, written to right after the build takes its snapshot (and before it reads anything)
    let wrote: Promise<unknown> | undefined
    const racing: BackupSource = {
      allMessages: (opts) => env.store.allMessages(opts),
      snapshot: () => {
        const s = env.store.snapshot()
        wrote = env.store.addMessages([incoming(peer(2), 'x-2', 1_900_000_000_000)])
        return { allMessages: (opts) => s.allMessages(opts), revisions: async () => { await wrote; return await s.revisions() }, close: () => s.close() }
      }
    }
    const v2 = await build(2, { cache, store: racing })
    assert.equal(v2.messages, 700, 'the snapshot, without the write')
    const v3 = await build(3, { cache })
    assert.equal(v3.messages, 701, 'the message written during the build is not hidden by the entry made from the snapshot')
    assert.deepEqual(figures(v3), figures(await build(3)))
  })

  it('appends build on the cached segments (the kept ones are not read); random appends, inserts, status changes and byte-full segments give the same bundle as a build from the rows', async () => {
    for (const seed of [11, 13]) {
      const rnd = prng(seed)
      const peers = [1, 2, 3, 4, 5].map(peer)
      const nextTs = new Map(peers.map(p => [p, 1_700_000_000_000]))
      let id = 0
      const add = (p: string, o: { ts?: number, big?: boolean } = {}): StoredMessage => {
        const ts = o.ts ?? (nextTs.get(p) as number) + 1 + Math.floor(rnd() * 1000)
        if (o.ts === undefined) nextTs.set(p, ts)
        return { ...incoming(p, `m${String(++id).padStart(6, '0')}`, ts), text: o.big === true ? 'x'.repeat(300 + Math.floor(rnd() * 400)) : `m ${id}` }
      }
      await env.store.addMessages(peers.flatMap(p => Array.from({ length: 10 + Math.floor(rnd() * 60) }, () => add(p))))
      const cache = memoryCache()
      const opts = { segmentSize: 64, segmentBytes: 4096 }
      const b = async (v: number, c?: ConversationCache, store?: BackupSource): Promise<BuildBackupResult> => await buildBackup({ store: store ?? env.store, blockstore: env.blockstore, owner: OWNER, version: v, backupKey: KEY, created: 1_700_000_000_000 + v, ...opts, ...(c !== undefined ? { conversationCache: c } : {}) })
      await b(1, cache)
      let lessRead = 0
      for (let v = 2; v < 40; v++) {
        const appended: string[] = []
        const op = rnd()
        if (op < 0.6) {
          // appends: a few messages, sometimes large (segmentBytes cuts a full segment), sometimes many
          const p = peers[Math.floor(rnd() * peers.length)]
          const n = rnd() < 0.2 ? 20 + Math.floor(rnd() * 60) : 1 + Math.floor(rnd() * 5)
          await env.store.addMessages(Array.from({ length: n }, () => add(p, { big: rnd() < 0.15 })))
          appended.push(p)
        } else if (op < 0.75) {
          // an insert before the newest row: not an append
          const p = peers[Math.floor(rnd() * peers.length)]
          await env.store.addMessages([add(p, { ts: (nextTs.get(p) as number) - 1 - Math.floor(rnd() * 5000) })])
        } else if (op < 0.9) {
          const p = peers[Math.floor(rnd() * peers.length)]
          const all: StoredMessage[] = []
          for await (const m of env.store.messages(p)) all.push(m)
          await env.store.updateMessageStatus(all[Math.floor(rnd() * all.length)].id, rnd() < 0.5 ? 'failed' : 'received')
        } else {
          // several conversations appended to in one batch
          await env.store.addMessages(peers.filter(() => rnd() < 0.5).map(p => add(p)))
        }
        const source = counted(env)
        let rows = 0
        const rowCounting: BackupSource = {
          allMessages: (o) => source.allMessages(o),
          snapshot: () => {
            const s = (source.snapshot as () => ReturnType<NonNullable<BackupSource['snapshot']>>)()
            const inner = env.store.snapshot()
            return {
              allMessages: (o) => (async function * () { for await (const m of s.allMessages(o)) { rows++; yield m } })(),
              revisions: async () => await (s.revisions as () => Promise<ConversationRevision[]>)(),
              messages: (c, q) => inner.messages(c, q),
              getMessage: async (id) => await inner.getMessage(id),
              close: async () => { await s.close(); await inner.close() }
            }
          }
        }
        const cached = await b(v, cache, rowCounting)
        const plain = await b(v)
        assert.deepEqual(figures(cached), figures(plain), `version ${v}`)
        if (appended.length === 1) {
          const p = appended[0]
          if (rows < await env.store.countMessages(p)) lessRead++
        }
      }
      assert.ok(lessRead >= 5, `appended conversations were built on their cached segments (${lessRead} times)`)
      await env.cleanup()
      env = await makeEnv()
    }
  })

  it('a store that lost its last appends (unsynced writes, a power cut) and was appended to again on the same run: built from the rows, the same bundle', async () => {
    const p = peer(1)
    const rows = (from: number, n: number, ts: (i: number) => number): StoredMessage[] => Array.from({ length: n }, (_, i) => incoming(p, `m${String(from + i).padStart(4, '0')}`, ts(i)))
    const opts = { segmentSize: 64, segmentBytes: 1 << 20 }
    const b = async (v: number, c?: ConversationCache): Promise<BuildBackupResult> => await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: v, backupKey: KEY, created: 1_700_000_000_000 + v, ...opts, ...(c !== undefined ? { conversationCache: c } : {}) })
    const t0 = 1_700_000_000_000
    await env.store.addMessages(rows(0, 60, i => t0 + i * 1000))
    // the store as a power cut would leave it: what was written up to here
    const path = join(env.dir, 'store')
    await env.store.close()
    await cp(path, join(env.dir, 'store-before'), { recursive: true })
    env.store = await openStore(path)
    // appended (the same run), then backed up: the entry holds these rows (one full segment of 64 takes 4)
    await env.store.addMessages(rows(60, 40, i => t0 + 60_000 + i * 1000 + 500))
    const cache = memoryCache()
    await b(1, cache)
    // those appends lost, other messages appended since (sorting among the lost ones), on the same run
    await env.store.close()
    await rm(path, { recursive: true })
    await cp(join(env.dir, 'store-before'), path, { recursive: true })
    env.store = await openStore(path)
    await env.store.addMessages(rows(100, 50, i => t0 + 60_000 + i * 1000))
    const cached = await b(2, cache)
    const plain = await b(2)
    assert.deepEqual(figures(cached), figures(plain))
    await env.store.close()
  })
})
