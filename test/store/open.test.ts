import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore, repairStore } from '../../src/store/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import type { BackupRecord, Store } from '../../src/store/index.ts'
import { collect, msg, peer, tamper, tempDir } from './helpers.ts'

function backup (version: number, over: Partial<BackupRecord> = {}): BackupRecord {
  return {
    version,
    cid: `bafy${version}`,
    digest: '0x' + String(version).repeat(64).slice(0, 64),
    anchored: false,
    createdAt: 1000 + version,
    messages: 10 * version,
    bytesTotal: 100,
    bytesNew: 10,
    replicas: [],
    ...over
  }
}

describe('store: open, persistence, contacts, backups, meta', () => {
  let dir: string
  let cleanup: () => Promise<void>
  const opened: Store[] = []

  beforeEach(async () => {
    const t = await tempDir()
    dir = t.dir
    cleanup = t.cleanup
  })

  afterEach(async () => {
    for (const s of opened.splice(0)) if (s.isOpen) await s.close()
    await cleanup()
  })

  async function open (sub = 'store'): Promise<Store> {
    const s = await openStore(join(dir, sub))
    opened.push(s)
    return s
  }

  it('creates a private directory and writes the schema version', async () => {
    const s = await open('nested/store')
    assert.equal((await stat(join(dir, 'nested/store'))).mode & 0o777, 0o700)
    await s.close()
    await tamper(join(dir, 'nested/store'), 'meta', 'schemaVersion', v => { assert.equal(v, 1); return v })
  })

  it('reopen persists everything', async () => {
    const s = await open()
    const m = msg({ peer: peer(2) })
    await s.addMessage(m)
    await s.setContact(peer(2), 'Bob')
    await s.putBackup(backup(1))
    await s.setMeta('lastBackupAt', 1234)
    await s.markSeen('e', 1)
    await s.close()
    const t = await open()
    assert.deepEqual(await t.getMessage(m.id), m)
    assert.deepEqual(await collect(t.allMessages()), [m])
    assert.equal((await t.conversation(peer(2)))?.count, 1)
    assert.equal((await t.getContact(peer(2)))?.name, 'Bob')
    assert.equal((await t.latestBackup())?.version, 1)
    assert.equal(await t.getMeta('lastBackupAt'), 1234)
    assert.equal(await t.markSeen('e', 1), false)
  })

  it('opening the same dir twice → STORE_LOCKED', async () => {
    await open()
    await assert.rejects(openStore(join(dir, 'store')), (err: unknown) => {
      assert.ok(isTokenimError(err, 'STORE_LOCKED'))
      assert.match(err.message, /another tokenim process/)
      return true
    })
  })

  it('a store held by another process → STORE_LOCKED', async function () {
    this.timeout(20_000)
    const storePath = join(dir, 'store')
    const entry = new URL('../../src/store/index.ts', import.meta.url).href
    const code = `const { openStore } = await import(${JSON.stringify(entry)});
      const s = await openStore(${JSON.stringify(storePath)});
      process.stdout.write('ready\\n');
      process.stdin.on('end', async () => { await s.close(); process.exit(0) });
      process.stdin.resume();`
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>(resolve => child.once('exit', resolve))
    try {
      await new Promise<void>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready')) resolve() })
        child.once('exit', c => reject(new Error(`child exited early (${c})`)))
      })
      await assert.rejects(openStore(storePath), (err: unknown) => isTokenimError(err, 'STORE_LOCKED'))
    } finally {
      child.stdin.end()
      assert.equal(await exited, 0)
    }
    // released once the other process is gone
    await open()
  })

  it('unknown schema version → STORE_SCHEMA_UNKNOWN', async () => {
    const s = await open()
    await s.close()
    await tamper(join(dir, 'store'), 'meta', 'schemaVersion', () => 2)
    await assert.rejects(openStore(join(dir, 'store')), (err: unknown) => {
      assert.ok(isTokenimError(err, 'STORE_SCHEMA_UNKNOWN'))
      assert.equal(err.info.found, 2)
      assert.equal(err.info.supported, 1)
      assert.match(err.message, /upgrade tokenim/)
      return true
    })
    // and the failed open released the lock
    await tamper(join(dir, 'store'), 'meta', 'schemaVersion', () => 1)
    await open()
  })

  it('data without a schema version → STORE_CORRUPT; a damaged database → STORE_CORRUPT', async () => {
    const s = await open()
    await s.addMessage(msg())
    await s.close()
    await tamper(join(dir, 'store'), 'meta', 'schemaVersion', () => undefined)
    await assert.rejects(openStore(join(dir, 'store')), (err: unknown) => isTokenimError(err, 'STORE_CORRUPT'))

    const { writeFile } = await import('node:fs/promises')
    await writeFile(join(dir, 'store', 'CURRENT'), 'garbage')
    await assert.rejects(openStore(join(dir, 'store')), (err: unknown) => {
      assert.ok(isTokenimError(err, 'STORE_CORRUPT'))
      assert.match(err.message, /tokenim repair/)
      return true
    })
  })

  it('a store path whose directory cannot be made → STORE_IO (not a bare fs error)', async () => {
    await writeFile(join(dir, 'a-file'), 'not a directory')
    await assert.rejects(openStore(join(dir, 'a-file', 'store')), (err: unknown) => isTokenimError(err, 'STORE_IO'))
  })

  it('createIfMissing: false → STORE_NOT_FOUND, and nothing is made (no directory, no LOCK or LOG in an empty one)', async () => {
    await assert.rejects(openStore(join(dir, 'none'), { createIfMissing: false }), (err: unknown) => isTokenimError(err, 'STORE_NOT_FOUND'))
    await assert.rejects(stat(join(dir, 'none')), { code: 'ENOENT' })
    await mkdir(join(dir, 'empty'))
    await assert.rejects(openStore(join(dir, 'empty'), { createIfMissing: false }), (err: unknown) => isTokenimError(err, 'STORE_NOT_FOUND'))
    assert.deepEqual(await readdir(join(dir, 'empty')), [])
    // a store that is there opens so
    const s = await open()
    await s.close()
    const again = await openStore(join(dir, 'store'), { createIfMissing: false })
    opened.push(again)
  })

  it('repairStore reopens a healthy store and reports no fixes', async () => {
    const s = await open()
    await s.addMessages([msg(), msg({ peer: peer(9) })])
    await s.close()
    const { store, fixes } = await repairStore(join(dir, 'store'))
    opened.push(store)
    assert.deepEqual(fixes, { conversations: 0, indexFixed: 0, indexRemoved: 0 })
    assert.equal(await store.countMessages(), 2)
  })

  it('use after close → STORE_CLOSED', async () => {
    const s = await open()
    await s.close()
    await assert.rejects(s.countMessages(), (err: unknown) => isTokenimError(err, 'STORE_CLOSED'))
    await assert.rejects(s.addMessage(msg()), (err: unknown) => isTokenimError(err, 'STORE_CLOSED'))
    await assert.rejects(s.sync(), (err: unknown) => isTokenimError(err, 'STORE_CLOSED'))
  })

  it('sync() is a durability barrier that changes nothing a reader sees', async () => {
    const s = await open()
    await s.addMessage(msg())
    await s.sync()
    await s.sync()
    assert.equal(await s.countMessages(), 1)
    assert.equal((await s.conversations()).length, 1)
    await s.close()
  })

  it('contacts', async () => {
    const s = await open()
    const upper = '0x' + 'CD'.repeat(20)
    const c = await s.setContact(upper, 'Carol')
    assert.equal(c.address, upper.toLowerCase())
    const again = await s.setContact(upper.toLowerCase(), 'Caroline')
    assert.equal(again.addedAt, c.addedAt)
    assert.equal(again.name, 'Caroline')
    await s.setContact(peer(1))
    assert.deepEqual((await s.contacts()).map(x => [x.address, x.name]), [[peer(1), undefined], [upper.toLowerCase(), 'Caroline']])
    assert.equal(await s.getContact('0x' + '00'.repeat(20)), undefined)
    await assert.rejects(s.setContact('carol', 'x'), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
    assert.equal(await s.deleteContact(peer(1)), true)
    assert.equal((await s.contacts()).length, 1)
  })

  it('backups index ordered by version; latest; update in place', async () => {
    const s = await open()
    assert.equal(await s.latestBackup(), undefined)
    for (const v of [2, 10, 1, 9]) await s.putBackup(backup(v))
    assert.deepEqual((await s.backups()).map(b => b.version), [1, 2, 9, 10])
    assert.equal((await s.latestBackup())?.version, 10)
    await s.putBackup(backup(10, {
      anchored: true,
      txHash: '0xabc',
      file: '/tmp/b.car',
      replicas: [{ address: '0x' + 'EE'.repeat(20), peerId: '12D3KooW', ok: true, at: 5 }, { address: peer(4), ok: false, at: 6, error: 'timeout' }]
    }))
    const b = await s.getBackup(10)
    assert.equal(b?.anchored, true)
    assert.equal(b?.txHash, '0xabc')
    assert.deepEqual(b?.replicas, [{ address: '0x' + 'ee'.repeat(20), peerId: '12D3KooW', ok: true, at: 5 }, { address: peer(4), ok: false, at: 6, error: 'timeout' }])
    assert.equal((await s.backups()).length, 4)
    assert.equal(await s.getBackup(3), undefined)
    await assert.rejects(s.putBackup({ ...backup(3), anchored: 'yes' as unknown as boolean }), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
    assert.equal(await s.deleteBackup(1), true)
    assert.deepEqual((await s.backups()).map(x => x.version), [2, 9, 10])
  })

  it('meta get/set; schemaVersion is reserved', async () => {
    const s = await open()
    assert.equal(await s.getMeta('schemaVersion'), 1)
    await s.setMeta('device', { peerId: 'abc', seq: 3 })
    assert.deepEqual(await s.getMeta('device'), { peerId: 'abc', seq: 3 })
    await s.setMeta('device', undefined)
    assert.equal(await s.getMeta('device'), undefined)
    await assert.rejects(s.setMeta('schemaVersion', 2), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
  })
})
