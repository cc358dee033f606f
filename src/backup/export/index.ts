/**
 * Export chat history for people: json (lossless, documented), md, html (single self-contained file)
 * or txt. The export streams from a store snapshot to the file (memory does not grow with history),
 * conversation by conversation, oldest first by (ts, id). It is written atomically (temporary file,
 * fsync, rename; mode 0600) and is NOT encrypted: callers should say so. The engine never prints.
 */
import { stat, rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { TokenimError } from '../../errors.ts'
import { isAddress } from '../../store/index.ts'
import type { Store, StoredMessage } from '../../store/index.ts'
import { PRIVATE_FILE_MODE, writeFileAtomic } from '../../util/fs.ts'
import { AttachmentFolder, NOT_AVAILABLE, filesDirFor } from './attachments.ts'
import type { GetAttachment } from './attachments.ts'
import { ExportErrorCode, usage } from './errors.ts'
import { shortAddress } from './escape.ts'
import { EXPORT_FORMATS, isExportFormat, renderer } from './formats.ts'
import type { AttachmentOutcome, ExportFormat, Totals } from './formats.ts'

export { ExportErrorCode } from './errors.ts'
export { EXPORT_FORMATS, JSON_EXPORT_FORMAT, JSON_EXPORT_VERSION, isExportFormat } from './formats.ts'
export type { ExportFormat } from './formats.ts'
export { NOT_AVAILABLE, filesDirFor, safeFileName } from './attachments.ts'
export type { GetAttachment } from './attachments.ts'

/** The parts of the store an export reads. */
export type ExportStore = Pick<Store, 'snapshot' | 'getContact'>

/** Where an export is: reported at the start, every few hundred messages, after each attachment copied and at the end. */
export interface ExportProgress {
  /** messages written so far */
  messages: number
  /** the messages the export will hold, when known beforehand (no since/until: the snapshot's counts) */
  totalMessages?: number
  /** conversations started so far */
  conversations: number
  /** attachment files copied beside the export so far (html/md) */
  attachmentsCopied: number
  /** bytes of the export file handed to the file so far */
  bytes: number
}

export interface ExportOptions {
  store: ExportStore
  /** our own address: our messages are labelled "me" */
  self: string
  format: ExportFormat | string
  /** the export file; html/md attachments go to `<out>.files/` */
  out: string
  /** one conversation (the peer's address); all conversations when omitted */
  conversation?: string
  /** ms since the epoch, inclusive */
  since?: number
  /** ms since the epoch, inclusive */
  until?: number
  /** attachment bytes for html/md exports; without it (or when it returns undefined) attachments are listed as not available locally */
  getAttachment?: GetAttachment
  /** replace an existing export file (and `<out>.files/`) */
  force?: boolean
  /** the export time recorded in the file (default Date.now()) */
  now?: number
  signal?: AbortSignal
  onProgress?: (p: ExportProgress) => void
}

export interface ExportResult {
  /** absolute path of the export file */
  file: string
  /** messages written */
  messages: number
  /** conversations written */
  conversations: number
  /** messages written that carry an attachment */
  attachments: number
  /** attachment files copied beside the export (html/md) */
  attachmentsCopied: number
  /** attachments html/md could not copy (listed as not available locally) */
  attachmentsUnavailable: number
  /** the folder with the copies (absolute), when any were copied */
  filesDir?: string
}

const CHUNK_CHARS = 64 * 1024
const PROGRESS_EVERY = 500

/**
 * Write the history (one conversation or all, optionally limited to [since, until]) to `out`.
 * Throws USAGE (bad format/range, `out` is a directory), INVALID_ADDRESS, FILE_EXISTS (unless
 * `force`), PERMISSION_DENIED / DISK_FULL / NO_SUCH_DIRECTORY (nothing is left behind), store errors,
 * or the signal's abort reason.
 */
export async function exportHistory (opts: ExportOptions): Promise<ExportResult> {
  const { store, getAttachment, signal, onProgress } = opts
  const force = opts.force === true
  if (!isExportFormat(opts.format)) {
    throw usage(`unknown export format ${JSON.stringify(opts.format)}: use one of ${EXPORT_FORMATS.join(', ')}`, { format: String(opts.format) })
  }
  const format = opts.format
  if (!isAddress(opts.self)) throw new TokenimError(ExportErrorCode.INVALID_ADDRESS, 'self must be a 0x-prefixed 20-byte hex address')
  const self = opts.self.toLowerCase()
  let conversation: string | undefined
  if (opts.conversation !== undefined) {
    if (!isAddress(opts.conversation)) {
      throw new TokenimError(ExportErrorCode.INVALID_ADDRESS, `not an address: ${JSON.stringify(opts.conversation)} (expected 0x followed by 40 hex digits)`)
    }
    conversation = opts.conversation.toLowerCase()
  }
  for (const [k, v] of [['since', opts.since], ['until', opts.until]] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw usage(`${k} must be a non-negative number of ms since the epoch`)
  }
  const { since, until } = opts
  if (since !== undefined && until !== undefined && since > until) throw usage('since is after until')
  if (typeof opts.out !== 'string' || opts.out === '') throw usage('no output file given')

  const file = resolve(opts.out)
  const render = renderer(format)
  await checkTarget(file, force)
  if (render.copiesAttachments) await checkTarget(filesDirFor(file), force, true)
  signal?.throwIfAborted()

  const folder = render.copiesAttachments ? new AttachmentFolder(file) : undefined
  const totals: Totals = { conversations: 0, messages: 0, attachments: 0 }
  let unavailable = 0
  let totalMessages: number | undefined
  const written = { bytes: 0 }
  const progress = (): void => onProgress?.({
    messages: totals.messages,
    ...(totalMessages !== undefined ? { totalMessages } : {}),
    conversations: totals.conversations,
    attachmentsCopied: folder?.copied ?? 0,
    bytes: written.bytes
  })

  const attachmentOutcome = async (m: StoredMessage): Promise<AttachmentOutcome> => {
    if (folder === undefined) return { state: 'listed' }
    const source = getAttachment === undefined ? undefined : await getAttachment(m)
    const outcome: AttachmentOutcome = source === undefined
      ? { state: 'unavailable', reason: NOT_AVAILABLE }
      : await folder.add(m, source)
    if (outcome.state === 'unavailable') unavailable++
    else if (outcome.state === 'copied') progress()
    return outcome
  }

  async function * pieces (): AsyncGenerator<string> {
    const snapshot = store.snapshot()
    try {
      yield render.begin({ self, exportedAt: opts.now ?? Date.now(), conversation, since, until })
      const summaries = conversation !== undefined
        ? [await snapshot.conversation(conversation) ?? { peer: conversation, count: 0 }]
        : await snapshot.conversations()
      const peers = summaries.map(c => c.peer)
      // without a time range every message of these conversations is written: the total is known
      if (since === undefined && until === undefined) totalMessages = summaries.reduce((n, c) => n + c.count, 0)
      progress()
      for (const peer of peers) {
        signal?.throwIfAborted()
        const rawName = (await store.getContact(peer))?.name
        const name = rawName !== undefined && rawName !== '' ? rawName : undefined
        const header = { peer, name, index: totals.conversations }
        const theirLabel = name ?? shortAddress(peer)
        let count = 0
        for await (const m of snapshot.messages(peer, { since, until })) {
          signal?.throwIfAborted()
          if (count === 0) {
            yield render.startConversation(header)
            totals.conversations++
          }
          const mine = m.direction === 'out' || m.from === self
          const sender = mine ? 'me' : m.from === peer ? theirLabel : shortAddress(m.from)
          let attachment: AttachmentOutcome | undefined
          if (m.attachment !== undefined) {
            totals.attachments++
            attachment = await attachmentOutcome(m)
          }
          yield render.message({ message: m, sender, mine, index: count, attachment })
          count++
          totals.messages++
          if (totals.messages % PROGRESS_EVERY === 0) progress()
        }
        if (count === 0 && conversation !== undefined) {
          // the one conversation asked for is always in the file, even when empty
          yield render.startConversation(header)
          totals.conversations++
        }
        if (count > 0 || conversation !== undefined) yield render.endConversation(header, count)
      }
      yield render.end(totals)
    } finally {
      await snapshot.close().catch(() => {})
    }
  }

  try {
    await writeFileAtomic(file, utf8Chunks(pieces(), written), { mode: PRIVATE_FILE_MODE, exclusive: !force })
  } catch (err) {
    await folder?.discard()
    throw err
  }
  let filesDir: string | undefined
  try {
    filesDir = await folder?.commit(force)
  } catch (err) {
    // the export without its attachments would have dead links: take it back
    await rm(file, { force: true }).catch(() => {})
    await folder?.discard()
    throw err
  }
  progress()
  const result: ExportResult = {
    file,
    messages: totals.messages,
    conversations: totals.conversations,
    attachments: totals.attachments,
    attachmentsCopied: folder?.copied ?? 0,
    attachmentsUnavailable: unavailable
  }
  if (filesDir !== undefined) result.filesDir = filesDir
  return result
}

/** FILE_EXISTS unless `force`; USAGE when the export file would replace a directory. */
async function checkTarget (path: string, force: boolean, isFolder = false): Promise<void> {
  let st
  try {
    st = await stat(path)
  } catch {
    return
  }
  if (!isFolder && st.isDirectory()) throw usage(`${path} is a directory: give the path of the export file to write`, { path })
  if (!force) {
    throw new TokenimError(ExportErrorCode.FILE_EXISTS,
      `refusing to overwrite ${path}${isFolder ? ' (the attachment folder of an earlier export)' : ''}: choose another path or use --force`, { path })
  }
}

/** Join small text pieces into ~64 KiB UTF-8 chunks (few writes, bounded memory); `written.bytes` counts what was handed on. */
async function * utf8Chunks (parts: AsyncIterable<string>, written: { bytes: number }): AsyncGenerator<Uint8Array> {
  let buf = ''
  for await (const p of parts) {
    buf += p
    if (buf.length >= CHUNK_CHARS) {
      const chunk = Buffer.from(buf, 'utf8')
      written.bytes += chunk.length
      yield chunk
      buf = ''
    }
  }
  if (buf !== '') {
    const chunk = Buffer.from(buf, 'utf8')
    written.bytes += chunk.length
    yield chunk
  }
}
