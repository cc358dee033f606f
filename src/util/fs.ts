import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, rename, rm, stat, chmod, link } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { TokenimError } from '../errors.ts'

/** Mode for files holding secrets or private history. */
export const PRIVATE_FILE_MODE = 0o600
export const PRIVATE_DIR_MODE = 0o700

export interface AtomicWriteOptions {
  mode?: number
  /** refuse to replace an existing file */
  exclusive?: boolean
}

/**
 * Write a file so that readers see either the old content or the whole new content, never a part:
 * write a temporary file beside it, fsync it, rename it over the target, fsync the directory.
 * On any failure the temporary file is removed and the target is untouched.
 */
export async function writeFileAtomic (path: string, data: Uint8Array | string | AsyncIterable<Uint8Array>, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? PRIVATE_FILE_MODE
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  if (options.exclusive === true && await exists(path)) {
    throw new TokenimError('FILE_EXISTS', `refusing to overwrite ${path}`, { path })
  }
  let handle
  try {
    handle = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, mode)
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await handle.writeFile(data)
    } else {
      for await (const chunk of data) {
        await handle.write(chunk)
      }
    }
    await handle.sync()
    await handle.close()
    handle = undefined
    await chmod(tmp, mode)
    if (options.exclusive === true) {
      // link() fails with EEXIST if the target appeared meanwhile: no check-then-rename race
      await link(tmp, path)
      await rm(tmp, { force: true })
    } else {
      await rename(tmp, path)
    }
    await fsyncDir(dir)
  } catch (err) {
    await handle?.close().catch(() => {})
    await rm(tmp, { force: true }).catch(() => {})
    throw toFsError(err, path)
  }
}

/** fsync a directory so a rename in it survives a power cut (best effort where unsupported). */
export async function fsyncDir (dir: string): Promise<void> {
  let handle
  try {
    handle = await open(dir, constants.O_RDONLY)
    await handle.sync()
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await handle?.close().catch(() => {})
  }
}

export async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Whether `path` exists and was modified less than `ms` ago (a lock file still being written). */
export async function youngerThan (path: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs < ms
  } catch {
    return false
  }
}

/** Create a private directory (0700) if it is missing. */
export async function ensurePrivateDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
}

/** Translate node's filesystem errors into TokenimErrors with stable codes. */
export function toFsError (err: unknown, path: string): unknown {
  if (err instanceof TokenimError) return err
  const code = (err as NodeJS.ErrnoException)?.code
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new TokenimError('DISK_FULL', `no space left on the device writing ${path}`, { path }, { cause: err })
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TokenimError('PERMISSION_DENIED', `permission denied writing ${path}`, { path }, { cause: err })
    case 'ENOENT':
    case 'ENOTDIR':
      return new TokenimError('NO_SUCH_DIRECTORY', `directory does not exist for ${path}`, { path }, { cause: err })
    case 'EEXIST':
      return new TokenimError('FILE_EXISTS', `refusing to overwrite ${path}`, { path }, { cause: err })
    default:
      return err
  }
}
