// Builds the committed backup fixtures in test/fixtures/backup-v<FORMAT_VERSION>/: a small, deterministic
// bundle of the current format (fixed mnemonic, messages, contacts and creation time), without and with a
// (cheap-scrypt, fixed-salt) passphrase, as CAR files, plus deliberately damaged copies, and expected.json
// with the digests, root CIDs, messages and the error code each damaged file must give.
//
// Run it only when a NEW format version is introduced (into a new folder): the fixtures of released
// versions must never be rebuilt, since the point is that the current reader still reads the old bytes.
//
// Usage: node scripts/make-fixtures.ts [--out DIR] [--force]
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { CarWriter } from '@ipld/car'
import type { CID } from 'multiformats/cid'
import { buildBackup, FORMAT_VERSION, walkDag } from '../src/backup/index.ts'
import type { BlockStore, BuildBackupResult } from '../src/backup/index.ts'
import type { KdfParams } from '../src/crypto/index.ts'
import { deriveBackupKey, deriveKeys } from '../src/identity/index.ts'
import type { Contact, StoredMessage } from '../src/store/index.ts'

export const FIXTURE_MNEMONIC = 'test test test test test test test test test test test junk'
export const FIXTURE_PASSPHRASE = 'correct horse battery staple'
/** 2025-01-01T00:00:00Z */
export const FIXTURE_CREATED = 1_735_689_600_000
/** cheap scrypt (tests only) with a fixed salt, so the passphrase bundle is deterministic too */
export const FIXTURE_KDF: KdfParams = { algorithm: 'scrypt', N: 1024, r: 8, p: 1, salt: '746f6b656e696d2d666978747572652d' }
const SEGMENT_SIZE = 4

const PEERS = ['0x1000000000000000000000000000000000000001', '0x2000000000000000000000000000000000000002', '0x3000000000000000000000000000000000000003']
const TEXTS = [
  'hi!', 'how are you?', 'fine, thanks. and you?', 'good. lunch tomorrow?', 'sure, 12:30 at the usual place',
  'see you there', 'running 5 minutes late', 'no problem', 'did you get the photo?', 'yes, it is great',
  'héllo in UTF-8: ünïcödé ✓ 🙂', 'the backup is anchored on chain', 'ok'
]

/** The fixture history: 3 conversations of 7, 4 and 2 messages, fixed ids and times. */
export function fixtureMessages (owner: string): StoredMessage[] {
  const me = owner.toLowerCase()
  const sizes = [7, 4, 2]
  const out: StoredMessage[] = []
  let n = 0
  sizes.forEach((size, c) => {
    for (let i = 0; i < size; i++) {
      const ts = FIXTURE_CREATED - 86_400_000 + c * 3_600_000 + i * 60_000
      const direction = (i + c) % 2 === 0 ? 'in' : 'out'
      const peer = PEERS[c]
      const m: StoredMessage = {
        id: `0193f7a0-0000-7000-8000-${String(++n).padStart(12, '0')}`,
        conversation: peer,
        from: direction === 'in' ? peer : me,
        to: direction === 'in' ? me : peer,
        ts,
        text: TEXTS[(n - 1) % TEXTS.length],
        direction,
        status: direction === 'in' ? 'received' : 'delivered'
      }
      if (direction === 'in') m.receivedAt = ts + 1500
      out.push(m)
    }
  })
  return out
}

export function fixtureContacts (): Contact[] {
  return [
    { address: PEERS[0], name: 'alice', addedAt: FIXTURE_CREATED - 90 * 86_400_000 },
    { address: PEERS[1], name: 'bob', addedAt: FIXTURE_CREATED - 30 * 86_400_000 }
  ]
}

class MemoryBlockstore implements BlockStore {
  readonly blocks = new Map<string, Uint8Array>()
  get (cid: CID): Uint8Array {
    const b = this.blocks.get(cid.toString())
    if (b === undefined) throw new Error(`missing ${cid.toString()}`)
    return b
  }

  put (cid: CID, bytes: Uint8Array): void { this.blocks.set(cid.toString(), bytes) }
  has (cid: CID): boolean { return this.blocks.has(cid.toString()) }
}

interface Block { cid: CID, bytes: Uint8Array }

async function carBytes (root: CID, blocks: Block[]): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([root])
  const chunks: Uint8Array[] = []
  const drained = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await drained
  return Buffer.concat(chunks)
}

