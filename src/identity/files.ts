import { stat } from 'node:fs/promises'
import { TokenimError } from '../errors.ts'
import { PRIVATE_FILE_MODE, writeFileAtomic } from '../util/fs.ts'
import { identityError, IdentityErrorCode } from './errors.ts'

/**
 * Create a private file atomically and exclusively: `writeFileAtomic` with `exclusive` (write + fsync a
 * temporary file beside it, then hard-link it into place: link(2) fails with EEXIST when the target
 * exists, so two racing creators cannot both win and an existing file is never replaced). Throws
 * TokenimError `FILE_EXISTS` if the target exists; on any failure the target is untouched and the
 * temporary file removed.
 */
export async function createFileExclusive (path: string, data: Uint8Array | string, mode: number = PRIVATE_FILE_MODE): Promise<void> {
  await writeFileAtomic(path, data, { mode, exclusive: true })
}

/**
 * Check that a private file (keystore, device key, api token) is not accessible to group or others.
 * Returns `{ ok, mode }`; with `{ throwIfInsecure: true }` throws `INSECURE_FILE_MODE` instead of returning ok=false.
 * A missing file throws `NO_SUCH_FILE`.
 */
export async function checkPrivateFileMode (path: string, options: { throwIfInsecure?: boolean } = {}): Promise<{ ok: boolean, mode: number }> {
  let st
  try {
    st = await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw new TokenimError('NO_SUCH_FILE', `${path} does not exist`, { path })
    }
    throw err
  }
  const mode = st.mode & 0o777
  const ok = (mode & 0o077) === 0
  if (!ok && options.throwIfInsecure === true) {
    throw identityError(IdentityErrorCode.INSECURE_FILE_MODE, `${path} is accessible by other users (mode ${mode.toString(8)}); run chmod 600`, { path, mode: mode.toString(8) })
  }
  return { ok, mode }
}
