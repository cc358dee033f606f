import { invalidArgument, invalidMessage } from './errors.ts'
import { MESSAGE_DIRECTIONS, MESSAGE_STATUSES } from './types.ts'
import type { AttachmentRef, BackupRecord, Contact, MessageStatus, OutboxEntry, ReplicaStatus, StoredMessage } from './types.ts'

export const MAX_ID_LENGTH = 128
/** one message's text, in UTF-16 code units */
export const MAX_TEXT_LENGTH = 1_000_000
export const MAX_NAME_LENGTH = 1024
export const MAX_ERROR_LENGTH = 2000

const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const ID_RE = /^[\x21-\x7e]+$/
const SHA256_RE = /^[0-9a-f]{64}$/

type Fail = (message: string, info?: Record<string, unknown>) => Error

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function isAddress (v: unknown): v is string {
  return typeof v === 'string' && ADDRESS_RE.test(v.toLowerCase())
}

function address (v: unknown, field: string, fail: Fail): string {
  if (typeof v !== 'string' || !ADDRESS_RE.test(v.toLowerCase())) {
    throw fail(`${field} must be a 0x-prefixed 20-byte hex address`, { field })
  }
  return v.toLowerCase()
}

export function checkAddress (v: unknown, field = 'address'): string {
  return address(v, field, invalidArgument)
}

function id (v: unknown, field: string, fail: Fail): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID_LENGTH || !ID_RE.test(v)) {
    throw fail(`${field} must be 1..${MAX_ID_LENGTH} printable ASCII characters without spaces`, { field })
  }
  return v
}

export function checkId (v: unknown, field = 'id'): string {
  return id(v, field, invalidArgument)
}

function time (v: unknown, field: string, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw fail(`${field} must be a non-negative integer (ms since the epoch)`, { field })
  }
  return v
}

export function checkTime (v: unknown, field: string): number {
  return time(v, field, invalidArgument)
}

function count (v: unknown, field: string, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw fail(`${field} must be a non-negative integer`, { field })
  }
  return v
}

function text (v: unknown, field: string, max: number, fail: Fail, allowEmpty = true): string {
  if (typeof v !== 'string' || v.length > max || (!allowEmpty && v.length === 0)) {
    throw fail(`${field} must be a ${allowEmpty ? '' : 'non-empty '}string of at most ${max} characters`, { field })
  }
  return v
}

export function checkStatus (v: unknown, fail: Fail = invalidArgument): MessageStatus {
  if (typeof v !== 'string' || !(MESSAGE_STATUSES as readonly string[]).includes(v)) {
    throw fail(`status must be one of ${MESSAGE_STATUSES.join(', ')}`, { field: 'status' })
  }
  return v as MessageStatus
}

function attachment (v: unknown, fail: Fail): AttachmentRef {
  if (!isRecord(v)) throw fail('attachment must be an object', { field: 'attachment' })
  const sha256 = typeof v.sha256 === 'string' ? v.sha256.toLowerCase() : v.sha256
  if (typeof sha256 !== 'string' || !SHA256_RE.test(sha256)) {
    throw fail('attachment.sha256 must be 64 hex characters', { field: 'attachment.sha256' })
  }
  return {
    cid: text(v.cid, 'attachment.cid', 512, fail, false),
    key: text(v.key, 'attachment.key', 512, fail, false),
    name: text(v.name, 'attachment.name', MAX_NAME_LENGTH, fail),
    mime: text(v.mime, 'attachment.mime', 255, fail),
    size: count(v.size, 'attachment.size', fail),
    sha256
  }
}

/**
 * Validate a message and return a clean copy: addresses lowercased, unknown fields dropped, fields in a
 * fixed order. Throws INVALID_MESSAGE (info: field, and id when known).
 */
export function normalizeMessage (v: unknown): StoredMessage {
  if (!isRecord(v)) throw invalidMessage('not an object')
  const msgId = id(v.id, 'id', invalidMessage)
  const fail: Fail = (message, info) => invalidMessage(message, { ...info, id: msgId })
  const conversation = address(v.conversation, 'conversation', fail)
  const from = address(v.from, 'from', fail)
  const to = address(v.to, 'to', fail)
  if (typeof v.direction !== 'string' || !(MESSAGE_DIRECTIONS as readonly string[]).includes(v.direction)) {
    throw fail('direction must be "in" or "out"', { field: 'direction' })
  }
  const direction = v.direction as StoredMessage['direction']
  if (direction === 'in' && from !== conversation) throw fail('an incoming message must have from === conversation', { field: 'from' })
  if (direction === 'out' && to !== conversation) throw fail('an outgoing message must have to === conversation', { field: 'to' })
  const msg: StoredMessage = {
    id: msgId,
    conversation,
    from,
    to,
    ts: time(v.ts, 'ts', fail),
    text: text(v.text, 'text', MAX_TEXT_LENGTH, fail),
    direction,
    status: checkStatus(v.status, fail)
  }
  if (v.attachment !== undefined && v.attachment !== null) msg.attachment = attachment(v.attachment, fail)
  if (v.receivedAt !== undefined && v.receivedAt !== null) msg.receivedAt = time(v.receivedAt, 'receivedAt', fail)
  return msg
}