async function dagBlocks (bs: BlockStore, root: CID): Promise<Block[]> {
  const out: Block[] = []
  for await (const b of walkDag(bs, root)) out.push(b)
  return out
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const outIdx = args.indexOf('--out')
  const dir = resolve(outIdx >= 0 ? args[outIdx + 1] : join(import.meta.dirname, '..', 'test', 'fixtures', `backup-v${FORMAT_VERSION}`))
  await mkdir(dir, { recursive: true })
  const present = (await readdir(dir)).filter(f => f.endsWith('.car') || f.endsWith('.json'))
  if (present.length > 0 && !args.includes('--force')) {
    throw new Error(`${dir} already holds fixtures: those of a released format must never change (use --force to rebuild deliberately)`)
  }

  const keys = deriveKeys(FIXTURE_MNEMONIC)
  const owner = keys.address
  const messages = fixtureMessages(owner)
  const contacts = fixtureContacts()
  const source = { allMessages: async function * () { yield * messages }, contacts: () => contacts }

  const plain = await deriveBackupKey(keys.backupRootKey)
  const withPass = await deriveBackupKey(keys.backupRootKey, { passphrase: FIXTURE_PASSPHRASE, kdf: FIXTURE_KDF })

  const build = async (backupKey: Uint8Array, kdf: KdfParams | null): Promise<{ res: BuildBackupResult, blocks: Block[] }> => {
    const bs = new MemoryBlockstore()
    const res = await buildBackup({ store: source, blockstore: bs, owner, version: 1, backupKey, kdf, segmentSize: SEGMENT_SIZE, created: FIXTURE_CREATED })
    return { res, blocks: await dagBlocks(bs, res.root) }
  }
  const a = await build(plain.key, null)
  const b = await build(withPass.key, FIXTURE_KDF)

  const files: Record<string, Uint8Array> = {}
  files['plain.car'] = await carBytes(a.res.root, a.blocks)
  files['passphrase.car'] = await carBytes(b.res.root, b.blocks)

  // damaged copies of plain.car. Blocks come root, manifest node, then segments (walk order).
  const segIdx = a.blocks.findIndex((_, i) => i >= 2)
  const seg = a.blocks[segIdx]
  const flipped = Uint8Array.from(seg.bytes)
  flipped[Math.floor(flipped.length / 2)] ^= 0x01
  files['damaged-flipped-segment.car'] = await carBytes(a.res.root, a.blocks.map((x, i) => i === segIdx ? { cid: x.cid, bytes: flipped } : x))
  const missing = a.blocks[a.blocks.length - 1]
  files['damaged-missing-block.car'] = await carBytes(a.res.root, a.blocks.filter(x => x !== missing))
  const whole = files['plain.car']
  files['damaged-truncated.car'] = whole.subarray(0, whole.length - 40)

  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes)

  const expected = {
    comment: 'made by scripts/make-fixtures.ts; never rebuild the fixtures of a released format version',
    format: FORMAT_VERSION,
    mnemonic: FIXTURE_MNEMONIC,
    owner,
    version: 1,
    created: FIXTURE_CREATED,
    segmentSize: SEGMENT_SIZE,
    bundles: {
      'plain.car': { cid: a.res.root.toString(), digest: a.res.digest, passphrase: null, segments: a.res.segments, blocks: a.blocks.length },
      'passphrase.car': { cid: b.res.root.toString(), digest: b.res.digest, passphrase: FIXTURE_PASSPHRASE, kdf: FIXTURE_KDF, segments: b.res.segments, blocks: b.blocks.length }
    },
    damaged: {
      'damaged-flipped-segment.car': { from: 'plain.car', code: 'BACKUP_TAMPERED', cid: seg.cid.toString(), what: 'one byte flipped in the first segment block' },
      'damaged-missing-block.car': { from: 'plain.car', code: 'MISSING_BLOCK', cid: missing.cid.toString(), what: 'the last segment block left out' },
      'damaged-truncated.car': { from: 'plain.car', code: 'CAR_INVALID', what: 'the last 40 bytes cut off' }
    },
    conversations: [...new Set(messages.map(m => m.conversation))].map(peer => ({ peer, count: messages.filter(m => m.conversation === peer).length })),
    contacts,
    messages
  }
  await writeFile(join(dir, 'expected.json'), JSON.stringify(expected, null, 2) + '\n')
  let total = 0
  for (const f of Object.values(files)) total += f.length
  console.log(`wrote ${Object.keys(files).length} CAR files (${total} bytes) and expected.json to ${dir}`)
}

if (import.meta.main === true || process.argv[1] === import.meta.filename) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
