/**
 * Random byte damage in 50 random blocks of a real backup (root, manifest node, segments, attachments):
 * each one is found by verify (src/backup verifyBackup over a blockstore, src/restore verifyRestoreSource
 * over a CAR file) and refused by restore, which leaves the target data dir empty. Then all 50 leaf
 * blocks damaged at once: verify lists every one of them.
 */
import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { buildBackup, readHeader, readManifestNode, verifyBackup, walkDag, writeCar } from '../../src/backup/index.ts'
import type { BlockGetter } from '../../src/backup/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { deriveBackupKey, deriveKeys, generateMnemonic } from '../../src/identity/index.ts'
import { openCarSource, restoreBackup, verifyRestoreSource } from '../../src/restore/index.ts'
import { makeEnv, makeHistory, materializeAttachments } from '../backup/helpers.ts'
import type { Env } from '../backup/helpers.ts'
import { carBlocks } from '../restore/helpers.ts'
import { int, prng } from './mutate.ts'

const BLOCKS = 50

async function emptyOrAbsent (dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
  }
}

describe('robustness: byte flips in 50 random blocks of a backup', function () {
  this.timeout(120_000)
  let env: Env
  let phrase: string
  let owner: string
  let backupKey: Uint8Array
  let root: CID
  let carFile: string
  let car: Buffer
  const blocks = new Map<string, Uint8Array>()
  let layout: Array<{ cid: CID, offset: number, length: number }>
  const rnd = prng(Number(process.env.TOKENIM_FUZZ_SEED ?? 4242))

  before(async () => {
    env = await makeEnv()
    phrase = generateMnemonic(12)
    const keys = deriveKeys(phrase)
    owner = keys.address
    backupKey = (await deriveBackupKey(keys.backupRootKey)).key
    const history = makeHistory({ conversations: 5, messages: 1200, seed: 9, attachments: 0.03 })
    await materializeAttachments(history, env.blockstore)
    await env.store.addMessages(history)
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner, version: 1, backupKey, segmentSize: 20 })
    root = res.root
    for await (const b of walkDag(env.blockstore, root)) blocks.set(b.cid.toString(), b.bytes)
    carFile = join(env.dir, 'good.car')
    await writeCar(root, env.blockstore, carFile)
    car = await readFile(carFile)
    layout = await carBlocks(carFile)
    assert.ok(layout.length >= 2 * BLOCKS, `${layout.length} blocks`)
    // the intact backup verifies and restores
    const source = await openCarSource(carFile)
    try {
      const report = await verifyRestoreSource({ source, owner, backupKey, allowUnanchored: true })
      assert.deepEqual(report.problems, [])
    } finally {
      await source.close()
    }
  })
  after(async () => { await env?.cleanup() })

  /** `n` distinct block indexes of the CAR, drawn from `from` (default all). */
  function choose (n: number, from: number[] = layout.map((_, i) => i)): number[] {
    const pool = [...from]
    const out: number[] = []
    while (out.length < n && pool.length > 0) out.push(pool.splice(int(rnd, pool.length), 1)[0])
    return out
  }

  /** Flip one random bit at a random place in each chosen block: a damaged copy of the CAR bytes. */
  function damage (indexes: number[]): Buffer {
    const copy = Buffer.from(car)
    for (const i of indexes) copy[layout[i].offset + int(rnd, layout[i].length)] ^= 1 << int(rnd, 8)
    return copy
  }

  it('each damaged block is detected by verify and refused by restore, the target left empty', async () => {
    const chosen = choose(BLOCKS)
    const kinds = new Map<string, number>()
    for (const [n, i] of chosen.entries()) {
      const cid = layout[i].cid.toString()
      const bytes = damage([i])

      // 1. verify over a blockstore that serves the damaged bytes under the original CID
      const damaged = Uint8Array.from(bytes.subarray(layout[i].offset, layout[i].offset + layout[i].length))
      const bs: BlockGetter = { get: async (c: CID) => c.toString() === cid ? damaged : blocks.get(c.toString())! }
      const report = await verifyBackup({ root, blockstore: bs, owner, backupKey, attachments: true })
      assert.ok(report.problems.some(p => p.cid === cid && p.code === 'BACKUP_TAMPERED'), `block ${i} (${cid}): ${JSON.stringify(report.problems)}`)
      kinds.set(report.problems[0].block ?? '?', (kinds.get(report.problems[0].block ?? '?') ?? 0) + 1)

      // 2. verify over the damaged CAR file
      const file = join(env.dir, `damaged-${n}.car`)
      await writeFile(file, bytes)
      const source = await openCarSource(file)
      try {
        try {
          const r = await verifyRestoreSource({ source, owner, backupKey, allowUnanchored: true })
          assert.equal(r.ok, false, `block ${i}`)
          assert.ok(r.problems.some(p => p.code === 'BACKUP_TAMPERED'), `block ${i}: ${JSON.stringify(r.problems)}`)
        } catch (err) {
          // a damaged root cannot even be read as the bundle's header
          assert.ok(isTokenimError(err, 'BACKUP_TAMPERED'), String(err))
          assert.equal(cid, root.toString())
        }

        // 3. restore refuses and writes nothing
        const target = join(env.dir, `target-${n}`)
        await assert.rejects(restoreBackup({ dataDir: target, phrase, password: 'pw', scryptN: 1024, source, allowUnanchored: true }),
          (err: unknown) => isTokenimError(err, 'BACKUP_TAMPERED'))
        assert.ok(await emptyOrAbsent(target), `target ${target} left empty`)
      } finally {
        await source.close()
      }
    }
    assert.ok((kinds.get('segment') ?? 0) > 10, JSON.stringify([...kinds]))
  })

  it('50 leaf blocks damaged at once: verify lists every one', async () => {
    // segments and attachments: the blocks that hang off the manifest node (their damage hides nothing else)
    const node = await readManifestNode(env.blockstore, await readHeader({ root, blockstore: env.blockstore }))
    const leafCids = new Set([...node.segments, ...node.attachments].map(String))
    const leaves = layout.map((b, i) => ({ b, i })).filter(x => leafCids.has(x.b.cid.toString())).map(x => x.i)
    const chosen = choose(BLOCKS, leaves)
    const file = join(env.dir, 'damaged-all.car')
    await writeFile(file, damage(chosen))
    const source = await openCarSource(file)
    try {
      const r = await verifyRestoreSource({ source, owner, backupKey, allowUnanchored: true })
      assert.equal(r.ok, false)
      const found = new Set(r.problems.filter(p => p.code === 'BACKUP_TAMPERED').map(p => p.cid))
      for (const i of chosen) assert.ok(found.has(layout[i].cid.toString()), `block ${i} (${layout[i].cid.toString()}) not listed`)
      const target = join(env.dir, 'target-all')
      await assert.rejects(restoreBackup({ dataDir: target, phrase, password: 'pw', scryptN: 1024, source, allowUnanchored: true }),
        (err: unknown) => isTokenimError(err, 'BACKUP_TAMPERED') && (err.info.problems as unknown[]).length >= BLOCKS)
      assert.ok(await emptyOrAbsent(target))
    } finally {
      await source.close()
    }
  })
})
