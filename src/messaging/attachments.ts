/**
 * Attachments (images, voice notes, any file): encrypted with a fresh random key, stored in Helia as a
 * UnixFS file, referenced from the (end-to-end encrypted) message body by CID + key + name + MIME type +
 * size + SHA-256 of the plaintext. The recipient fetches the blocks over bitswap, decrypts streaming,
 * checks size and hash, and pins them.
 *
 * Ciphertext format, version 1 (the key text says which: `v1.<base64url of 32 bytes>`):
 * ```
 * plaintext  = P_0 || P_1 || … || P_{n-1}      each 256 KiB except the last (0..256 KiB; n >= 1, so an
 *                                               empty file is one empty chunk)
 * nonce_i    = 0x00 × 7 || uint32be(i) || last_i   last_i = 0x01 for i = n-1, else 0x00
 * aad        = "tokenim/v1/attachment"
 * C_i        = AES-256-GCM(key, nonce_i, P_i, aad)  (ciphertext || 16-byte tag)
 * ciphertext = C_0 || C_1 || … || C_{n-1}
 * ```
 * This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) on AES-GCM: each chunk
 * authenticates its index (reordered or duplicated chunks fail) and whether it is the last one (a
 * ciphertext cut at a chunk boundary ends in a chunk sealed as "not last" and fails; bytes appended after
 * the last chunk fail). A key encrypts one file only, so the fixed nonce prefix never repeats under a key.
 * Decryption yields a chunk only after its tag verified; the reader additionally checks the plaintext
 * size and SHA-256 against the message and fails (`ATTACHMENT_CORRUPT`) before the last bytes are handed
 * out, so a writer that commits only on success (writeFileAtomic) never keeps a wrong file.
 */
import { EventEmitter } from 'node:events'
import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { basename, extname } from 'node:path'
import { createHash } from 'node:crypto'
import { unixfs } from '@helia/unixfs'
import type { UnixFSComponents } from '@helia/unixfs'
import type { AbortOptions } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { aeadDecrypt, aeadEncrypt, randomBytes } from '../crypto/index.ts'
import { TokenimError, isTokenimError } from '../errors.ts'
import type { StoredMessage } from '../store/index.ts'
import { writeFileAtomic } from '../util/fs.ts'
import { log } from '../util/log.ts'
import type { MessageAttachment } from './envelope.ts'

/** Plaintext bytes per encrypted chunk. */
export const ATTACHMENT_CHUNK_BYTES = 256 * 1024
const TAG_BYTES = 16
const RECORD_BYTES = ATTACHMENT_CHUNK_BYTES + TAG_BYTES
/** Default largest attachment (config.json `attachmentMaxBytes`). */
export const DEFAULT_ATTACHMENT_MAX_BYTES = 100 * 1024 * 1024
/** A background fetch attempt gets this long plus {@link FETCH_MS_PER_MIB} per MiB. */
export const DEFAULT_FETCH_TIMEOUT_MS = 60_000
export const FETCH_MS_PER_MIB = 4_000
/** Delays before the background fetch of an attachment is tried again in the same run. */
export const DEFAULT_RETRY_DELAYS_MS = [15_000, 60_000, 5 * 60_000]
export const ATTACHMENT_AAD = new TextEncoder().encode('tokenim/v1/attachment')
const KEY_PREFIX = 'v1.'

/** Stable error codes of attachments (printed by the CLI; never rename one). */
export const AttachmentErrorCode = {
  /** the file is larger than the configured limit; nothing was sent */
  FILE_TOO_LARGE: 'FILE_TOO_LARGE',
  /** the file to send does not exist */
  FILE_NOT_FOUND: 'FILE_NOT_FOUND',
  /** the file to send cannot be read (permissions, a directory, …) */
  FILE_NOT_READABLE: 'FILE_NOT_READABLE',
  /** the attachment's bytes do not decrypt, or their size or SHA-256 differ from the message */
  ATTACHMENT_CORRUPT: 'ATTACHMENT_CORRUPT',
  /** the attachment's blocks are not here and could not be fetched (in time) */
  ATTACHMENT_UNAVAILABLE: 'ATTACHMENT_UNAVAILABLE',
  /** the message does not exist or has no attachment */
  NO_ATTACHMENT: 'NO_ATTACHMENT'
} as const
export type AttachmentErrorCode = typeof AttachmentErrorCode[keyof typeof AttachmentErrorCode]

