import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { callApi } from '../../src/api/index.ts'
import type { ApiInfo } from '../../src/cli/daemon-client.ts'
import { json, killAll, run, runJson, startDaemon, TempDirs, waitFor } from './helpers.ts'
import type { Daemon } from './helpers.ts'

interface Ready { address: string, peerId: string, multiaddrs: string[], api: string }
interface Message { id: string, text: string, attachment?: { cid: string, name: string, mime: string, size: number, sha256: string } }

async function readyJson (d: Daemon): Promise<Ready> {
  return await waitFor(() => {
    if (d.child.exitCode !== null) throw new Error(`daemon exited ${d.child.exitCode}: ${d.stderr()}`)
    try { return JSON.parse(d.stdout()) as Ready } catch { return undefined }
  }, 'the daemon to be ready')
}

async function apiInfo (dir: string): Promise<ApiInfo> {
  return JSON.parse(await readFile(join(dir, 'api.json'), 'utf8')) as ApiInfo
}

describe('cli: send --file and attachment get through two daemons', function () {
  this.timeout(180_000) // ~25 s on an idle machine; much more when the 2 cores are shared
  const tmp = new TempDirs()
  after(async () => {
    await killAll()
    await tmp.cleanup()
  })

  it('A sends a picture, B writes it out identical (0600, FILE_EXISTS without --force); over the limit is refused and nothing is sent', async () => {
    const [dirA, dirB, work] = await Promise.all([tmp.make(), tmp.make(), tmp.make()])
    const [ia, ib] = await Promise.all([runJson<{ address: string }>(['init', '--data-dir', dirA]), runJson<{ address: string }>(['init', '--data-dir', dirB])])
    await writeFile(join(dirA, 'config.json'), JSON.stringify({ attachmentMaxBytes: 2 * 1024 * 1024 }))
    const a = startDaemon(['--data-dir', dirA, '--json'])
    const readyA = await readyJson(a)
    const b = startDaemon(['--data-dir', dirB, '--json', '--bootstrap', readyA.multiaddrs[0]])
    await readyJson(b)
    for (const dir of [dirA, dirB]) {
      const endpoint = await apiInfo(dir)
      await waitFor(async () => (await callApi<{ peers: number }>(endpoint, 'GET', '/v1/status')).peers >= 1, `peers of ${dir}`)
    }

    const picture = randomBytes(1536 * 1024)
    const file = join(work, 'picture.png')
    await writeFile(file, picture)
    const sent = await runJson<{ id: string, status: string, attachment: Message['attachment'] }>(['send', ib.address, '--file', file, '--caption', 'the view', '--data-dir', dirA])
    assert.equal(sent.status, 'delivered')
    assert.deepEqual(sent.attachment, {
      cid: sent.attachment?.cid,
      name: 'picture.png',
      mime: 'image/png',
      size: picture.length,
      sha256: createHash('sha256').update(picture).digest('hex')
    })

    const listB = await runJson<Message[]>(['messages', ia.address, '--data-dir', dirB])
    assert.equal(listB.length, 1)
    assert.equal(listB[0].text, 'the view')
    assert.equal(listB[0].attachment?.cid, sent.attachment?.cid)
    assert.equal(listB[0].attachment?.sha256, sent.attachment?.sha256)

    const out = join(work, 'received.png')
    const got = await runJson<{ id: string, file: string, size: number, name: string }>(['attachment', 'get', sent.id, '--out', out, '--data-dir', dirB])
    assert.deepEqual([got.id, got.file, got.size, got.name], [sent.id, out, picture.length, 'picture.png'])
    assert.ok((await readFile(out)).equals(picture), 'identical bytes')
    assert.equal((await stat(out)).mode & 0o777, 0o600)
    const again = await run(['attachment', 'get', sent.id, '--out', out, '--data-dir', dirB, '--json'])
    assert.equal(json<{ error: { code: string } }>(again).error.code, 'FILE_EXISTS')
    assert.notEqual(again.code, 0)

    // over A's configured limit (2 MiB): refused with FILE_TOO_LARGE (exit 2) before anything is sent
    const big = join(work, 'big.bin')
    await writeFile(big, Buffer.alloc(2 * 1024 * 1024 + 1))
    const refused = await run(['send', ib.address, '--file', big, '--data-dir', dirA, '--json'])
    assert.equal(refused.code, 2)
    assert.equal(json<{ error: { code: string } }>(refused).error.code, 'FILE_TOO_LARGE')
    assert.equal((await runJson<Message[]>(['messages', '--data-dir', dirA])).length, 1)

    // with B's daemon stopped, an html export copies the attachment from B's blockstore, verified
    b.child.kill('SIGTERM')
    assert.equal(await b.exited, 0)
    const html = join(work, 'chat.html')
    const exported = await runJson<{ attachments: number, attachmentsCopied: number, filesDir: string }>(['export', '--out', html, '--data-dir', dirB])
    assert.deepEqual([exported.attachments, exported.attachmentsCopied], [1, 1])
    const [copy] = await readdir(exported.filesDir)
    assert.ok((await readFile(join(exported.filesDir, copy))).equals(picture), 'the exported copy is identical')
    assert.match(await readFile(html, 'utf8'), new RegExp(copy.replace('.', '\\.')))
  })
})
