import assert from 'node:assert/strict'
import { startApiServer, callApi, progressRoute, type ApiServer } from '../../src/api/index.ts'
import { TokenimError } from '../../src/errors.ts'
import { waitFor } from '../support/wait.ts'
import { postLines } from '../support/ndjson.ts'

interface Line { progress?: unknown, result?: unknown, error?: { code: string, message: string, info?: Record<string, unknown> } }

/** POST asking for the streamed form (unless `plain`); the answer's lines parsed. */
const post = async (server: ApiServer, path: string, body: unknown, plain = false): Promise<{ status: number, type: string, lines: Line[] }> => await postLines<Line>(server, path, body, plain)

describe('control API: the streamed form (application/x-ndjson)', () => {
  let server: ApiServer
  /** what the hanging route saw: its signal, once it ends */
  const hanging: { started: number, aborted?: boolean } = { started: 0 }
  const hold: { release?: () => void } = {}

  before(async () => {
    server = await startApiServer({
      keepAliveMs: 50,
      routes: {
        // 1,000 reports in one go: throttled to the first and the last
        'POST /v1/count': progressRoute(async ({ body, progress }) => {
          const n = (body as { n: number }).n
          for (let i = 1; i <= n; i++) progress?.({ done: i, of: n })
          return { counted: n, streamed: progress !== undefined }
        }),
        'POST /v1/bad': progressRoute(async ({ body, progress }) => {
          if ((body as { id?: unknown }).id === undefined) throw new TokenimError('INVALID_ARGUMENT', 'id is missing', { field: 'id' })
          progress?.({ done: 1 })
          await new Promise(resolve => setImmediate(resolve))
          throw new TokenimError('ATTACHMENT_UNAVAILABLE', 'nobody has it', { cid: 'bafy' })
        }),
        'POST /v1/crash': progressRoute(async () => { throw new Error('boom') }),
        // a report and a result that JSON cannot encode
        'POST /v1/circular': progressRoute(async ({ progress }) => {
          const loop: Record<string, unknown> = {}
          loop.self = loop
          progress?.(loop)
          progress?.({ fine: true })
          return loop
        }),
        // reports once, then waits for the test (keep-alives meanwhile) or for its signal
        'POST /v1/hang': progressRoute(async ({ signal, progress }) => {
          hanging.started++
          progress?.({ step: 'waiting' })
          try {
            await new Promise<void>((resolve, reject) => {
              hold.release = resolve
              signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
            })
            return { released: true }
          } finally {
            hanging.aborted = signal.aborted
          }
        }),
        'POST /v1/plain': async ({ progress }) => ({ plain: true, progress: progress !== undefined })
      }
    })
  })

  after(async () => { await server.close() })

  it('streams throttled progress lines, always the last report, then the result', async () => {
    const r = await post(server, '/v1/count', { n: 1000 })
    assert.equal(r.status, 200)
    assert.match(r.type, /^application\/x-ndjson/)
    // all 1,000 reports came within one tick: the first goes out at once, the rest wait for the
    // throttle and only the latest of them is written, before the result
    assert.deepEqual(r.lines, [{ progress: { done: 1, of: 1000 } }, { progress: { done: 1000, of: 1000 } }, { result: { counted: 1000, streamed: true } }])
  })

  it('without the header (or on a route without progress) the answer is the plain JSON document', async () => {
    const plain = await post(server, '/v1/count', { n: 3 }, true)
    assert.equal(plain.status, 200)
    assert.equal(plain.type, 'application/json')
    assert.deepEqual(plain.lines, [{ result: { counted: 3, streamed: false } }])
    const other = await post(server, '/v1/plain', {})
    assert.equal(other.type, 'application/json')
    assert.deepEqual(other.lines, [{ result: { plain: true, progress: false } }])
    const failed = await post(server, '/v1/bad', {}, true)
    assert.equal(failed.status, 400)
    assert.deepEqual(failed.lines, [{ error: { code: 'INVALID_ARGUMENT', message: 'id is missing', info: { field: 'id' } } }])
  })

  it('errors are the final line, with their code (the status is already 200)', async () => {
    const invalid = await post(server, '/v1/bad', {})
    assert.equal(invalid.status, 200)
    assert.deepEqual(invalid.lines, [{ error: { code: 'INVALID_ARGUMENT', message: 'id is missing', info: { field: 'id' } } }])
    const late = await post(server, '/v1/bad', { id: 'x' })
    assert.equal(late.status, 200)
    assert.deepEqual(late.lines, [{ progress: { done: 1 } }, { error: { code: 'ATTACHMENT_UNAVAILABLE', message: 'nobody has it', info: { cid: 'bafy' } } }])
    const crash = await post(server, '/v1/crash', {})
    assert.deepEqual(crash.lines, [{ error: { code: 'INTERNAL', message: 'boom' } }])
    // an unencodable report is dropped, an unencodable result is INTERNAL: the stream always ends
    const circular = await post(server, '/v1/circular', {})
    assert.deepEqual(circular.lines, [{ progress: { fine: true } }, { error: { code: 'INTERNAL', message: 'the result could not be encoded' } }])
    // the token, the route and the body are checked before anything is streamed, as before
    const res = await fetch(server.url + '/v1/count', { method: 'POST', headers: { accept: 'application/x-ndjson' }, body: '{}' })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('content-type'), 'application/json')
    await res.body?.cancel()
    const malformed = await fetch(server.url + '/v1/count', { method: 'POST', headers: { authorization: `Bearer ${server.token}`, accept: 'application/x-ndjson' }, body: '{nope' })
    assert.equal(malformed.status, 400)
    assert.equal((await malformed.json() as Line).error?.code, 'INVALID_ARGUMENT')
  })

  it('callApi with onProgress: the reports, then the result; an error line is the TokenimError', async () => {
    const seen: unknown[] = []
    assert.deepEqual(await callApi(server, 'POST', '/v1/count', { n: 5 }, { onProgress: (p) => { seen.push(p) } }), { counted: 5, streamed: true })
    assert.deepEqual(seen.at(-1), { done: 5, of: 5 })
    seen.length = 0
    await assert.rejects(callApi(server, 'POST', '/v1/bad', { id: 'x' }, { onProgress: (p) => { seen.push(p) } }), (err: unknown) => {
      assert.ok(err instanceof TokenimError)
      assert.deepEqual([err.code, err.message, err.info], ['ATTACHMENT_UNAVAILABLE', 'nobody has it', { cid: 'bafy' }])
      return true
    })
    assert.deepEqual(seen, [{ done: 1 }])
    // a throwing callback does not fail the call; a route without progress answers as before
    assert.deepEqual(await callApi(server, 'POST', '/v1/count', { n: 2 }, { onProgress: () => { throw new Error('display broke') } }), { counted: 2, streamed: true })
    assert.deepEqual(await callApi(server, 'POST', '/v1/plain', {}, { onProgress: () => {} }), { plain: true, progress: false })
  })

  it('sends keep-alive lines while an operation has nothing new to report', async () => {
    const res = await fetch(server.url + '/v1/hang', { method: 'POST', headers: { authorization: `Bearer ${server.token}`, accept: 'application/x-ndjson' }, body: '{}' })
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = ''
    for (let r = await reader.read(); ; r = await reader.read()) {
      assert.equal(r.done, false, text)
      text += decoder.decode(r.value, { stream: true })
      if (text.includes('\n{}\n')) break
    }
    assert.ok(text.startsWith('{"progress":{"step":"waiting"}}\n{}\n'), text)
    hold.release?.()
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true })
    assert.ok(text.endsWith('{}\n{"result":{"released":true}}\n'), text)
    // callApi skips the keep-alives
    const seen: unknown[] = []
    const call = callApi(server, 'POST', '/v1/hang', {}, { onProgress: (p) => { seen.push(p) } })
    await waitFor(() => seen.length === 1, 'the progress line')
    hold.release?.()
    assert.deepEqual(await call, { released: true })
    assert.deepEqual(seen, [{ step: 'waiting' }])
  })

  it('a client that goes away mid-stream aborts the operation', async () => {
    hanging.aborted = undefined
    const controller = new AbortController()
    const seen: unknown[] = []
    const call = callApi(server, 'POST', '/v1/hang', {}, {
      signal: controller.signal,
      onProgress: (p) => { seen.push(p); controller.abort(new TokenimError('INTERRUPTED', 'stopped by the caller')) }
    })
    await assert.rejects(call, { code: 'INTERRUPTED' })
    assert.deepEqual(seen, [{ step: 'waiting' }])
    await waitFor(() => hanging.aborted, 'the route to see its signal aborted')
  })
})
