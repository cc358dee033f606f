import assert from 'node:assert/strict'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildBackup, readCar, writeCar } from '../../src/backup/index.ts'
import type { BuildBackupResult } from '../../src/backup/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { KEY, OWNER, makeEnv, makeHistory } from './helpers.ts'
import type { Env } from './helpers.ts'

function code (c: string) {
  return (err: unknown): boolean => {
    assert.ok(isTokenimError(err), String(err))
    assert.equal(err.code, c, err.message)
    return true
  }
}

describe('backup: CAR files', function () {
  let env: Env
  let res: BuildBackupResult
  beforeEach(async () => {
    env = await makeEnv()
    await env.store.addMessages(makeHistory({ conversations: 3, messages: 200, seed: 31 }))
    res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 32 })
  })
  afterEach(async () => { await env.cleanup() })

  it('refuses to overwrite an existing file and leaves it intact (unless asked)', async () => {
    const file = join(env.dir, 'exists.car')
    await writeFile(file, 'precious')
    await assert.rejects(writeCar(res.root, env.blockstore, file), code('FILE_EXISTS'))
    assert.equal(await readFile(file, 'utf8'), 'precious')
    await writeCar(res.root, env.blockstore, file, { overwrite: true })
    const car = await readCar(file)
    assert.ok(car.root.equals(res.root))
    await car.blockstore.close()
  })

  it('an unwritable or missing directory → PERMISSION_DENIED / NO_SUCH_DIRECTORY, no file', async () => {
    // root ignores mode bits, so use a place nobody may write into when running as root
    const unwritable = process.getuid?.() === 0 ? '/sys' : join(env.dir, 'ro')
    if (unwritable !== '/sys') {
      await mkdir(unwritable, { mode: 0o500 })
    }
    await assert.rejects(writeCar(res.root, env.blockstore, join(unwritable, 'b.car')), code('PERMISSION_DENIED'))
    await assert.rejects(writeCar(res.root, env.blockstore, join(env.dir, 'nope', 'b.car')), code('NO_SUCH_DIRECTORY'))
  })

  it('a missing block fails the write and leaves neither the file nor a temporary', async () => {
    const out = join(env.dir, 'out')
    await mkdir(out)
    const r = await import('../../src/backup/index.ts')
    const reader = await r.readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })
    const gone = reader.links.segments[3]
    await env.blockstore.delete(gone)
    await assert.rejects(writeCar(res.root, env.blockstore, join(out, 'b.car')), (err: unknown) => {
      code('MISSING_BLOCK')(err)
      assert.equal((err as { info: Record<string, unknown> }).info.cid, gone.toString())
      return true
    })
    assert.deepEqual(await readdir(out), [])
  })

  it('readCar: a missing file → FILE_NOT_FOUND; garbage and truncation → CAR_INVALID', async () => {
    await assert.rejects(readCar(join(env.dir, 'none.car')), code('FILE_NOT_FOUND'))
    const junk = join(env.dir, 'junk.car')
    await writeFile(junk, 'this is not a car file at all')
    await assert.rejects(readCar(junk), code('CAR_INVALID'))
    const file = join(env.dir, 'b.car')
    await writeCar(res.root, env.blockstore, file)
    const bytes = await readFile(file)
    await writeFile(junk, bytes.subarray(0, bytes.length - 100))
    await assert.rejects(readCar(junk), code('CAR_INVALID'))
    await writeFile(junk, new Uint8Array(0))
    await assert.rejects(readCar(junk), code('CAR_INVALID'))
  })
})
