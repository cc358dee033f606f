// The committed fixtures of every backup format version (test/fixtures/backup-v<N>/, made once by
// scripts/make-fixtures.ts) must stay readable by the current reader: the intact bundles give exactly the
// recorded messages, contacts and digest; each damaged one fails with its precise code.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readBackup, readCar, verifyBackup, SUPPORTED_VERSIONS } from '../../src/backup/index.ts'
import type { BackupKeySource, ReadCarResult } from '../../src/backup/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { deriveKeys } from '../../src/identity/index.ts'
import { backupKeySource } from '../../src/restore/index.ts'
import type { Contact, StoredMessage } from '../../src/store/index.ts'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures')

interface Expected {
  format: number
  mnemonic: string
  owner: string
  version: number
  created: number
  bundles: Record<string, { cid: string, digest: string, passphrase: string | null, segments: number, blocks: number }>
  damaged: Record<string, { from: string, code: string, cid?: string }>
  conversations: Array<{ peer: string, count: number }>
  contacts: Contact[]
  messages: StoredMessage[]
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

const folders = (await readdir(FIXTURES)).filter(d => /^backup-v\d+$/.test(d)).sort()

describe('backup fixtures (old format versions stay readable)', function () {
  it('there are fixtures for every supported format version', () => {
    for (const v of SUPPORTED_VERSIONS) assert.ok(folders.includes(`backup-v${v}`), `test/fixtures/backup-v${v} is missing`)
  })

  for (const folder of folders) {
    describe(folder, function () {
      const dir = join(FIXTURES, folder)
      let exp: Expected
      const opened: ReadCarResult[] = []
      const open = async (name: string): Promise<ReadCarResult> => {
        const car = await readCar(join(dir, name))
        opened.push(car)
        return car
      }
      const keyFor = (passphrase: string | null): BackupKeySource =>
        backupKeySource(deriveKeys(exp.mnemonic).backupRootKey, passphrase ?? undefined)

      before(async () => {
        exp = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as Expected
      })
      after(async () => {
        await Promise.all(opened.map(async c => { await c.blockstore.close() }))
      })

      it('is small (< 50 KB in all)', async () => {
        let total = 0
        for (const f of await readdir(dir)) total += (await readFile(join(dir, f))).length
        assert.ok(total < 50_000, `${folder} holds ${total} bytes`)
      })

      for (const name of ['plain.car', 'passphrase.car']) {
        it(`${name}: reads, verifies and equals the recorded history and digest`, async () => {
          const b = exp.bundles[name]
          assert.ok(b !== undefined, `expected.json has no entry for ${name}`)
          const car = await open(name)
          assert.equal(car.root.toString(), b.cid)
          assert.equal(car.blocks, b.blocks)
          assert.deepEqual(car.tampered, [])
          const backupKey = keyFor(b.passphrase)
          const reader = await readBackup({ root: car.root, blockstore: car.blockstore, owner: exp.owner, version: exp.version, digest: b.digest, backupKey })
          assert.equal(reader.digest, b.digest)
          assert.equal(reader.header.version, exp.version)
          assert.equal(reader.header.created, exp.created)
          assert.deepEqual(reader.contacts, exp.contacts)
          assert.deepEqual(reader.conversations.map(c => ({ peer: c.peer, count: c.count })), exp.conversations)
          assert.deepEqual(await collect(reader.messages()), exp.messages)
          const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, owner: exp.owner, version: exp.version, digest: b.digest, backupKey, attachments: true })
          assert.deepEqual(report.problems, [])
          assert.equal(report.ok, true)
          assert.equal(report.messages, exp.messages.length)
          assert.equal(report.segments, b.segments)
        })
      }

      it('passphrase.car: a wrong passphrase is WRONG_PASSPHRASE, none is PASSPHRASE_REQUIRED', async () => {
        const car = await open('passphrase.car')
        await assert.rejects(readBackup({ root: car.root, blockstore: car.blockstore, backupKey: keyFor('not the passphrase') }),
          (err: unknown) => isTokenimError(err, 'WRONG_PASSPHRASE'))
        await assert.rejects(readBackup({ root: car.root, blockstore: car.blockstore, backupKey: keyFor(null) }),
          (err: unknown) => isTokenimError(err, 'PASSPHRASE_REQUIRED'))
      })

      it('a public check (no keys) of plain.car passes', async () => {
        const car = await open('plain.car')
        const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, owner: exp.owner, digest: exp.bundles['plain.car'].digest })
        assert.equal(report.mode, 'public')
        assert.deepEqual(report.problems, [])
      })

      it('every damaged file fails with its precise code', async () => {
        const names = Object.keys(exp.damaged)
        assert.ok(names.length >= 3)
        for (const name of names) {
          const d = exp.damaged[name]
          const src = exp.bundles[d.from]
          const backupKey = keyFor(src.passphrase)
          if (d.code === 'CAR_INVALID') {
            await assert.rejects(readCar(join(dir, name)), (err: unknown) => isTokenimError(err, 'CAR_INVALID'), name)
            continue
          }
          const car = await open(name)
          // the full check names the problem and where it is
          const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, owner: exp.owner, version: exp.version, digest: src.digest, backupKey })
          assert.equal(report.ok, false, name)
          assert.deepEqual(report.problems.map(p => p.code), [d.code], `${name}: ${JSON.stringify(report.problems)}`)
          if (d.cid !== undefined) assert.equal(report.problems[0].cid, d.cid, name)
          // and reading stops at it with the same code (never a wrong-passphrase error)
          await assert.rejects(async () => {
            const reader = await readBackup({ root: car.root, blockstore: car.blockstore, owner: exp.owner, digest: src.digest, backupKey })
            await collect(reader.messages())
          }, (err: unknown) => isTokenimError(err, d.code), name)
        }
      })
    })
  }
})