export class AttachmentError extends TokenimError {
  constructor (code: AttachmentErrorCode, message: string, info: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, info, options)
    this.name = 'AttachmentError'
  }
}

/** What a transfer reports: bytes of plaintext done out of `total`. */
export interface AttachmentProgress {
  phase: 'encrypt' | 'fetch'
  bytes: number
  total: number
}

export interface ProgressOptions extends AbortOptions {
  onProgress?: (p: AttachmentProgress) => void
}

// ---------------------------------------------------------------------------------------------
// MIME types

const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.heic': 'image/heic',
  '.avif': 'image/avif',
  '.bmp': 'image/bmp',
  '.mp3': 'audio/mpeg',
  '.m4a': 'audio/mp4',
  '.ogg': 'audio/ogg',
  '.opus': 'audio/ogg',
  '.oga': 'audio/ogg',
  '.wav': 'audio/wav',
  '.flac': 'audio/flac',
  '.mp4': 'video/mp4',
  '.mov': 'video/quicktime',
  '.webm': 'video/webm',
  '.mkv': 'video/x-matroska',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.csv': 'text/csv',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.json': 'application/json',
  '.xml': 'application/xml',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.7z': 'application/x-7z-compressed',
  '.doc': 'application/msword',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  '.xls': 'application/vnd.ms-excel',
  '.xlsx': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  '.ppt': 'application/vnd.ms-powerpoint',
  '.pptx': 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  '.odt': 'application/vnd.oasis.opendocument.text'
}

/** The MIME type of a file name by its extension; `application/octet-stream` when unknown. */
export function guessMime (name: string): string {
  return MIME[extname(name).toLowerCase()] ?? 'application/octet-stream'
}

// ---------------------------------------------------------------------------------------------
// keys

/** A fresh random content key, as the text the message carries. */
export function newAttachmentKey (): string {
  return KEY_PREFIX + Buffer.from(randomBytes(32)).toString('base64url')
}

/** The 32 key bytes of a key text; `ATTACHMENT_CORRUPT` for an unknown version or a bad key. */
export function decodeAttachmentKey (text: string): Uint8Array {
  if (typeof text === 'string' && text.startsWith(KEY_PREFIX)) {
    const body = text.slice(KEY_PREFIX.length)
    if (/^[A-Za-z0-9_-]{43}$/.test(body)) {
      const key = new Uint8Array(Buffer.from(body, 'base64url'))
      if (key.length === 32) return key
    }
  }
  throw new AttachmentError(AttachmentErrorCode.ATTACHMENT_CORRUPT, 'the attachment key is not a tokenim v1 key')
}

// ---------------------------------------------------------------------------------------------
// streaming encryption

function chunkNonce (index: number, last: boolean): Uint8Array {
  if (index > 0xffffffff) throw new AttachmentError(AttachmentErrorCode.FILE_TOO_LARGE, 'too many chunks')
  const nonce = new Uint8Array(12)
  new DataView(nonce.buffer).setUint32(7, index)
  nonce[11] = last ? 1 : 0
  return nonce
}

/**
 * Cut a byte stream into pieces of exactly `size` bytes, telling which is the last (one piece of lookahead).
 * An empty stream gives one empty last piece.
 */
