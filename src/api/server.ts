import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { TokenimError, isTokenimError } from '../errors.ts'
import { log } from '../util/log.ts'

const logger = log('api')

/** Request bodies over this are refused before they are read in full. */
export const MAX_BODY_BYTES = 1024 * 1024

/** The media type of the streamed form (one JSON document per line). */
export const NDJSON = 'application/x-ndjson'

/** At most this many progress lines per second go out on a streamed answer (plus the last report). */
export const PROGRESS_INTERVAL_MS = 100

/** A streamed answer with nothing new for this long gets a keep-alive line, `{}`. */
export const KEEP_ALIVE_MS = 15_000

export interface ApiRequest {
  body: unknown
  query: URLSearchParams
  signal: AbortSignal
  /**
   * Set only when the client asked for the streamed form of a route that reports progress: each
   * call becomes a `{"progress":…}` line (throttled). Undefined otherwise: the route reports nothing.
   */
  progress?: (p: unknown) => void
}

/**
 * A route's handler returns the JSON result; a thrown TokenimError becomes {"error":{code,message}}.
 * `reportsProgress` (set with progressRoute) lets a client ask for the streamed form.
 */
export type Route = ((req: ApiRequest) => Promise<unknown>) & { reportsProgress?: true }

/** Mark a long route whose progress (`req.progress`) a client may ask to be streamed (see startApiServer). */
export function progressRoute (handler: (req: ApiRequest) => Promise<unknown>): Route {
  return Object.assign(handler, { reportsProgress: true as const })
}

/** Routes by "METHOD /path", e.g. "POST /v1/send". */
export type Routes = Record<string, Route>

export interface ApiServer {
  url: string
  token: string
  close: () => Promise<void>
}

export interface ApiServerInit {
  routes: Routes
  /** loopback only; anything else is refused */
  host?: '127.0.0.1' | '::1'
  port?: number
  token?: string
  /** streamed answers: the shortest gap between progress lines (default PROGRESS_INTERVAL_MS) */
  progressIntervalMs?: number
  /** streamed answers: the keep-alive period (default KEEP_ALIVE_MS) */
  keepAliveMs?: number
}

/**
 * The daemon's control API: HTTP on loopback only, every request must carry the bearer token
 * (compared in constant time); bodies are size-capped JSON. Errors keep the CLI's shape.
 *
 * Streamed form: a request with `Accept: application/x-ndjson` to a route that reports progress
 * (progressRoute) is answered, once the token, the route and the body passed their checks, with
 * HTTP 200 and `application/x-ndjson`: `{"progress":…}` lines (at most ~10 a second, and always the
 * last report before the end), `{}` keep-alive lines after 15 s without news, then exactly one final
 * line, `{"result":…}` or `{"error":{code,message,info}}`. The status is sent before the outcome is
 * known: the final line decides, and a stream that ends without one failed. Without that header, or
 * on any other route, the answer is the plain JSON document. A client that goes away aborts the
 * operation's signal, in either form.
 */
