import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { callApi } from '../../src/api/index.ts'

/** A stand-in daemon on 127.0.0.1 answering every request with `status` and `body`. */
async function fakeDaemon (status: number, body: string): Promise<{ server: Server, url: string }> {
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' })
    res.end(body)
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

async function close (server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
}

describe('api client (callApi)', () => {
  it('returns the result, and re-raises the daemon\'s error with its code, message and info', async () => {
    const ok = await fakeDaemon(200, JSON.stringify({ result: { n: 1 } }))
    try {
      assert.deepEqual(await callApi({ url: ok.url, token: 't' }, 'GET', '/v1/id'), { n: 1 })
    } finally { await close(ok.server) }
    const failed = await fakeDaemon(400, JSON.stringify({ error: { code: 'NO_BACKUP', message: 'nothing yet', info: { owner: '0xab' } } }))
    try {
      await assert.rejects(callApi({ url: failed.url, token: 't' }, 'POST', '/v1/backup', {}), { code: 'NO_BACKUP', message: 'nothing yet', info: { owner: '0xab' } })
    } finally { await close(failed.server) }
  })

  it('an answer that is not the API\'s JSON is DAEMON_ERROR', async () => {
    const d = await fakeDaemon(502, '<html>bad gateway</html>')
    try {
      await assert.rejects(callApi({ url: d.url, token: 't' }, 'GET', '/v1/status'), { code: 'DAEMON_ERROR', message: /HTTP 502/ })
    } finally { await close(d.server) }
  })

  it('a streamed answer that ends without its result is DAEMON_ERROR; one cut off is DAEMON_UNREACHABLE', async () => {
    const server = createServer((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write('{"progress":{"bytes":1}}\n')
      if (req.url === '/v1/cut') res.destroy()
      else res.end('{}\n')
    })
    await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const seen: unknown[] = []
      await assert.rejects(callApi({ url, token: 't' }, 'POST', '/v1/ended', {}, { onProgress: (p) => { seen.push(p) } }), { code: 'DAEMON_ERROR' })
      assert.deepEqual(seen, [{ bytes: 1 }])
      await assert.rejects(callApi({ url, token: 't' }, 'POST', '/v1/cut', {}, { onProgress: () => {} }), { code: 'DAEMON_UNREACHABLE' })
    } finally { await close(server) }
  })

  it('a daemon that is gone is DAEMON_UNREACHABLE; an abort is passed through as its reason', async () => {
    const d = await fakeDaemon(200, '{}')
    const url = d.url
    await close(d.server)
    await assert.rejects(callApi({ url, token: 't' }, 'GET', '/v1/status'), { code: 'DAEMON_UNREACHABLE' })
    const reason = new Error('stopped by the caller')
    await assert.rejects(callApi({ url, token: 't' }, 'GET', '/v1/status', undefined, { signal: AbortSignal.abort(reason) }), reason)
  })
})