async function * fixedPieces (source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<{ piece: Uint8Array, last: boolean }> {
  let acc: Buffer = Buffer.alloc(0)
  let pending: Uint8Array | undefined
  for await (const data of source) {
    if (data.length === 0) continue
    acc = acc.length === 0 ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.concat([acc, data])
    while (acc.length >= size) {
      if (pending !== undefined) yield { piece: pending, last: false }
      pending = new Uint8Array(acc.subarray(0, size))
      acc = acc.subarray(size)
    }
  }
  if (acc.length > 0) {
    if (pending !== undefined) yield { piece: pending, last: false }
    yield { piece: new Uint8Array(acc), last: true }
  } else {
    yield { piece: pending ?? new Uint8Array(0), last: true }
  }
}

/** Encrypt a plaintext stream (format v1 above). `onPlain` sees every plaintext chunk (to hash and count it). */
export async function * encryptAttachmentStream (source: AsyncIterable<Uint8Array>, key: Uint8Array, onPlain: (chunk: Uint8Array) => void = () => {}): AsyncGenerator<Uint8Array> {
  let i = 0
  for await (const { piece, last } of fixedPieces(source, ATTACHMENT_CHUNK_BYTES)) {
    onPlain(piece)
    yield aeadEncrypt(key, chunkNonce(i++, last), piece, ATTACHMENT_AAD)
  }
}

/**
 * Decrypt a ciphertext stream (format v1). Yields each chunk only after it authenticated; a tampered,
 * truncated, extended or reordered ciphertext throws `ATTACHMENT_CORRUPT`.
 */
export async function * decryptAttachmentStream (source: AsyncIterable<Uint8Array>, key: Uint8Array): AsyncGenerator<Uint8Array> {
  let i = 0
  for await (const { piece, last } of fixedPieces(source, RECORD_BYTES)) {
    if (piece.length < TAG_BYTES) throw corrupt('the ciphertext is truncated')
    try {
      yield aeadDecrypt(key, chunkNonce(i++, last), piece, ATTACHMENT_AAD)
    } catch (err) {
      if (isTokenimError(err, 'DECRYPT_FAILED')) throw corrupt(`chunk ${i - 1} does not authenticate (tampered, truncated or reordered)`)
      throw err
    }
  }
}

function corrupt (message: string, info: Record<string, unknown> = {}): AttachmentError {
  return new AttachmentError(AttachmentErrorCode.ATTACHMENT_CORRUPT, `attachment corrupt: ${message}`, info)
}

/**
 * Check the plaintext against the message's size and SHA-256 while passing it on. The last chunk is held
 * back until the check passed, so a consumer never receives the whole of a wrong file.
 */
export async function * verifyPlaintext (source: AsyncIterable<Uint8Array>, ref: Pick<MessageAttachment, 'size' | 'sha256'>, onBytes: (n: number) => void = () => {}): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256')
  let size = 0
  let held: Uint8Array | undefined
  for await (const chunk of source) {
    size += chunk.length
    if (size > ref.size) throw corrupt(`more than the ${ref.size} bytes the message announces`, { expected: ref.size })
    hash.update(chunk)
    if (held !== undefined) yield held
    held = chunk
    onBytes(size)
  }
  if (size !== ref.size) throw corrupt(`${size} bytes where the message announces ${ref.size}`, { expected: ref.size, actual: size })
  const digest = hash.digest('hex')
  if (digest !== ref.sha256.toLowerCase()) throw corrupt('its SHA-256 differs from the message', { expected: ref.sha256, actual: digest })
  if (held !== undefined) yield held
}

// ---------------------------------------------------------------------------------------------
// files

