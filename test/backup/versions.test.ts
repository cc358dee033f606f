import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readBackup, readCar, verifyBackup } from '../../src/backup/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { KEY, collect } from './helpers.ts'

const FIXTURES = join(import.meta.dirname, 'fixtures')

describe('backup: older format versions stay readable', function () {
  it('reads and verifies the committed v1 bundle (fixtures/v1.car)', async () => {
    const expected = JSON.parse(await readFile(join(FIXTURES, 'v1.json'), 'utf8')) as { root: string, digest: string, owner: string, version: number, segments: number, attachments: number, contacts: unknown[], messages: StoredMessage[] }
    const car = await readCar(join(FIXTURES, 'v1.car'))
    try {
      assert.equal(car.root.toString(), expected.root)
      assert.deepEqual(car.tampered, [])
      const reader = await readBackup({ root: car.root, blockstore: car.blockstore, backupKey: KEY, owner: expected.owner, version: expected.version, digest: expected.digest })
      assert.equal(reader.header.v, 1)
      assert.deepEqual(await collect(reader.messages()), expected.messages)
      assert.deepEqual(reader.contacts, expected.contacts)
      const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, backupKey: KEY, digest: expected.digest, attachments: true })
      assert.deepEqual(report.problems, [])
      assert.equal(report.messages, expected.messages.length)
      assert.equal(report.segments, expected.segments)
      const pub = await verifyBackup({ root: car.root, blockstore: car.blockstore })
      assert.equal(pub.ok, true)
    } finally {
      await car.blockstore.close()
    }
  })
})
