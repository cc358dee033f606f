/**
 * What the +1% backup's new bytes are made of (issue 7 §2): builds v1 of the bench's `small` history
 * (10,000 messages in 100 conversations, scripts/bench/history.ts) into a real level blockstore, adds
 * 1% (100 messages in 10 conversations, as the bench does) and builds v2, then sorts every block of v2 that
 * v1 did not have by kind: new segments (their new and re-sealed old messages, plaintext, zstd and box
 * overhead), shard nodes (sealed part and plaintext link lists), the top node, the contacts box, the root.
 * Several runs, each with a random backup key (the shard boundaries depend on it); `--versions N` makes N
 * such +1% versions one after the other (the steady state: tails that fill up are merged into larger runs).
 * Not part of `npm run bench`: a tool for reading where the incremental bytes go (docs/backup-format.md).
 *
 *   node scripts/bench/backup-breakdown.ts [--runs N] [--versions N] [--messages N] [--conversations N] [--shard-size N]
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { LevelBlockstore } from 'blockstore-level'
import type { CID } from 'multiformats/cid'
import { buildBackup, readBackup, readManifestNode } from '../../src/backup/index.ts'
import type { BuildBackupResult } from '../../src/backup/index.ts'
import { readBlock } from '../../src/backup/blocks.ts'
import { compress, open } from '../../src/backup/seal.ts'
import { openStore } from '../../src/store/index.ts'
import { addHistory, moreMessages, newHistory, pick } from './history.ts'

interface Args { runs: number, messages: number, conversations: number, shardSize?: number, versions: number }

function args (argv: string[]): Args {
  const num = (name: string, fallback?: number): number | undefined => {
    const i = argv.indexOf(name)
    return i >= 0 ? Number(argv[i + 1]) : fallback
  }
  return { runs: num('--runs', 3) as number, messages: num('--messages', 10_000) as number, conversations: num('--conversations', 100) as number, shardSize: num('--shard-size'), versions: num('--versions', 1) as number }
}

interface Row { blocks: number, bytes: number, plain?: number, zstd?: number }
type Breakdown = Record<string, Row>

function add (b: Breakdown, kind: string, bytes: number, plain?: number, zstd?: number): void {
  const r = b[kind] ?? (b[kind] = { blocks: 0, bytes: 0, plain: 0, zstd: 0 })
  r.blocks++
  r.bytes += bytes
  if (plain !== undefined) r.plain = (r.plain ?? 0) + plain
  if (zstd !== undefined) r.zstd = (r.zstd ?? 0) + zstd
}

interface Version { v: BuildBackupResult, b: Breakdown, newMsgs: number, oldMsgs: number }

async function once (a: Args, run: number): Promise<{ v1: BuildBackupResult, versions: Version[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-breakdown-'))
  const store = await openStore(join(dir, 'store'))
  const bs = new LevelBlockstore(join(dir, 'blocks'))
  await bs.open()
  try {
    const owner = '0x' + randomBytes(20).toString('hex')
    const key = new Uint8Array(randomBytes(32))
    const history = newHistory(owner, a.conversations)
    const all = Array.from({ length: a.conversations }, (_, i) => i)
    await addHistory(store, history, a.messages, all)
    const opts = a.shardSize !== undefined ? { shardSize: a.shardSize } : {}
    const v1 = await buildBackup({ store, blockstore: bs, owner, version: 1, backupKey: key, ...opts })
    const get = async (c: CID): Promise<Uint8Array> => await readBlock(bs, c, 64 << 20)
    /** the blocks of a version (attachments aside) */
    const blocksOf = async (root: CID): Promise<Set<string>> => {
      const r = await readBackup({ root, blockstore: bs, backupKey: key })
      const n = await readManifestNode(bs, r.header)
      const out = new Set<string>([root.toString(), r.header.manifest.toString(), ...n.segments.map(String)])
      for (const s of n.sharded?.shards ?? []) out.add(s.cid.toString())
      if (n.sharded !== undefined) out.add(n.sharded.top.contacts.toString())
      return out
    }
    let prev = v1
    const versions: Version[] = []
    for (let version = 2; version <= a.versions + 1; version++) {
      const active = pick(all, Math.max(1, Math.round(a.conversations * 0.1)), history.rand)
      const added = moreMessages(history, Math.max(1, Math.round(a.messages * 0.01)), active)
      await store.addMessages(added)
      const addedIds = new Set(added.map(m => m.id))
      const old = await blocksOf(prev.root)
      const v2 = await buildBackup({ store, blockstore: bs, owner, version, backupKey: key, prevRoot: prev.root, ...opts })
      const r2 = await readBackup({ root: v2.root, blockstore: bs, backupKey: key })
      const n2 = await readManifestNode(bs, r2.header)
      const b: Breakdown = {}
      const isNew = (c: CID): boolean => !old.has(c.toString())
      let newMsgs = 0
      let oldMsgs = 0
      add(b, 'root', (await get(v2.root)).length)
      const top = await get(r2.header.manifest)
      add(b, 'top node', top.length)
      add(b, '  top: sealed index', n2.sealed.length)
      add(b, '  top: links + framing', top.length - n2.sealed.length)
      for (const s of n2.sharded?.shards ?? []) {
        if (!isNew(s.cid)) continue
        const bytes = await get(s.cid)
        const links = dagCbor.encode(s.segments).length
        add(b, 'shard node', bytes.length)
        add(b, '  shard: sealed', s.sealed.length, open(key, 'shard', s.sealed, 64 << 20).length)
        add(b, '  shard: segment links', links)
        add(b, '  shard: attachment links + framing', bytes.length - s.sealed.length - links)
      }
      if (n2.sharded !== undefined && isNew(n2.sharded.top.contacts)) add(b, 'contacts box', n2.sharded.contactsBox.length)
      for (const c of n2.segments) {
        if (!isNew(c)) continue
        const box = await get(c)
        const plain = open(key, 'segment', box, 4 << 20)
        const seg = dagCbor.decode(plain) as { msgs: Array<{ id: string }> }
        for (const m of seg.msgs) {
          if (addedIds.has(m.id)) newMsgs++
          else oldMsgs++
        }
        add(b, 'segment', box.length, plain.length, compress(plain).length)
      }
      console.log(`run ${run} v${version}: v1 ${v1.bytesTotal} B (${v1.blocks} blocks, ${v1.shards} shards); v${version} ${v2.bytesNew} / ${v2.bytesTotal} B new = ` +
        `${(100 * v2.bytesNew / v2.bytesTotal).toFixed(2)}% (${v2.blocksNew} of ${v2.blocks} blocks); new segments hold ${newMsgs} new + ${oldMsgs} re-sealed messages`)
      versions.push({ v: v2, b, newMsgs, oldMsgs })
      prev = v2
    }
    return { v1, versions }
  } finally {
    await store.close().catch(() => {})
    await bs.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

const a = args(process.argv.slice(2))
const sum: Breakdown = {}
let total = 0
let n = 0
const shares: string[] = []
const totals: number[] = []
let resealed = 0
for (let i = 0; i < a.runs; i++) {
  const r = await once(a, i)
  totals.push(r.v1.bytesTotal)
  for (const v of r.versions) {
    for (const [k, row] of Object.entries(v.b)) {
      const s = sum[k] ?? (sum[k] = { blocks: 0, bytes: 0, plain: 0, zstd: 0 })
      s.blocks += row.blocks
      s.bytes += row.bytes
      s.plain = (s.plain ?? 0) + (row.plain ?? 0)
      s.zstd = (s.zstd ?? 0) + (row.zstd ?? 0)
    }
    total += v.v.bytesNew
    resealed += v.oldMsgs
    n++
    shares.push((100 * v.v.bytesNew / v.v.bytesTotal).toFixed(2))
  }
}
console.log(`\nmean over ${n} incremental versions (${a.runs} runs × ${a.versions}) of the new blocks: bytesNew ${Math.round(total / n)} B, ${(resealed / n).toFixed(1)} old messages re-sealed; ` +
  `shares ${shares.join(', ')}%; v1 bytesTotal ${totals.join(', ')}`)
console.log('kind'.padEnd(40) + 'blocks'.padStart(8) + 'bytes'.padStart(10) + 'share'.padStart(8) + 'plain'.padStart(10) + 'zstd'.padStart(10))
for (const [k, r] of Object.entries(sum)) {
  console.log(k.padEnd(40) + (r.blocks / n).toFixed(1).padStart(8) + Math.round(r.bytes / n).toString().padStart(10) +
    (k.startsWith('  ') ? '' : `${(100 * r.bytes / total).toFixed(1)}%`).padStart(8) +
    (r.plain !== 0 ? Math.round((r.plain ?? 0) / n).toString() : '').padStart(10) + (r.zstd !== 0 ? Math.round((r.zstd ?? 0) / n).toString() : '').padStart(10))
}