/** Size of a file to send, checked against `maxBytes`: FILE_NOT_FOUND, FILE_NOT_READABLE, FILE_TOO_LARGE. */
export async function checkAttachmentFile (path: string, maxBytes = DEFAULT_ATTACHMENT_MAX_BYTES): Promise<{ size: number }> {
  let size: number
  try {
    const s = await stat(path)
    if (!s.isFile()) throw new AttachmentError(AttachmentErrorCode.FILE_NOT_READABLE, `${path} is not a regular file`, { path })
    size = s.size
    const h = await open(path, 'r')
    await h.close()
  } catch (err) {
    throw fileError(err, path)
  }
  if (size > maxBytes) {
    throw new AttachmentError(AttachmentErrorCode.FILE_TOO_LARGE, `${path} is ${size} bytes; the attachment limit is ${maxBytes} bytes (config.json attachmentMaxBytes)`, { path, size, max: maxBytes })
  }
  return { size }
}

function fileError (err: unknown, path: string): unknown {
  if (isTokenimError(err)) return err
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOENT' || code === 'ENOTDIR') return new AttachmentError(AttachmentErrorCode.FILE_NOT_FOUND, `no such file: ${path}`, { path }, { cause: err })
  if (code === 'EACCES' || code === 'EPERM' || code === 'EISDIR') return new AttachmentError(AttachmentErrorCode.FILE_NOT_READABLE, `cannot read ${path} (${code})`, { path }, { cause: err })
  return err
}

// ---------------------------------------------------------------------------------------------
// the service

/** The parts of a (Helia) blockstore attachments use (Helia's fetches missing blocks unless `offline`). */
export type AttachmentBlockstore = UnixFSComponents['blockstore']

export interface AttachmentPins {
  add: (cid: CID, options?: AbortOptions & { metadata?: Record<string, string | number | boolean> }) => AsyncGenerator<CID, void, undefined>
  isPinned: (cid: CID, options?: AbortOptions) => Promise<boolean>
}

export interface AttachmentServiceComponents {
  blockstore: AttachmentBlockstore
  pins: AttachmentPins
  /** messages with attachments to fetch in the background (scanned at start) */
  store?: {
    getMessage: (id: string) => Promise<StoredMessage | undefined>
    /** every message with an attachment (the store passes over the others without decoding them) */
    messagesWithAttachments: () => AsyncIterable<StoredMessage>
  }
  /** make the holder of an attachment reachable (e.g. resolve the sender's address and dial it) */
  connect?: (address: string, options: AbortOptions) => Promise<void>
  /** announce that we hold a root (best effort) */
  provide?: (cid: CID, options: AbortOptions) => Promise<void>
  /** dial whoever the DHT says provides a root (best effort) */
  findProviders?: (cid: CID, options: AbortOptions) => Promise<void>
}

export interface AttachmentServiceInit {
  /** largest file `add` accepts (default 100 MiB) */
  maxBytes?: number
  /** background fetch: a fixed part of each attempt's timeout (default 60 s; plus 4 s per MiB) */
  fetchTimeoutMs?: number
  /** delays between background attempts in one run (default 15 s, 1 min, 5 min); later runs scan again */
  retryDelaysMs?: number[]
}

export interface AttachmentServiceEvents {
  /** an incoming attachment was fetched, verified and pinned */
  fetched: [{ id: string, cid: string, size: number }]
  /** a background fetch attempt failed (`retryInMs` undefined: given up for this run) */
  'fetch:failed': [{ id: string, cid: string, code: string, message: string, retryInMs?: number }]
}

export interface ReadOptions extends ProgressOptions {
  /** never use the network (throw ATTACHMENT_UNAVAILABLE when a block is missing) */
  offline?: boolean
  /** who to ask first (the sender's address) */
  from?: string
  /** bound the whole read (ms) when no signal is given */
  timeoutMs?: number
}

export interface SaveResult {
  file: string
  name: string
  mime: string
  size: number
  sha256: string
}

/** Encrypts and stores outgoing files, fetches, verifies and pins incoming ones, reads them back. */
export class AttachmentService extends EventEmitter<AttachmentServiceEvents> {
  private readonly c: AttachmentServiceComponents
  private readonly fs: ReturnType<typeof unixfs>
  private readonly maxBytes: number
  private readonly fetchTimeoutMs: number
  private readonly retryDelaysMs: number[]
  private readonly log = log('messaging:attachments')
  private readonly queue: StoredMessage[] = []
  private readonly queued = new Set<string>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly attempts = new Map<string, number>()
  private shutdown = new AbortController()
  private running = false
  private worker?: Promise<void>
  private scanning?: Promise<void>