export async function startApiServer (init: ApiServerInit): Promise<ApiServer> {
  const host = init.host ?? '127.0.0.1'
  if (host !== '127.0.0.1' && host !== '::1') throw new TokenimError('INVALID_ARGUMENT', 'the control API binds loopback only')
  const token = init.token ?? randomBytes(32).toString('base64url')
  const expected = digest(`Bearer ${token}`)
  const inflight = new Set<AbortController>()

  const server: Server = createServer((req, res) => {
    const controller = new AbortController()
    inflight.add(controller)
    res.on('close', () => {
      inflight.delete(controller)
      if (!res.writableFinished) controller.abort()
    })
    handle(req, res, controller.signal).catch(err => {
      logger.error('api request failed: %e', err)
      if (!res.headersSent) send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } })
    })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 0 // long operations (backup, restore) may run for minutes

  async function handle (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    // constant-time token check on digests of equal length
    const given = digest(req.headers.authorization ?? '')
    if (!timingSafeEqual(given, expected)) {
      send(res, 401, { error: { code: 'UNAUTHORIZED', message: 'missing or wrong API token' } })
      req.resume()
      return
    }
    const url = new URL(req.url ?? '/', 'http://localhost')
    const route = init.routes[`${req.method ?? 'GET'} ${url.pathname}`]
    if (route === undefined) {
      send(res, 404, { error: { code: 'NOT_FOUND', message: `no such endpoint ${req.method} ${url.pathname}` } })
      req.resume()
      return
    }
    let body: unknown
    try {
      body = await readJsonBody(req)
    } catch (err) {
      sendError(res, err)
      return
    }
    if (route.reportsProgress === true && acceptsNdjson(req.headers.accept)) {
      await streamRoute(res, route, { body, query: url.searchParams, signal }, {
        intervalMs: init.progressIntervalMs ?? PROGRESS_INTERVAL_MS,
        keepAliveMs: init.keepAliveMs ?? KEEP_ALIVE_MS
      })
      return
    }
    try {
      const result = await route({ body, query: url.searchParams, signal })
      send(res, 200, { result: result ?? null })
    } catch (err) {
      sendError(res, err)
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${hostPart}:${address.port}`,
    token,
    close: async () => {
      for (const c of inflight) c.abort()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

async function readJsonBody (req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) {
    req.resume()
    throw new TokenimError('BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) throw new TokenimError('BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new TokenimError('INVALID_ARGUMENT', 'request body is not valid JSON')
  }
}

/** True when an Accept header lists application/x-ndjson. */
function acceptsNdjson (accept: string | undefined): boolean {
  return accept !== undefined && accept.split(',').some(t => t.split(';')[0].trim().toLowerCase() === NDJSON)
}

/**
 * Run a route in the streamed form (see startApiServer): 200 and the headers at once, throttled
 * progress lines, keep-alives, then the final result or error line. Nothing is written once the
 * client has gone (the request's signal is aborted then, and the route ends on its own).
 */
async function streamRoute (res: ServerResponse, route: Route, req: ApiRequest, { intervalMs, keepAliveMs }: { intervalMs: number, keepAliveMs: number }): Promise<void> {
  res.writeHead(200, { 'content-type': `${NDJSON}; charset=utf-8`, 'cache-control': 'no-store' })
  res.flushHeaders()
  const write = (value: unknown): void => {
    if (res.destroyed || res.writableEnded) return
    let text: string
    try {
      text = toJson(value)
    } catch (err) {
      // a report that cannot be encoded is dropped (a result becomes INTERNAL): never a stream left open
      logger.error('api stream line not encodable: %e', err)
      if (!('result' in (value as object))) return
      text = toJson({ error: { code: 'INTERNAL', message: 'the result could not be encoded' } })
    }
    res.write(text + '\n')
    keepAlive.refresh()
  }
  const keepAlive = setTimeout(function beat () {
    write({})
  }, keepAliveMs)
  keepAlive.unref()
  // the latest report not written yet, and when the last progress line went out
  let pending: { p: unknown } | undefined
  let lastAt = -Infinity
  let timer: NodeJS.Timeout | undefined
  let done = false
  const flush = (): void => {
    timer = undefined
    if (pending === undefined) return
    const { p } = pending
    pending = undefined
    lastAt = Date.now()
    write({ progress: p })
  }
  const stop = (): void => {
    clearTimeout(timer)
    clearTimeout(keepAlive)
  }
  res.once('close', stop)
  const progress = (p: unknown): void => {
    if (done) return
    pending = { p }
    if (timer !== undefined) return
    const wait = lastAt + intervalMs - Date.now()
    if (wait <= 0) flush()
    else timer = setTimeout(flush, wait)
  }
  let final: unknown
  try {
    final = { result: (await route({ ...req, progress })) ?? null }
  } catch (err) {
    final = { error: errorOf(err).error }
  } finally {
    done = true
    stop()
  }
  flush() // the last report goes out before the result
  write(final)
  if (!res.destroyed) res.end()
}

function errorOf (err: unknown): { status: number, error: { code: string, message: string, info?: Record<string, unknown> } } {
  if (isTokenimError(err)) {
    const status = err.code === 'BODY_TOO_LARGE' ? 413 : err.code === 'UNAUTHORIZED' ? 401 : 400
    return { status, error: { code: err.code, message: err.message, info: err.info } }
  }
  logger.error('api handler failed: %e', err)
  return { status: 500, error: { code: 'INTERNAL', message: err instanceof Error ? err.message : 'internal error' } }
}

function sendError (res: ServerResponse, err: unknown): void {
  const { status, error } = errorOf(err)
  send(res, status, { error })
}

function toJson (value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)
}

function send (res: ServerResponse, status: number, value: unknown): void {
  const text = toJson(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}
