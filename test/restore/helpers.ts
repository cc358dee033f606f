import assert from 'node:assert/strict'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarIndexer, CarWriter } from '@ipld/car'
import type { CID } from 'multiformats/cid'
import { buildBackup, walkDag, writeCar } from '../../src/backup/index.ts'
import type { BlockGetter, BlockStore, BuildBackupResult } from '../../src/backup/index.ts'
import { RegistryClient } from '../../src/chain/index.ts'
import type { ChainProfile } from '../../src/chain/index.ts'
import { TEST_SCRYPT_COST } from '../../src/crypto/index.ts'
import type { KdfParams } from '../../src/crypto/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { deriveBackupKey, deriveKeys, generateMnemonic } from '../../src/identity/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { collect, makeEnv, makeHistory } from '../backup/helpers.ts'
import type { Env } from '../backup/helpers.ts'

export const PASSWORD = 'restore test password'

export function hasCode (code: string, check?: (err: Error & { info: Record<string, unknown> }) => void) {
  return (err: unknown): boolean => {
    assert.ok(isTokenimError(err, code), `expected ${code}, got ${String((err as { code?: string }).code)}: ${String(err)}`)
    check?.(err)
    return true
  }
}

/** A temp dir for a test; removed by cleanup(). */
export class Dirs {
  readonly all: string[] = []
  async make (prefix = 'tokenim-restore-test-'): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), prefix))
    this.all.push(d)
    return d
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.all.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

export interface Owner {
  phrase: string
  address: string
  backupKey: Uint8Array
  kdf: KdfParams | null
  env: Env
  client: RegistryClient
  /** build version `version` from the store (into `blockstore`, default the env's), anchor it, write a CAR */
  backup: (version: number, o?: { anchor?: boolean, blockstore?: BlockStore }) => Promise<BuildBackupResult & { file: string }>
  messages: () => Promise<StoredMessage[]>
  cleanup: () => Promise<void>
}

/** An owner (fresh mnemonic, funded on the devnet) with a history in a store. */
export async function makeOwner (profile: ChainProfile, o: { messages: number, conversations?: number, seed?: number, passphrase?: string, start?: number, attachments?: number }): Promise<Owner> {
  const phrase = generateMnemonic(12)
  const keys = deriveKeys(phrase)
  const bk = o.passphrase !== undefined
    ? await deriveBackupKey(keys.backupRootKey, { passphrase: o.passphrase, scryptCost: TEST_SCRYPT_COST })
    : await deriveBackupKey(keys.backupRootKey)
  const env = await makeEnv()
  await env.store.addMessages(makeHistory({ conversations: o.conversations ?? 4, messages: o.messages, seed: o.seed ?? 7, start: o.start, attachments: o.attachments }))
  const client = new RegistryClient(profile, keys.wallet)
  await client.ensureFunds(keys.address)
  return {
    phrase,
    address: keys.address,
    backupKey: bk.key,
    kdf: bk.kdf ?? null,
    env,
    client,
    async backup (version, opts = {}) {
      const bs = opts.blockstore ?? env.blockstore
      const res = await buildBackup({ store: env.store, blockstore: bs, owner: keys.address, version, backupKey: bk.key, kdf: bk.kdf ?? null, segmentSize: 50 })
      if (opts.anchor !== false) await client.anchor(version, res.digest)
      const file = join(env.dir, `v${version}.car`)
      await writeCar(res.root, bs, file, { overwrite: true })
      return { ...res, file }
    },
    messages: async () => await collect(env.store.allMessages()),
    cleanup: async () => {
      client.close()
      await env.cleanup()
    }
  }
}

/** The messages of a restored data dir, in store order. */
export async function restoredMessages (dataDir: string): Promise<StoredMessage[]> {
  const store = await openStore(join(dataDir, 'store'), { createIfMissing: false })
  try {
    return await collect(store.allMessages())
  } finally {
    await store.close()
  }
}

/** Offsets of the blocks of a CAR file, in file order. */
export async function carBlocks (file: string): Promise<Array<{ cid: CID, offset: number, length: number }>> {
  const indexer = await CarIndexer.fromIterable(createReadStream(file))
  const out: Array<{ cid: CID, offset: number, length: number }> = []
  for await (const e of indexer) out.push({ cid: e.cid, offset: e.blockOffset, length: e.blockLength })
  return out
}

/** Flip one byte in the middle of the n-th block of a CAR file; returns that block's CID. */
export async function flipByteInBlock (file: string, n: number): Promise<CID> {
  const blocks = await carBlocks(file)
  const b = blocks[n]
  const fh = await open(file, 'r+')
  try {
    const pos = b.offset + Math.floor(b.length / 2)
    const buf = Buffer.alloc(1)
    await fh.read(buf, 0, 1, pos)
    buf[0] ^= 0x01
    await fh.write(buf, 0, 1, pos)
  } finally {
    await fh.close()
  }
  return b.cid
}

/** Write a CAR of `root`'s DAG leaving out the blocks in `skip`. */
export async function writeCarWithout (root: CID, bs: BlockGetter, file: string, skip: CID[]): Promise<void> {
  const leave = new Set(skip.map(String))
  const { writer, out } = CarWriter.create([root])
  const chunks: Uint8Array[] = []
  const drained = (async () => { for await (const c of out) chunks.push(c) })()
  for await (const { cid, bytes } of walkDag(bs, root)) {
    if (!leave.has(cid.toString())) await writer.put({ cid, bytes })
  }
  await writer.close()
  await drained
  await writeFile(file, Buffer.concat(chunks))
}

export { collect }