  constructor (components: AttachmentServiceComponents, init: AttachmentServiceInit = {}) {
    super()
    this.c = components
    this.fs = unixfs({ blockstore: components.blockstore })
    this.maxBytes = init.maxBytes ?? DEFAULT_ATTACHMENT_MAX_BYTES
    this.fetchTimeoutMs = init.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS
    this.retryDelaysMs = init.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS
  }

  /** Start fetching in the background: the attachments of stored incoming messages that are not pinned yet. */
  start (): void {
    if (this.running) return
    this.running = true
    this.shutdown = new AbortController()
    if (this.c.store !== undefined) {
      this.scanning = this.scan().catch((err: Error) => { this.log.error('scan failed: %s', err.message) })
    }
  }

  /** Abort background work and wait for it. */
  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.shutdown.abort(new AttachmentError(AttachmentErrorCode.ATTACHMENT_UNAVAILABLE, 'stopping'))
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.queue.length = 0
    this.queued.clear()
    await Promise.allSettled([this.scanning, this.worker])
  }

  /**
   * Encrypt a file with a fresh key into the blockstore (UnixFS, streaming) and pin it. Checks the size
   * limit first (FILE_TOO_LARGE: nothing stored). Returns the reference for the message body.
   */
  async add (path: string, options: ProgressOptions & { name?: string, mime?: string, maxBytes?: number } = {}): Promise<MessageAttachment> {
    const maxBytes = options.maxBytes ?? this.maxBytes
    const { size: total } = await checkAttachmentFile(path, maxBytes)
    const keyText = newAttachmentKey()
    const key = decodeAttachmentKey(keyText)
    const hash = createHash('sha256')
    let size = 0
    const onPlain = (chunk: Uint8Array): void => {
      size += chunk.length
      if (size > maxBytes) throw new AttachmentError(AttachmentErrorCode.FILE_TOO_LARGE, `${path} grew past the attachment limit of ${maxBytes} bytes while it was read`, { path, max: maxBytes })
      hash.update(chunk)
      options.onProgress?.({ phase: 'encrypt', bytes: size, total: Math.max(total, size) })
    }
    const file = createReadStream(path, { highWaterMark: ATTACHMENT_CHUNK_BYTES, signal: options.signal })
    let cid: CID
    try {
      cid = await this.fs.addByteStream(encryptAttachmentStream(file, key, onPlain), { signal: options.signal })
    } catch (err) {
      throw fileError(err, path)
    } finally {
      file.destroy()
      key.fill(0)
    }
    await drain(this.c.pins.add(cid, { signal: options.signal, metadata: { tokenimAttachment: true } }))
    if (this.c.provide !== undefined) {
      this.c.provide(cid, { signal: AbortSignal.timeout(30_000) }).catch((err: Error) => { this.log('provide %s: %s', cid, err.message) })
    }
    const name = options.name ?? basename(path)
    return { cid: cid.toString(), key: keyText, name, mime: options.mime ?? guessMime(name), size, sha256: hash.digest('hex') }
  }

  /** True when the attachment's blocks were fetched and verified here (they are pinned). */
  async isLocal (ref: Pick<MessageAttachment, 'cid'>, options: AbortOptions = {}): Promise<boolean> {
    const cid = parseCid(ref.cid)
    return cid !== undefined && await this.c.pins.isPinned(cid, options)
  }

  /**
   * The plaintext, streamed: blocks from the blockstore (fetched from peers unless `offline`), decrypted
   * and checked against size and SHA-256 (ATTACHMENT_CORRUPT; the last chunk is released only once
   * everything matched). Missing blocks: ATTACHMENT_UNAVAILABLE.
   */
  read (ref: MessageAttachment, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    return readAttachment(ref, { ...options, blockstore: this.c.blockstore, fs: this.fs, connect: this.c.connect, findProviders: this.c.findProviders })
  }

  /** Fetch (unless local), verify and pin the attachment of a message. */
  async fetch (message: StoredMessage, options: ReadOptions = {}): Promise<void> {
    const ref = requireAttachment(message)
    if (await this.isLocal(ref, options)) return
    for await (const _ of this.read(ref, { ...options, from: options.from ?? message.conversation })) { /* verify only */ }
    const cid = parseCid(ref.cid) as CID
    await drain(this.c.pins.add(cid, { signal: options.signal, metadata: { tokenimAttachment: true } }))
    this.emit('fetched', { id: message.id, cid: ref.cid, size: ref.size })
  }

  /**
   * Write a message's attachment to `out` atomically (0600; FILE_EXISTS unless `force`), fetching it
   * first when it is not here; then pin it. Nothing is left at `out` on any failure.
   */
  async save (message: StoredMessage, out: string, options: ReadOptions & { force?: boolean } = {}): Promise<SaveResult> {
    const ref = requireAttachment(message)
    const from = options.from ?? message.conversation
    await writeFileAtomic(out, this.read(ref, { ...options, from }), { exclusive: options.force !== true })
    const cid = parseCid(ref.cid)
    if (cid !== undefined && options.offline !== true) {
      await drain(this.c.pins.add(cid, { signal: options.signal, metadata: { tokenimAttachment: true } })).catch((err: Error) => { this.log('pin %s: %s', ref.cid, err.message) })
    }
    return { file: out, name: ref.name, mime: ref.mime, size: ref.size, sha256: ref.sha256 }
  }

  /**
   * Fetch a message's attachment in the background from the other party (or DHT providers): bounded
   * attempts, retried with backoff. For incoming messages, and for our own after a restore.
   */
  schedule (message: StoredMessage): void {
    if (!this.running || message.attachment === undefined) return
    if (this.queued.has(message.id)) return
    this.queued.add(message.id)
    this.queue.push(message)
    this.worker ??= this.work().finally(() => { this.worker = undefined })
  }

  private async work (): Promise<void> {
    while (this.running && this.queue.length > 0) {
      const message = this.queue.shift() as StoredMessage
      this.queued.delete(message.id)
      const ref = message.attachment as MessageAttachment
      const timeout = AbortSignal.timeout(this.fetchTimeoutMs + Math.ceil(ref.size / 1048576) * FETCH_MS_PER_MIB)
      try {
        await this.fetch(message, { signal: AbortSignal.any([this.shutdown.signal, timeout]) })
        this.attempts.delete(message.id)
      } catch (err) {
        if (!this.running) return
        const code = isTokenimError(err) ? err.code : 'ATTACHMENT_UNAVAILABLE'
        const attempt = (this.attempts.get(message.id) ?? 0) + 1
        this.attempts.set(message.id, attempt)
        // a corrupt attachment will not get better; a missing one may
        const retryInMs = code === AttachmentErrorCode.ATTACHMENT_CORRUPT ? undefined : this.retryDelaysMs[attempt - 1]
        this.log('fetching the attachment of %s failed (%s): %s', message.id, code, (err as Error).message)
        this.emit('fetch:failed', { id: message.id, cid: ref.cid, code, message: (err as Error).message, ...(retryInMs !== undefined ? { retryInMs } : {}) })
        if (retryInMs !== undefined) {
          const t = setTimeout(() => { this.timers.delete(t); this.schedule(message) }, retryInMs)
          t.unref()
          this.timers.add(t)
        }
      }
    }
  }

  /**
   * Queue every stored attachment that is not pinned yet (e.g. after a restart or a restore). The store
   * hands over only the messages that have one: this ran at every start, and decoded every message of the
   * store to find them (100,000 messages: ~0.9 s of CPU, now ~0.4 s).
   */
  private async scan (): Promise<void> {
    const store = this.c.store
    if (store === undefined) return
    for await (const m of store.messagesWithAttachments()) {
      if (!this.running) return
      if (m.attachment === undefined || parseCid(m.attachment.cid) === undefined) continue
      if (await this.isLocal(m.attachment, { signal: this.shutdown.signal })) continue
      this.schedule(m)
    }
  }
}

