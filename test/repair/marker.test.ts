// A store that LevelDB silently emptied (a damaged .log drops its records without an error; a store whose
// files are gone is recreated empty) is consistent, so only the marker next to it (<dataDir>/store.json,
// src/store/marker.ts) can tell: the start check reports STORE_CORRUPT with the number lost, repair with a
// backup brings the messages back and clears it, and a new data dir never trips it.
import assert from 'node:assert/strict'
import { open, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { deriveKeys } from '../../src/identity/index.ts'
import { assertStoreHealthy } from '../../src/node/index.ts'
import { backupKeySource, openCarSource, repairMessageStore } from '../../src/restore/index.ts'
import { openStore, readMarker } from '../../src/store/index.ts'
import type { StoreMarker } from '../../src/store/index.ts'
import { makeHistory } from '../backup/helpers.ts'
import { Dirs, makeOwner } from '../restore/helpers.ts'
import type { Owner } from '../restore/helpers.ts'
import { waitFor } from '../support/wait.ts'

/** Cut LevelDB's write-ahead log to a third (the store must be closed): the records after the cut are gone. */
async function truncateLog (storePath: string): Promise<void> {
  const log = (await readdir(storePath)).find(f => f.endsWith('.log'))
  assert.ok(log !== undefined, 'the store has a .log file')
  const size = (await stat(join(storePath, log))).size
  assert.ok(size > 1000, `the .log holds the messages (${size} bytes)`)
  const fh = await open(join(storePath, log), 'r+')
  try {
    await fh.truncate(Math.floor(size / 3))
  } finally {
    await fh.close()
  }
}

async function healthError (storePath: string): Promise<Error & { code: string, info: Record<string, unknown> } | undefined> {
  const store = await openStore(storePath)
  try {
    await assertStoreHealthy(store)
    return undefined
  } catch (err) {
    if (!isTokenimError(err)) throw err
    return err
  } finally {
    await store.close()
  }
}

async function marker (dir: string): Promise<StoreMarker> {
  const m = await readMarker(join(dir, 'store.json'))
  assert.ok(m !== undefined, 'store.json exists')
  return m
}

describe('store marker: a silently emptied store is reported (src/store/marker.ts, node/health.ts)', function () {
  const dirs = new Dirs()
  after(async () => { await dirs.cleanup() })

  async function storeWith (messages: number, batches: number): Promise<{ dir: string, path: string }> {
    const dir = await dirs.make('tokenim-marker-')
    const path = join(dir, 'store')
    const store = await openStore(path)
    const h = makeHistory({ conversations: 3, messages, seed: 5 })
    const per = Math.ceil(messages / batches)
    for (let i = 0; i < messages; i += per) await store.addMessages(h.slice(i, i + per))
    await store.close()
    return { dir, path }
  }

  it('a new data dir never trips it; a clean close records the id and the count', async () => {
    const dir = await dirs.make('tokenim-marker-')
    assert.equal(await healthError(join(dir, 'store')), undefined)
    assert.equal((await marker(dir)).messages, 0)
    const { dir: d2 } = await storeWith(120, 4)
    const m = await marker(d2)
    assert.equal(m.messages, 120)
    assert.equal(typeof m.storeId, 'string')
    assert.equal(await healthError(join(d2, 'store')), undefined)
  })

  it('a truncated .log: STORE_CORRUPT with the number lost and since when; the marker is kept', async () => {
    const { dir, path } = await storeWith(300, 10)
    const before = await marker(dir)
    await truncateLog(path)
    const err = await healthError(path)
    assert.equal(err?.code, 'STORE_CORRUPT')
    const lost = err.info.lost as number
    assert.ok(lost > 100 && lost <= 300, `lost ${lost}`)
    assert.equal(err.info.recorded, 300)
    assert.equal((err.info.messages as number) + lost, 300)
    assert.match(err.message, new RegExp(`lost ${lost} messages since ${new Date(before.updatedAt).toISOString()}`))
    assert.match(err.message, /tokenim repair/)
    // closing the damaged store did not overwrite the evidence: the next start says the same
    assert.deepEqual(await marker(dir), before)
    assert.equal((await healthError(path))?.info.lost, lost)
  })

  it('the store dir deleted (the marker kept): recreated empty, reported as a loss of everything', async () => {
    const { dir, path } = await storeWith(50, 1)
    await rm(path, { recursive: true })
    const err = await healthError(path)
    assert.equal(err?.code, 'STORE_CORRUPT')
    assert.equal(err.info.lost, 50)
    assert.equal(err.info.idChanged, true)
    assert.match(err.message, /lost 50 messages since .*recreated/)
    assert.equal((await marker(dir)).messages, 50)
  })

  it('with no backup, repair --accept-loss accepts the smaller store and the next start is clean', async () => {
    const { dir, path } = await storeWith(60, 1)
    await rm(path, { recursive: true })
    assert.equal((await healthError(path))?.code, 'STORE_CORRUPT')
    const res = await repairMessageStore({ storePath: path, acceptLoss: true })
    assert.equal(res.markerReset, true)
    assert.equal(await healthError(path), undefined)
    assert.equal((await marker(dir)).messages, 0)
  })

  it('while messages are added the marker follows (at most once per interval)', async () => {
    const dir = await dirs.make('tokenim-marker-')
    const store = await openStore(join(dir, 'store'), { markerIntervalMs: 0 })
    try {
      await store.addMessages(makeHistory({ conversations: 1, messages: 7, seed: 9 }))
      await waitFor(async () => (await readMarker(join(dir, 'store.json')))?.messages === 7, 'the marker records 7 messages', 5_000)
    } finally {
      await store.close()
    }
  })
})

describe('store marker and repair: the backup brings the messages back, the next start is clean', function () {
  this.timeout(120_000)
  let devnet: Devnet
  let alice: Owner
  let file: string
  let storePath: string

  before(async () => {
    devnet = await startDevnet()
    alice = await makeOwner(devnet.profile, { messages: 300, conversations: 3, seed: 23 })
    file = (await alice.backup(1)).file
    await alice.env.store.close()
    storePath = join(alice.env.dir, 'store')
  })
  after(async () => {
    await alice?.cleanup()
    await devnet?.stop()
  })

  it('repair without a backup keeps reporting the loss; repair with the backup (CAR) clears it', async () => {
    await truncateLog(storePath)
    const lost = (await healthError(storePath))?.info.lost as number
    assert.ok(lost > 0, 'the truncated log lost messages')
    const plain = await repairMessageStore({ storePath })
    assert.equal(plain.lost, lost)
    assert.equal(plain.markerReset, undefined)
    assert.equal((await healthError(storePath))?.code, 'STORE_CORRUPT')

    const source = await openCarSource(file)
    let res
    try {
      res = await repairMessageStore({
        storePath,
        backup: { owner: alice.address, backupKey: backupKeySource(deriveKeys(alice.phrase).backupRootKey), source, chain: alice.client }
      })
    } finally {
      await source.close()
    }
    assert.equal(res.ok, true)
    assert.equal(res.lost, lost)
    assert.equal(res.imported, lost)
    assert.equal(res.messages, 300)
    assert.equal(res.markerReset, true)
    assert.equal(await healthError(storePath), undefined)
    assert.equal(JSON.parse(await readFile(join(alice.env.dir, 'store.json'), 'utf8')).messages, 300)
  })
})
