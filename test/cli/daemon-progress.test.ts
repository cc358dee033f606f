import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { callApi, createRoutes, startApiServer } from '../../src/api/index.ts'
import type { ApiServer, Route, SendFileView, TransferProgress } from '../../src/api/index.ts'
import { backupRoutes } from '../../src/api/backup-routes.ts'
import { exportRoutes } from '../../src/api/export-route.ts'
import type { ExportSummary } from '../../src/api/export-route.ts'
import type { ExportProgress } from '../../src/backup/export/index.ts'
import type { RunBackupResult } from '../../src/backup/job/index.ts'
import type { CommandContext } from '../../src/cli/command.ts'
import { writeApiInfo } from '../../src/cli/daemon-client.ts'
import { withNodeAccess } from '../../src/cli/node-access.ts'
import { createOutput } from '../../src/cli/output.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { NodeHarness, waitFor } from '../node/helpers.ts'
import { postLines } from '../support/ndjson.ts'

interface Line { progress?: { phase: string, bytes: number, total: number }, result?: Record<string, unknown>, error?: { code: string, message: string } }

/** POST asking for the streamed form (unless `plain`); the answer's lines parsed. */
const post = async (server: ApiServer, path: string, body: unknown, plain = false): Promise<{ status: number, type: string, lines: Line[] }> => await postLines<Line>(server, path, body, plain)

/** The progress lines of an answer: one phase, never going back, ending at the full size. */
function assertTransfer (lines: Line[], phase: 'encrypt' | 'fetch', size: number): void {
  const progress = lines.slice(0, -1).map(l => l.progress)
  assert.ok(progress.length >= 1 && progress.every(p => p?.phase === phase && p.total === size), JSON.stringify(progress))
  const bytes = progress.map(p => p?.bytes ?? -1)
  assert.deepEqual(bytes, [...bytes].sort((a, b) => a - b))
  assert.equal(bytes.at(-1), size)
}

