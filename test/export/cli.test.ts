import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { openStore } from '../../src/store/index.ts'
import { fill, tempDir } from './helpers.ts'

const BIN = fileURLToPath(new URL('../../bin/tokenim.js', import.meta.url))

interface Run { code: number, stdout: string, stderr: string }

async function tokenim (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], {
      env: { ...process.env, TOKENIM_INSECURE_FAST_KDF: '1', TOKENIM_PASSWORD: 'correct horse', TOKENIM_HOME: '', ...env },
      timeout: 60_000
    }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

describe('export: command line', function () {
  let cleanup: () => Promise<void>
  let dir: string
  let dataDir: string
  let self: string

  before(async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    dir = t.dir
    dataDir = join(dir, 'data')
    const init = await tokenim(['--data-dir', dataDir, '--json', 'init'])
    assert.equal(init.code, 0, init.stderr)
    self = (JSON.parse(init.stdout) as { address: string }).address.toLowerCase()
    const store = await openStore(join(dataDir, 'store'))
    try {
      await fill(store, 3, 10, 1_700_000_000_000)
      // our own messages are from this identity's address
      await store.setContact('0x' + '0'.repeat(37) + '100', 'Alice')
    } finally {
      await store.close()
    }
  })

  after(async () => { await cleanup() })

  it('writes the export and prints {file, messages}; warns on stderr that it is not encrypted', async () => {
    const out = join(dir, 'all.json')
    const r = await tokenim(['--data-dir', dataDir, '--json', 'export', '--format', 'json', '--out', out])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const result = JSON.parse(r.stdout)
    assert.equal(result.file, out)
    assert.equal(result.messages, 30)
    assert.equal(result.conversations, 3)
    assert.match(r.stderr, /warning: .*NOT encrypted/)
    const doc = JSON.parse(await readFile(out, 'utf8'))
    assert.equal(doc.self, self)
    assert.equal(doc.totals.messages, 30)
    assert.equal((await stat(out)).mode & 0o777, 0o600)
  })

  it('one conversation, a time range, format from the extension, human output', async () => {
    const out = join(dir, 'alice.html')
    const peer = '0x' + '0'.repeat(37) + '100'
    const r = await tokenim(['--data-dir', dataDir, 'export', peer, '--out', out, '--since', '1700000002000', '--until', '2023-11-14T22:13:25Z'])
    assert.equal(r.code, 0, r.stderr)
    // ts 1_700_000_000_000 is 2023-11-14T22:13:20Z: the messages at +2 s, +3 s, +4 s and +5 s
    assert.match(r.stdout, new RegExp(`exported 4 messages in 1 conversation to ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
    const doc = await readFile(out, 'utf8')
    assert.equal(doc.split('<article').length - 1, 4)
    assert.match(doc, /<bdi>Alice<\/bdi>/)
  })

  it('errors: existing file, unknown format, bad time, locked store', async () => {
    const out = join(dir, 'all.json')
    const before = await readFile(out, 'utf8')
    const exists = await tokenim(['--data-dir', dataDir, '--json', 'export', '--format', 'json', '--out', out])
    assert.equal(exists.code, 7)
    assert.equal(JSON.parse(exists.stdout).error.code, 'FILE_EXISTS')
    assert.equal(await readFile(out, 'utf8'), before)

    const forced = await tokenim(['--data-dir', dataDir, '--json', 'export', '--format', 'json', '--out', out, '--force'])
    assert.equal(forced.code, 0, forced.stdout)

    const fmt = await tokenim(['--data-dir', dataDir, '--json', 'export', '--format', 'pdf', '--out', join(dir, 'x.pdf')])
    assert.equal(fmt.code, 2)
    assert.equal(JSON.parse(fmt.stdout).error.code, 'USAGE')

    const time = await tokenim(['--data-dir', dataDir, '--json', 'export', '--out', join(dir, 'x.txt'), '--since', 'yesterday'])
    assert.equal(time.code, 2)
    assert.match(JSON.parse(time.stdout).error.message, /--since/)

    const store = await openStore(join(dataDir, 'store'))
    try {
      const locked = await tokenim(['--data-dir', dataDir, '--json', 'export', '--out', join(dir, 'y.txt')])
      assert.equal(JSON.parse(locked.stdout).error.code, 'STORE_LOCKED')
      assert.equal(locked.code, 6)
    } finally {
      await store.close()
    }
    assert.deepEqual((await readdir(dir)).filter(n => n !== 'data').sort(), ['alice.html', 'all.json'])
  })
})