export function normalizeContact (v: unknown): Contact {
  if (!isRecord(v)) throw invalidArgument('contact must be an object')
  const c: Contact = { address: checkAddress(v.address), addedAt: checkTime(v.addedAt, 'addedAt') }
  if (v.name !== undefined && v.name !== null) c.name = text(v.name, 'name', MAX_NAME_LENGTH, invalidArgument)
  // keep field order stable
  return c.name === undefined ? c : { address: c.address, name: c.name, addedAt: c.addedAt }
}

export function normalizeOutboxEntry (v: unknown): OutboxEntry {
  if (!isRecord(v)) throw invalidArgument('outbox entry must be an object')
  if (!(v.envelope instanceof Uint8Array)) throw invalidArgument('outbox entry envelope must be a Uint8Array', { field: 'envelope' })
  const e: OutboxEntry = {
    id: checkId(v.id),
    to: checkAddress(v.to, 'to'),
    attempts: count(v.attempts ?? 0, 'attempts', invalidArgument),
    nextAttemptAt: checkTime(v.nextAttemptAt, 'nextAttemptAt'),
    envelope: Uint8Array.from(v.envelope)
  }
  if (v.lastError !== undefined && v.lastError !== null) {
    e.lastError = String(v.lastError).slice(0, MAX_ERROR_LENGTH)
  }
  return { id: e.id, to: e.to, attempts: e.attempts, nextAttemptAt: e.nextAttemptAt, ...(e.lastError !== undefined ? { lastError: e.lastError } : {}), envelope: e.envelope }
}

function replica (v: unknown, i: number): ReplicaStatus {
  if (!isRecord(v)) throw invalidArgument(`replicas[${i}] must be an object`)
  if (typeof v.ok !== 'boolean') throw invalidArgument(`replicas[${i}].ok must be a boolean`)
  const hasPeer = v.peerId !== undefined && v.peerId !== null
  const hasError = v.error !== undefined && v.error !== null
  return {
    address: checkAddress(v.address, `replicas[${i}].address`),
    ...(hasPeer ? { peerId: text(v.peerId, `replicas[${i}].peerId`, 256, invalidArgument, false) } : {}),
    ok: v.ok,
    at: checkTime(v.at, `replicas[${i}].at`),
    ...(hasError ? { error: String(v.error).slice(0, MAX_ERROR_LENGTH) } : {})
  }
}

export function normalizeBackup (v: unknown): BackupRecord {
  if (!isRecord(v)) throw invalidArgument('backup record must be an object')
  const fail = invalidArgument
  if (typeof v.anchored !== 'boolean') throw fail('anchored must be a boolean', { field: 'anchored' })
  if (v.pending !== undefined && typeof v.pending !== 'boolean') throw fail('pending must be a boolean', { field: 'pending' })
  if (!Array.isArray(v.replicas)) throw fail('replicas must be an array', { field: 'replicas' })
  const rec = {} as BackupRecord
  rec.version = count(v.version, 'version', fail)
  rec.cid = text(v.cid, 'cid', 512, fail, false)
  rec.digest = text(v.digest, 'digest', 256, fail, false)
  if (v.txHash !== undefined && v.txHash !== null) rec.txHash = text(v.txHash, 'txHash', 256, fail, false)
  rec.anchored = v.anchored
  if (v.pending !== undefined) rec.pending = v.pending
  rec.createdAt = checkTime(v.createdAt, 'createdAt')
  rec.messages = count(v.messages, 'messages', fail)
  rec.bytesTotal = count(v.bytesTotal, 'bytesTotal', fail)
  rec.bytesNew = count(v.bytesNew, 'bytesNew', fail)
  if (v.file !== undefined && v.file !== null) rec.file = text(v.file, 'file', 4096, fail, false)
  rec.replicas = v.replicas.map(replica)
  return rec
}
