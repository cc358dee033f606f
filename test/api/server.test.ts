import assert from 'node:assert/strict'
import { networkInterfaces } from 'node:os'
import { request } from 'node:http'
import { startApiServer, callApi, MAX_BODY_BYTES, type ApiServer } from '../../src/api/index.ts'
import { TokenimError } from '../../src/errors.ts'

describe('control API server', () => {
  let server: ApiServer
  let calls = 0

  before(async () => {
    server = await startApiServer({
      routes: {
        'GET /v1/ping': async () => { calls++; return { pong: true } },
        'POST /v1/echo': async ({ body }) => { calls++; return body },
        'POST /v1/fail': async () => { throw new TokenimError('PEER_NOT_FOUND', 'nobody home', { address: '0xabc' }) }
      }
    })
  })

  after(async () => { await server.close() })

  it('binds 127.0.0.1 only', () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  })

  it('answers with the token', async () => {
    assert.deepEqual(await callApi(server, 'GET', '/v1/ping'), { pong: true })
    assert.deepEqual(await callApi(server, 'POST', '/v1/echo', { a: [1, 2] }), { a: [1, 2] })
  })

  it('refuses a missing or wrong token with 401 and does nothing', async () => {
    const before = calls
    const none = await fetch(server.url + '/v1/ping')
    assert.equal(none.status, 401)
    const wrong = await fetch(server.url + '/v1/ping', { headers: { authorization: `Bearer ${server.token}x` } })
    assert.equal(wrong.status, 401)
    const body = await wrong.json() as { error: { code: string } }
    assert.equal(body.error.code, 'UNAUTHORIZED')
    await assert.rejects(callApi({ url: server.url, token: 'nope' }, 'POST', '/v1/echo', {}), { code: 'UNAUTHORIZED' })
    assert.equal(calls, before)
  })

  it('carries typed errors through to the client', async () => {
    await assert.rejects(callApi(server, 'POST', '/v1/fail', {}), (err: unknown) => {
      assert.ok(err instanceof TokenimError)
      assert.equal(err.code, 'PEER_NOT_FOUND')
      assert.equal(err.info.address, '0xabc')
      return true
    })
  })

  it('refuses oversized and malformed bodies', async () => {
    const big = await fetch(server.url + '/v1/echo', {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}` },
      body: 'x'.repeat(MAX_BODY_BYTES + 1)
    })
    assert.equal(big.status, 413)
    const bad = await fetch(server.url + '/v1/echo', { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: '{nope' })
    assert.equal(bad.status, 400)
    assert.equal((await bad.json() as { error: { code: string } }).error.code, 'INVALID_ARGUMENT')
  })

  it('is not reachable on a non-loopback address', async function () {
    const external = Object.values(networkInterfaces()).flat().find(i => i !== undefined && !i.internal && i.family === 'IPv4')
    if (external === undefined) this.skip() // no non-loopback interface on this machine: nothing to probe
    const port = Number(new URL(server.url).port)
    const outcome = await new Promise<string>(resolve => {
      const req = request({ host: external.address, port, path: '/v1/ping', timeout: 2000 }, res => { res.resume(); resolve(`status ${res.statusCode}`) })
      req.on('error', err => resolve((err as NodeJS.ErrnoException).code ?? 'error'))
      req.on('timeout', () => { req.destroy(); resolve('timeout') })
      req.end()
    })
    assert.ok(!outcome.startsWith('status'), `reached the API on ${external.address}: ${outcome}`)
  })

  it('refuses to bind a non-loopback host', async () => {
    await assert.rejects(startApiServer({ routes: {}, host: '0.0.0.0' as '127.0.0.1' }), { code: 'INVALID_ARGUMENT' })
  })
})
