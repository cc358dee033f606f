import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { TokenimError, isTokenimError } from '../errors.ts'
import { log } from '../util/log.ts'

const logger = log('api')

/** Request bodies over this are refused before they are read in full. */
export const MAX_BODY_BYTES = 1024 * 1024

export interface ApiRequest {
  body: unknown
  query: URLSearchParams
  signal: AbortSignal
}

/** A route's handler returns the JSON result; a thrown TokenimError becomes {"error":{code,message}}. */
export type Route = (req: ApiRequest) => Promise<unknown>

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
}

/**
 * The daemon's control API: HTTP on loopback only, every request must carry the bearer token
 * (compared in constant time); bodies are size-capped JSON. Errors keep the CLI's shape.
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

function sendError (res: ServerResponse, err: unknown): void {
  if (isTokenimError(err)) {
    const status = err.code === 'BODY_TOO_LARGE' ? 413 : err.code === 'UNAUTHORIZED' ? 401 : 400
    send(res, status, { error: { code: err.code, message: err.message, info: err.info } })
  } else {
    logger.error('api handler failed: %e', err)
    send(res, 500, { error: { code: 'INTERNAL', message: err instanceof Error ? err.message : 'internal error' } })
  }
}

function send (res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}
