/**
 * The daemon's control API routes (all under /v1, JSON, bearer token; see server.ts):
 *
 *   POST /v1/send        {to, text}                      → {id, status}
 *   GET  /v1/messages    ?peer=&since=&until=&limit=     → [{id, from, to, ts, text, status, attachment?}]
 *   GET  /v1/id                                          → {address, peerId, multiaddrs}
 *   GET  /v1/contacts                                    → [{address, name?, addedAt}]
 *   POST /v1/contacts    {address, name}                 → {address, name, addedAt}
 *   GET  /v1/status                                      → {address, peerId, running, peers, routingTable, outbox, multiaddrs, lastBackup?, backup?}
 *   POST /v1/attachments {to, path, caption?}            → {id, status, attachment: {cid, name, mime, size, sha256}}
 *   POST /v1/attachments/save {id, out, force?}          → {id, file, name, mime, size, sha256}
 *
 * The attachment routes take absolute paths on this machine: the daemon reads the file to send and
 * writes the file asked for (atomically, 0600) itself, so big files never travel through the API.
 * With `Accept: application/x-ndjson` they stream their progress (server.ts, the streamed form):
 * `{"progress":{phase:"encrypt"|"fetch", bytes, total}}` lines, then the result or error line.
 *
 * Extension point: other features add their routes through `extend` — the daemon passes the backup
 * routes ('POST /v1/backup', 'GET /v1/backups', 'GET /v1/backup/status': src/api/backup-routes.ts) and 'POST /v1/export'
 * (src/api/export-route.ts) — validating their inputs with validate.ts and sharing their work with the
 * in-process CLI path.
 */
import type { TokenimNode } from '../node/index.ts'
import { progressRoute } from './server.ts'
import type { Routes } from './server.ts'
import { addContact, idView, listContacts, listMessages, nodeStatus, saveAttachmentOp, sendFileOp, sendMessage, SEND_WAIT_MS } from './ops.ts'
import type { MessagesQuery } from './ops.ts'
import { parseAbsolutePath, parseAddress, parseContactName, parseCount, parseMessageText, parseObject, parseTimestamp } from './validate.ts'
import { apiError, ApiErrorCode } from './errors.ts'

export interface RoutesInit {
  /** more routes (later features); a key that is already a core route is refused */
  extend?: Routes
  /** how long POST /v1/send waits for the first delivery attempt (default 15 s) */
  sendWaitMs?: number
}

export function createRoutes (node: TokenimNode, init: RoutesInit = {}): Routes {
  const core: Routes = {
    'POST /v1/send': async ({ body, signal }) => {
      const b = parseObject(body)
      const to = parseAddress(b.to, 'to')
      const text = parseMessageText(b.text)
      return await sendMessage(node, to, text, { signal, waitMs: init.sendWaitMs ?? SEND_WAIT_MS })
    },
    'GET /v1/messages': async ({ query }) => await listMessages(node.store, parseMessagesQuery(query)),
    'GET /v1/id': async () => idView(node),
    'GET /v1/contacts': async () => await listContacts(node.store),
    'POST /v1/contacts': async ({ body }) => {
      const b = parseObject(body)
      return await addContact(node.store, parseAddress(b.address), parseContactName(b.name))
    },
    'GET /v1/status': async () => await nodeStatus(node),
    'POST /v1/attachments': progressRoute(async ({ body, signal, progress }) => {
      const b = parseObject(body)
      const to = parseAddress(b.to, 'to')
      const path = parseAbsolutePath(b.path, 'path')
      const caption = b.caption === undefined || b.caption === '' ? undefined : parseMessageText(b.caption, 'caption')
      return await sendFileOp(node, to, path, { caption, signal, waitMs: init.sendWaitMs ?? SEND_WAIT_MS, onProgress: progress })
    }),
    'POST /v1/attachments/save': progressRoute(async ({ body, signal, progress }) => {
      const b = parseObject(body)
      if (typeof b.id !== 'string' || b.id === '' || b.id.length > 128) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'id must be a message id', { field: 'id' })
      const out = parseAbsolutePath(b.out, 'out')
      if (b.force !== undefined && typeof b.force !== 'boolean') throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'force must be true or false', { field: 'force' })
      return await saveAttachmentOp(node, b.id, out, { force: b.force === true, signal, onProgress: progress })
    })
  }
  for (const key of Object.keys(init.extend ?? {})) {
    if (key in core) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `route ${key} is defined twice`)
  }
  return { ...core, ...init.extend }
}

/** ?peer=&since=&until=&limit= (each optional; since/until inclusive, in ms since the epoch). */
export function parseMessagesQuery (query: URLSearchParams): MessagesQuery {
  const q: MessagesQuery = {}
  const peer = query.get('peer')
  if (peer !== null && peer !== '') q.peer = parseAddress(peer, 'peer')
  const since = query.get('since')
  if (since !== null && since !== '') q.since = parseTimestamp(since, 'since')
  const until = query.get('until')
  if (until !== null && until !== '') q.until = parseTimestamp(until, 'until')
  const limit = query.get('limit')
  if (limit !== null && limit !== '') q.limit = parseCount(limit, 'limit')
  return q
}

/** The query string for GET /v1/messages. */
export function messagesQueryString (q: MessagesQuery): string {
  const p = new URLSearchParams()
  if (q.peer !== undefined) p.set('peer', q.peer)
  if (q.since !== undefined) p.set('since', String(q.since))
  if (q.until !== undefined) p.set('until', String(q.until))
  if (q.limit !== undefined) p.set('limit', String(q.limit))
  const s = p.toString()
  return s === '' ? '' : `?${s}`
}