export interface ReadAttachmentOptions extends ReadOptions {
  blockstore: AttachmentBlockstore
  /** a UnixFS instance on that blockstore (made when missing) */
  fs?: ReturnType<typeof unixfs>
  connect?: AttachmentServiceComponents['connect']
  findProviders?: AttachmentServiceComponents['findProviders']
}

/**
 * Read an attachment from a blockstore (see {@link AttachmentService.read}); usable without a node, e.g.
 * on a data dir's level blockstore with `offline: true`.
 */
export async function * readAttachment (ref: MessageAttachment, options: ReadAttachmentOptions): AsyncGenerator<Uint8Array> {
  const cid = parseCid(ref.cid)
  if (cid === undefined) throw corrupt('its CID does not parse', { cid: ref.cid })
  const key = decodeAttachmentKey(ref.key)
  const signal = options.signal ?? (options.timeoutMs !== undefined ? AbortSignal.timeout(options.timeoutMs) : undefined)
  const fs = options.fs ?? unixfs({ blockstore: options.blockstore })
  const offline = options.offline === true
  if (!offline && !(await options.blockstore.has(cid))) {
    // make the sender (or DHT providers) reachable before bitswap asks connected peers
    if (options.from !== undefined && options.connect !== undefined) {
      await options.connect(options.from, { signal }).catch(() => {})
    }
    if (options.findProviders !== undefined) {
      options.findProviders(cid, { signal }).catch(() => {})
    }
  }
  const onProgress = options.onProgress
  try {
    yield * verifyPlaintext(decryptAttachmentStream(fs.cat(cid, { signal, offline }), key), ref,
      onProgress === undefined ? undefined : (bytes) => { onProgress({ phase: 'fetch', bytes, total: ref.size }) })
  } catch (err) {
    if (isTokenimError(err)) throw err
    const name = (err as Error)?.name
    if (signal?.aborted === true || name === 'AbortError' || name === 'TimeoutError' || name === 'NotFoundError' || name === 'BlockNotFoundWhileOfflineError') {
      throw new AttachmentError(AttachmentErrorCode.ATTACHMENT_UNAVAILABLE,
        offline ? 'the attachment is not on this device' : 'the attachment could not be fetched from its sender or other peers in time', { cid: ref.cid }, { cause: err })
    }
    throw corrupt(`its blocks do not form a valid file (${(err as Error)?.message ?? String(err)})`, { cid: ref.cid })
  } finally {
    key.fill(0)
  }
}

function requireAttachment (message: StoredMessage | undefined): MessageAttachment {
  if (message?.attachment === undefined) {
    throw new AttachmentError(AttachmentErrorCode.NO_ATTACHMENT, message === undefined ? 'no such message' : `message ${message.id} has no attachment`, message === undefined ? {} : { id: message.id })
  }
  return message.attachment
}

/** NO_ATTACHMENT unless the message exists and carries an attachment. */
export function attachmentOf (message: StoredMessage | undefined, id: string): MessageAttachment {
  if (message === undefined) throw new AttachmentError(AttachmentErrorCode.NO_ATTACHMENT, `no message with id ${id}`, { id })
  return requireAttachment(message)
}

function parseCid (text: string): CID | undefined {
  try {
    return CID.parse(text)
  } catch {
    return undefined
  }
}

async function drain (it: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of it) { /* drain */ }
}