describe('control API with a real node: progress of attachments, backups and exports, streamed', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  const SIZE = 6 * 1024 * 1024 + 123
  // a valid address nobody has: sends stay queued
  const NOBODY = '0x' + 'ab'.repeat(20)
  let node: TokenimNode
  let api: ApiServer
  let work: string
  let file: string
  let picture: Buffer
  let sent: SendFileView

  before(async () => {
    node = await h.node()
    work = await h.dir()
    picture = randomBytes(SIZE)
    file = join(work, 'big.bin')
    await writeFile(file, picture)
    api = await startApiServer({ routes: createRoutes(node, { sendWaitMs: 300, extend: { ...backupRoutes(node), ...exportRoutes(node) } }) })
  })

  after(async () => {
    await api?.close()
    await h.cleanup()
  })

  it('send --file: encrypt progress lines, then the result', async () => {
    const r = await post(api, '/v1/attachments', { to: NOBODY, path: file, caption: 'big one' })
    assert.equal(r.status, 200)
    assert.match(r.type, /^application\/x-ndjson/)
    assertTransfer(r.lines, 'encrypt', SIZE)
    const result = r.lines.at(-1)?.result as unknown as SendFileView
    assert.equal(result.status, 'queued')
    assert.deepEqual([result.attachment.name, result.attachment.size, result.attachment.sha256], ['big.bin', SIZE, createHash('sha256').update(picture).digest('hex')])
    sent = result
  })

  it('attachment get: fetch progress lines, then the result; the file is identical', async () => {
    const out = join(work, 'copy.bin')
    const r = await post(api, '/v1/attachments/save', { id: sent.id, out })
    assert.equal(r.status, 200)
    assertTransfer(r.lines, 'fetch', SIZE)
    assert.deepEqual(r.lines.at(-1), { result: { id: sent.id, file: out, name: 'big.bin', mime: 'application/octet-stream', size: SIZE, sha256: sent.attachment.sha256 } })
    assert.ok((await readFile(out)).equals(picture))
  })

  it('errors are the final line with their code; the plain form keeps its status and shape', async () => {
    const out = join(work, 'copy.bin')
    const exists = await post(api, '/v1/attachments/save', { id: sent.id, out })
    assert.equal(exists.status, 200)
    assert.equal(exists.lines.at(-1)?.error?.code, 'FILE_EXISTS')
    const unknown = await post(api, '/v1/attachments/save', { id: 'no-such-message', out: join(work, 'x.bin') })
    assert.deepEqual(unknown.lines.map(l => l.error?.code), ['NO_ATTACHMENT'])
    const missing = await post(api, '/v1/attachments', { to: NOBODY, path: join(work, 'missing.bin') })
    assert.deepEqual(missing.lines.map(l => l.error?.code), ['FILE_NOT_FOUND'])
    const relative = await post(api, '/v1/attachments/save', { id: sent.id, out: 'copy.bin' })
    assert.deepEqual(relative.lines.map(l => l.error?.code), ['INVALID_ARGUMENT'])
    // the same without the header: the status and the one JSON document of before
    const plainError = await post(api, '/v1/attachments/save', { id: sent.id, out }, true)
    assert.equal(plainError.status, 400)
    assert.equal(plainError.type, 'application/json')
    assert.deepEqual(plainError.lines.map(l => l.error?.code), ['FILE_EXISTS'])
    const plain = await post(api, '/v1/attachments/save', { id: sent.id, out, force: true }, true)
    assert.equal(plain.status, 200)
    assert.equal(plain.type, 'application/json')
    assert.deepEqual(plain.lines, [{ result: { id: sent.id, file: out, name: 'big.bin', mime: 'application/octet-stream', size: SIZE, sha256: sent.attachment.sha256 } }])
    // through callApi, an error line is the daemon's TokenimError
    await assert.rejects(callApi(api, 'POST', '/v1/attachments/save', { id: sent.id, out }, { onProgress: () => {} }), { code: 'FILE_EXISTS' })
  })

  it('backup: job progress lines, then the result', async () => {
    const r = await post(api, '/v1/backup', { noAnchor: true })
    assert.equal(r.status, 200)
    const phases = r.lines.slice(0, -1).map(l => l.progress?.phase)
    assert.ok(phases.includes('build') && phases.at(-1) === 'done', phases.join(' '))
    const result = r.lines.at(-1)?.result as unknown as RunBackupResult
    assert.equal(result.outcome, 'local')
    assert.equal(result.messages, 1)
  })

  it('export: progress lines (messages of the total, bytes), then the result; an error is the final line; the plain form is unchanged', async () => {
    const out = join(work, 'history.html')
    const r = await post(api, '/v1/export', { format: 'html', out })
    assert.equal(r.status, 200)
    assert.match(r.type, /^application\/x-ndjson/)
    const progress = r.lines.slice(0, -1).map(l => l.progress as unknown as ExportProgress)
    assert.ok(progress.length >= 1 && progress.every(p => p.totalMessages === 1), JSON.stringify(progress))
    const result = r.lines.at(-1)?.result as unknown as ExportSummary
    assert.deepEqual([result.file, result.messages, result.conversations, result.attachments, result.attachmentsCopied], [out, 1, 1, 1, 1])
    assert.deepEqual(progress.at(-1), { messages: 1, totalMessages: 1, conversations: 1, attachmentsCopied: 1, bytes: (await stat(out)).size })
    // an existing file: the error is the one (final) line
    const exists = await post(api, '/v1/export', { format: 'html', out })
    assert.equal(exists.status, 200)
    assert.deepEqual(exists.lines.map(l => l.error?.code), ['FILE_EXISTS'])
    await assert.rejects(callApi(api, 'POST', '/v1/export', { format: 'html', out }, { onProgress: () => {} }), { code: 'FILE_EXISTS' })
    // without the header: the status and the one JSON document of before
    const plainError = await post(api, '/v1/export', { format: 'html', out }, true)
    assert.equal(plainError.type, 'application/json')
    assert.notEqual(plainError.status, 200)
    assert.deepEqual(plainError.lines.map(l => l.error?.code), ['FILE_EXISTS'])
    const plain = await post(api, '/v1/export', { format: 'json', out: join(work, 'history.json') }, true)
    assert.equal(plain.status, 200)
    assert.equal(plain.type, 'application/json')
    assert.deepEqual(plain.lines.map(l => Object.keys(l)), [['result']])
    assert.equal((plain.lines[0].result as unknown as ExportSummary).messages, 1)
    // as the CLI calls it through the daemon: the reports reach onProgress
    const seen: ExportProgress[] = []
    const viaCli = await callApi<ExportSummary, ExportProgress>(api, 'POST', '/v1/export', { format: 'txt', out: join(work, 'history.txt') }, { onProgress: (p) => { seen.push(p) } })
    assert.equal(viaCli.messages, 1)
    assert.ok(seen.length >= 1 && seen.at(-1)?.messages === 1 && seen.at(-1)?.bytes === (await stat(viaCli.file)).size, JSON.stringify(seen))
  })

  it('the CLI\'s daemon access streams: the same progress reports as in process feed its bars', async () => {
    const dataDir = await h.dir()
    await writeApiInfo(dataDir, { url: api.url, token: api.token, peerId: node.peerId, multiaddrs: [], pid: process.pid })
    const ctx: CommandContext = { opts: { dataDir, json: true }, out: createOutput(true), signal: new AbortController().signal }
    const seen: TransferProgress[] = []
    const again = await withNodeAccess(ctx, async (access) => {
      assert.equal(access.daemon, true)
      return await access.sendFile(NOBODY, file, undefined, (p) => { seen.push(p) })
    })
    assert.equal(again.attachment.sha256, sent.attachment.sha256)
    assert.ok(seen.length >= 1 && seen.every(p => p.phase === 'encrypt' && p.total === SIZE) && seen.at(-1)?.bytes === SIZE, JSON.stringify(seen))
    seen.length = 0
    const out = join(work, 'via-cli.bin')
    const saved = await withNodeAccess(ctx, async (access) => await access.saveAttachment(again.id, out, false, (p) => { seen.push(p) }))
    assert.equal(saved.size, SIZE)
    assert.ok(seen.length >= 1 && seen.every(p => p.phase === 'fetch') && seen.at(-1)?.bytes === SIZE, JSON.stringify(seen))
    assert.ok((await readFile(out)).equals(picture))
  })

  it('a client that goes away mid-transfer aborts the operation', async () => {
    // a send that waits (up to 10 min) for a delivery that cannot happen: only an abort ends it early
    const routes = createRoutes(node, { sendWaitMs: 600_000 })
    const real = routes['POST /v1/attachments']
    const outcome: { aborted?: boolean, result?: unknown } = {}
    const watched: Route = Object.assign(async (req: Parameters<Route>[0]) => {
      try {
        outcome.result = await real(req)
        // a send whose recipient cannot be found may end (queued) before the client goes away: the
        // client's leaving must still reach the route's signal
        if (!req.signal.aborted) await new Promise(resolve => { req.signal.addEventListener('abort', resolve, { once: true }); setTimeout(resolve, 30_000).unref() })
        return outcome.result
      } finally {
        outcome.aborted = req.signal.aborted
      }
    }, { reportsProgress: true as const })
    const slow = await startApiServer({ routes: { 'POST /v1/attachments': watched } })
    try {
      const controller = new AbortController()
      const call = callApi<SendFileView, TransferProgress>(slow, 'POST', '/v1/attachments', { to: NOBODY, path: file }, {
        signal: controller.signal,
        onProgress: (p) => { if (p.bytes === p.total) controller.abort(new Error('the user went away')) }
      })
      await assert.rejects(call, /the user went away/)
      // it ends long before its 10 min wait: its signal was aborted (while the file was stored, the
      // send fails and nothing is sent; once the message is stored, it stays queued in the outbox)
      await waitFor(() => outcome.aborted !== undefined, 'the send to end')
      assert.equal(outcome.aborted, true)
      if (outcome.result !== undefined) assert.equal((outcome.result as SendFileView).status, 'queued')
    } finally {
      await slow.close()
    }
  })
})
