import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { StoredMessage } from '../../store/index.ts'
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, fsyncDir, toFsError } from '../../util/fs.ts'
import type { AttachmentOutcome } from './formats.ts'

/**
 * Where an export finds attachment bytes: the plaintext of `message.attachment`, streamed, or
 * undefined when this device does not have them. Errors thrown while reading count as "could not be
 * read" (the export goes on); the bytes are checked against the attachment's size and sha256.
 */
export type GetAttachment = (message: StoredMessage) =>
  AsyncIterable<Uint8Array> | undefined | Promise<AsyncIterable<Uint8Array> | undefined>

export const NOT_AVAILABLE = 'not available locally'

/** The folder beside an html/md export that holds copies of its attachments: `<out>.files`. */
export function filesDirFor (out: string): string {
  return `${out}.files`
}

const MAX_NAME_CHARS = 80

/** A file name safe on every filesystem and free of path syntax, keeping the extension where it can. */
export function safeFileName (name: string): string {
  let clean = Array.from(name.normalize('NFC').replace(/[^\p{L}\p{M}\p{N}._-]+/gu, '_').replace(/^[._]+/, ''))
  if (clean.length > MAX_NAME_CHARS) {
    const text = clean.join('')
    const dot = text.lastIndexOf('.')
    const ext = dot > 0 && text.length - dot <= 12 ? Array.from(text.slice(dot)) : []
    clean = [...clean.slice(0, MAX_NAME_CHARS - ext.length), ...ext]
  }
  const result = clean.join('')
  return result === '' ? 'attachment' : result
}

/**
 * Copies attachments into a hidden temporary folder beside the export while it is written; `commit`
 * renames it to `<out>.files` once the export file is in place, `discard` removes it on failure.
 * Files are numbered in export order (`0001-photo.jpg`), so names never collide or escape the folder.
 */
export class AttachmentFolder {
  readonly final: string
  readonly #tmp: string
  #created = false
  #seq = 0
  copied = 0

  constructor (out: string) {
    this.final = filesDirFor(out)
    this.#tmp = join(dirname(out), `.${basename(this.final)}.${randomBytes(6).toString('hex')}.tmp`)
  }

  /** Copy one message's attachment from `source`; write failures (disk full, …) throw, read failures do not. */
  async add (message: StoredMessage, source: AsyncIterable<Uint8Array>): Promise<AttachmentOutcome> {
    const att = message.attachment
    if (att === undefined) throw new Error('message has no attachment')
    if (!this.#created) {
      try {
        await mkdir(this.#tmp, { mode: PRIVATE_DIR_MODE })
      } catch (err) {
        throw toFsError(err, this.#tmp)
      }
      this.#created = true
    }
    const fileName = `${String(++this.#seq).padStart(4, '0')}-${safeFileName(att.name)}`
    const path = join(this.#tmp, fileName)
    const hash = createHash('sha256')
    let size = 0
    let problem: string | undefined
    const handle = await open(path, 'wx', PRIVATE_FILE_MODE).catch(err => { throw toFsError(err, path) })
    const it = source[Symbol.asyncIterator]()
    try {
      for (;;) {
        let next: IteratorResult<Uint8Array>
        try {
          next = await it.next()
        } catch {
          problem = `${NOT_AVAILABLE} (could not be read)`
          break
        }
        if (next.done === true) break
        const chunk = next.value
        size += chunk.byteLength
        if (size > att.size) {
          problem = `${NOT_AVAILABLE} (its content does not match its checksum)`
          await it.return?.().catch(() => {})
          break
        }
        hash.update(chunk)
        await handle.write(chunk).catch(err => { throw toFsError(err, path) })
      }
      if (problem === undefined && (size !== att.size || hash.digest('hex') !== att.sha256.toLowerCase())) {
        problem = `${NOT_AVAILABLE} (its content does not match its checksum)`
      }
      if (problem === undefined) await handle.sync().catch(err => { throw toFsError(err, path) })
    } finally {
      await handle.close().catch(() => {})
      if (problem !== undefined) await rm(path, { force: true }).catch(() => {})
    }
    if (problem !== undefined) return { state: 'unavailable', reason: problem }
    this.copied++
    return { state: 'copied', link: `${basename(this.final)}/${fileName}` }
  }

  /** Move the copies into place (replacing an old `<out>.files` when `force`); the final path, or undefined when nothing was copied. */
  async commit (force: boolean): Promise<string | undefined> {
    if (!this.#created) return undefined
    if (this.copied === 0) {
      await this.discard()
      return undefined
    }
    try {
      await fsyncDir(this.#tmp)
      if (force) await rm(this.final, { recursive: true, force: true })
      await rename(this.#tmp, this.final)
      await fsyncDir(dirname(this.final))
    } catch (err) {
      throw toFsError(err, this.final)
    }
    this.#created = false
    return this.final
  }

  async discard (): Promise<void> {
    if (!this.#created) return
    await rm(this.#tmp, { recursive: true, force: true }).catch(() => {})
    this.#created = false
  }
}
