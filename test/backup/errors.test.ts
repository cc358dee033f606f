import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CarIndexer } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { buildBackup, readBackup, readCar, readHeader, verifyBackup, writeCar } from '../../src/backup/index.ts'
import type { BuildBackupResult } from '../../src/backup/index.ts'
import type { BackupHeader } from '../../src/backup/schema.ts'
import { dagCborCid } from '../../src/backup/blocks.ts'
import { openManifest, readManifestNode } from '../../src/backup/reader.ts'
import {
  decodeIndex, decodeShard, encodeHeader, encodeIndex, encodeLinks, encodeManifest, encodeManifestNode, encodeShard, encodeShardNode, encodeTopLinks, encodeTopNode
} from '../../src/backup/schema.ts'
import { open, seal } from '../../src/backup/seal.ts'
import { sha256 } from '../../src/crypto/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { KEY, OTHER_KEY, OWNER, collect, makeEnv, makeHistory } from './helpers.ts'
import type { Env } from './helpers.ts'

async function rejectsWith (p: Promise<unknown>, code: string, check: (info: Record<string, unknown>) => void = () => {}): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isTokenimError(err), `expected a TokenimError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    check(err.info)
    return true
  })
}

async function readAll (env: Env, root: CID, key: Uint8Array = KEY): Promise<unknown[]> {
  const r = await readBackup({ root, blockstore: env.blockstore, backupKey: key })
  return await collect(r.messages())
}

function flip (bytes: Uint8Array, at: number): Uint8Array {
  const out = Uint8Array.from(bytes)
  out[at] ^= 0x01
  return out
}

describe('backup: wrong keys, tampering, missing blocks', function () {
  let env: Env
  let res: BuildBackupResult
  let segments: CID[]
  let conversationOf: string[]
  beforeEach(async () => {
    env = await makeEnv()
    await env.store.addMessages(makeHistory({ conversations: 3, messages: 300, seed: 21 }))
    res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 4, backupKey: KEY, segmentSize: 32 })
    const r = await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })
    segments = r.links.segments
    conversationOf = r.conversations.flatMap(c => c.segments.map(() => c.peer))
  })
  afterEach(async () => { await env.cleanup() })

  async function get (cid: CID): Promise<Uint8Array> {
    return Buffer.concat(await collect(env.blockstore.get(cid)))
  }

  it('another key → DECRYPT_FAILED; with a passphrase → WRONG_PASSPHRASE', async () => {
    await rejectsWith(readAll(env, res.root, OTHER_KEY), 'DECRYPT_FAILED', info => assert.equal(info.kdf, false))
    const kdf = { algorithm: 'scrypt' as const, N: 1024, r: 8, p: 1, salt: 'ab'.repeat(16) }
    const withPass = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 5, backupKey: KEY, kdf })
    await rejectsWith(readAll(env, withPass.root, OTHER_KEY), 'WRONG_PASSPHRASE')
    assert.equal((await readAll(env, withPass.root, KEY)).length, 300)
    const report = await verifyBackup({ root: withPass.root, blockstore: env.blockstore, backupKey: OTHER_KEY })
    assert.equal(report.ok, false)
    assert.deepEqual(report.problems.map(p => p.code), ['WRONG_PASSPHRASE'])
  })

  it('a flipped byte in a segment → BACKUP_TAMPERED naming the block and its conversation', async () => {
    const cid = segments[2]
    await env.blockstore.put(cid, flip(await get(cid), 40))
    await rejectsWith(readAll(env, res.root), 'BACKUP_TAMPERED', info => {
      assert.equal(info.cid, cid.toString())
      assert.equal(info.conversation, conversationOf[2])
      assert.equal(info.reason, 'hash-mismatch')
    })
  })

  it('a missing segment → MISSING_BLOCK naming the CID; a missing root too', async () => {
    const cid = segments[segments.length - 1]
    await env.blockstore.delete(cid)
    await rejectsWith(readAll(env, res.root), 'MISSING_BLOCK', info => assert.equal(info.cid, cid.toString()))
    await env.blockstore.delete(res.root)
    await rejectsWith(readAll(env, res.root), 'MISSING_BLOCK', info => assert.equal(info.cid, res.root.toString()))
  })

  it('owner, version and digest are checked against what the caller expects', async () => {
    await rejectsWith(readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, owner: '0x' + 'b2'.repeat(20) }), 'BACKUP_OWNER_MISMATCH')
    await rejectsWith(readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, version: 3 }), 'BACKUP_VERSION_MISMATCH', info => {
      assert.equal(info.expected, 3)
      assert.equal(info.actual, 4)
    })
    await rejectsWith(readHeader({ root: res.root, blockstore: env.blockstore, digest: '0x' + '00'.repeat(32) }), 'BACKUP_TAMPERED')
    const ok = await readHeader({ root: res.root, blockstore: env.blockstore, owner: OWNER.toUpperCase().replace('0X', '0x'), version: 4, digest: res.digest })
    assert.equal(ok.version, 4)
  })

  it('verifyBackup reports every problem with where it is; public mode without keys', async () => {
    await env.blockstore.delete(segments[0])
    await env.blockstore.put(segments[segments.length - 1], flip(await get(segments[segments.length - 1]), 60))
    const full = await verifyBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, owner: OWNER, version: 4 })
    assert.equal(full.ok, false)
    assert.deepEqual(full.problems.map(p => [p.code, p.cid, p.conversation, p.block]), [
      ['MISSING_BLOCK', segments[0].toString(), conversationOf[0], 'segment'],
      ['BACKUP_TAMPERED', segments[segments.length - 1].toString(), conversationOf[segments.length - 1], 'segment']
    ])
    assert.equal(full.messages, 300 - 32 - (await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })).conversations.at(-1)!.segments.at(-1)!.count)
    const pub = await verifyBackup({ root: res.root, blockstore: env.blockstore, version: 5 })
    assert.equal(pub.mode, 'public')
    assert.deepEqual(pub.problems.map(p => p.code), ['BACKUP_VERSION_MISMATCH', 'MISSING_BLOCK', 'BACKUP_TAMPERED'])
  })

  /** a root over `manifestBytes` (made with the key, counting one message less in the first segment): both reading and verify report COUNT_MISMATCH there */
  async function expectFirstSegmentMiscounted (header: BackupHeader, manifestBytes: Uint8Array): Promise<void> {
    const manifestCid = dagCborCid(manifestBytes)
    await env.blockstore.put(manifestCid, manifestBytes)
    const rootBytes = encodeHeader({ ...header, manifest: manifestCid })
    const root = dagCborCid(rootBytes)
    await env.blockstore.put(root, rootBytes)
    await rejectsWith(readAll(env, root), 'COUNT_MISMATCH', info => {
      assert.equal(info.cid, segments[0].toString())
      assert.equal(info.expected, 31)
      assert.equal(info.actual, 32)
    })
    const report = await verifyBackup({ root, blockstore: env.blockstore, backupKey: KEY })
    assert.deepEqual(report.problems.map(p => p.code), ['COUNT_MISMATCH'])
  }

  it('v1: a manifest that authenticates but disagrees with a segment → COUNT_MISMATCH', async () => {
    // forge with the key (only the owner can): claim one message less in the first segment
    res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 4, backupKey: KEY, segmentSize: 32, formatVersion: 1 })
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const node = await readManifestNode(env.blockstore, header)
    const m = openManifest(KEY, header, node)
    m.conversations[0].segments[0].count -= 1
    m.conversations[0].count -= 1
    m.totals.messages -= 1
    m.links = sha256(encodeLinks(node.segments, node.attachments))
    const nodeBytes = encodeManifestNode({ ...node, sealed: seal(KEY, 'manifest', encodeManifest(m)) })
    await expectFirstSegmentMiscounted(header, nodeBytes)
  })

  it('v2: a shard that authenticates but disagrees with a segment → COUNT_MISMATCH', async () => {
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const node = await readManifestNode(env.blockstore, header)
    const sharded = node.sharded!
    const index = decodeIndex(open(KEY, 'index', sharded.top.sealed, 1 << 24), {})
    const s0 = sharded.shards[0]
    const shard = decodeShard(open(KEY, 'shard', s0.sealed, 1 << 24), {}, 32)
    shard.conversations[0].segments[0].count -= 1
    shard.conversations[0].count -= 1
    index.shards[0].messages -= 1
    index.totals.messages -= 1
    const shardBytes = encodeShardNode({ ...s0, sealed: seal(KEY, 'shard', encodeShard(shard)) })
    const shardCid = dagCborCid(shardBytes)
    await env.blockstore.put(shardCid, shardBytes)
    const shards = [shardCid, ...sharded.top.shards.slice(1)]
    index.links = sha256(encodeTopLinks(shards, sharded.top.contacts))
    const topBytes = encodeTopNode({ ...sharded.top, shards, sealed: seal(KEY, 'index', encodeIndex(index)) })
    await expectFirstSegmentMiscounted(header, topBytes)
  })

  it('v2: segments spliced into a shard, or shards swapped, without the key → BACKUP_TAMPERED (links commitments)', async () => {
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const node = await readManifestNode(env.blockstore, header)
    const sharded = node.sharded!
    const s0 = sharded.shards[0]
    const swapped = [...s0.segments]
    ;[swapped[0], swapped[1]] = [swapped[1], swapped[0]]
    const shardBytes = encodeShardNode({ ...s0, segments: swapped })
    const shardCid = dagCborCid(shardBytes)
    await env.blockstore.put(shardCid, shardBytes)
    const variants = [[shardCid, ...sharded.top.shards.slice(1)]]
    if (sharded.top.shards.length > 1) variants.push([...sharded.top.shards].reverse())
    for (const shards of variants) {
      const topBytes = encodeTopNode({ ...sharded.top, shards })
      const topCid = dagCborCid(topBytes)
      await env.blockstore.put(topCid, topBytes)
      const rootBytes = encodeHeader({ ...header, manifest: topCid })
      const root = dagCborCid(rootBytes)
      await env.blockstore.put(root, rootBytes)
      await rejectsWith(readAll(env, root), 'BACKUP_TAMPERED', info => assert.equal(info.reason, 'links'))
    }
  })

  it('v1: segments spliced into a manifest node without the key → BACKUP_TAMPERED (links commitment)', async () => {
    res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 4, backupKey: KEY, segmentSize: 32, formatVersion: 1 })
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const node = await readManifestNode(env.blockstore, header)
    const swapped = [...node.segments]
    ;[swapped[0], swapped[1]] = [swapped[1], swapped[0]]
    const nodeBytes = encodeManifestNode({ ...node, segments: swapped })
    const nodeCid = dagCborCid(nodeBytes)
    await env.blockstore.put(nodeCid, nodeBytes)
    const rootBytes = encodeHeader({ ...header, manifest: nodeCid })
    const root = dagCborCid(rootBytes)
    await env.blockstore.put(root, rootBytes)
    await rejectsWith(readAll(env, root), 'BACKUP_TAMPERED', info => assert.equal(info.reason, 'links'))
  })

  it('refuses roots that are not tokenim backups or of an unknown format version', async () => {
    const other = dagCbor.encode({ hello: 'world' })
    const otherCid = dagCborCid(other)
    await env.blockstore.put(otherCid, other)
    await rejectsWith(readHeader({ root: otherCid, blockstore: env.blockstore }), 'BACKUP_FORMAT_UNSUPPORTED')
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const future = dagCbor.encode({ ...dagCbor.decode(encodeHeader(header)) as object, v: 3 })
    const futureCid = dagCborCid(future)
    await env.blockstore.put(futureCid, future)
    await rejectsWith(readHeader({ root: futureCid, blockstore: env.blockstore }), 'BACKUP_FORMAT_UNSUPPORTED', info => assert.equal(info.found, 3))
  })

  it('a flipped byte in a CAR file → the block is reported tampered, reading fails with BACKUP_TAMPERED', async () => {
    const file = join(env.dir, 'b.car')
    await writeCar(res.root, env.blockstore, file)
    const bytes = await readFile(file)
    const indexer = await CarIndexer.fromBytes(bytes)
    let target: { cid: CID, offset: number } | undefined
    for await (const e of indexer) if (e.cid.equals(segments[1])) target = { cid: e.cid, offset: e.blockOffset }
    assert.ok(target)
    await writeFile(file, flip(bytes, target.offset + 50))
    const car = await readCar(file)
    try {
      assert.deepEqual(car.tampered, [segments[1].toString()])
      await rejectsWith((async () => collect((await readBackup({ root: car.root, blockstore: car.blockstore, backupKey: KEY })).messages()))(), 'BACKUP_TAMPERED',
        info => assert.equal(info.cid, segments[1].toString()))
      const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, backupKey: KEY })
      assert.deepEqual(report.problems.map(p => [p.code, p.cid]), [['BACKUP_TAMPERED', segments[1].toString()]])
    } finally {
      await car.blockstore.close()
    }
  })

  it('random damage to any block gives a typed error, never a crash', async () => {
    const header = await readHeader({ root: res.root, blockstore: env.blockstore })
    const targets = [res.root, header.manifest, segments[0]]
    const originals = await Promise.all(targets.map(get))
    let seed = 7
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
    for (let round = 0; round < 150; round++) {
      const t = round % targets.length
      const bytes = Uint8Array.from(originals[t])
      const n = 1 + Math.floor(rnd() * 4)
      for (let i = 0; i < n; i++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256)
      // re-address the damaged block so the hash check passes and the decoders see the damage
      const cid = CID.createV1(targets[t].code, (t === 2 ? (await import('../../src/backup/blocks.ts')).rawCid(bytes) : dagCborCid(bytes)).multihash)
      await env.blockstore.put(cid, bytes)
      for (const key of [KEY, undefined]) {
        const report = await verifyBackup({ root: t === 0 ? cid : res.root, blockstore: env.blockstore, backupKey: key })
        for (const p of report.problems) assert.match(p.code, /^[A-Z_]+$/)
      }
      if (t === 0) {
        try {
          await readAll(env, cid)
        } catch (err) {
          assert.ok(isTokenimError(err), String(err))
        }
      }
    }
  })
})
