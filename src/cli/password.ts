import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { TokenimError } from '../errors.ts'
import type { GlobalOptions } from './options.ts'

export interface PasswordRequest {
  /** what the password is for, shown in the prompt */
  purpose: string
  /** ask twice on a TTY (new passwords) */
  confirm?: boolean
  /** the file flag to read (defaults to --password-file) */
  file?: string
  /** the environment variable to read (defaults to TOKENIM_PASSWORD) */
  env?: string
}

/**
 * A secret from, in order: a file flag, an environment variable, or a hidden prompt on a TTY.
 * Never echoed, never logged. A file's trailing newline is not part of the secret.
 */
export async function readSecret (opts: Pick<GlobalOptions, 'passwordFile'>, req: PasswordRequest): Promise<string> {
  const file = req.file ?? opts.passwordFile
  if (file !== undefined) return await readSecretFile(file, req.purpose)
  const envName = req.env ?? 'TOKENIM_PASSWORD'
  const fromEnv = process.env[envName]
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (process.stdin.isTTY === true && process.stderr.isTTY === true) {
    const first = await promptHidden(`${req.purpose}: `)
    if (req.confirm === true) {
      const again = await promptHidden(`${req.purpose} (again): `)
      if (again !== first) throw new TokenimError('PASSWORD_MISMATCH', 'the two entries differ')
    }
    if (first === '') throw new TokenimError('PASSWORD_REQUIRED', `${req.purpose} must not be empty`)
    return first
  }
  throw new TokenimError('PASSWORD_REQUIRED', `${req.purpose} needed: pass --password-file FILE or set ${envName}`)
}

export async function readSecretFile (file: string, purpose = 'secret'): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new TokenimError('INVALID_ARGUMENT', `cannot read the ${purpose} file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { file })
  }
  const secret = text.replace(/\r?\n$/, '')
  if (secret === '') throw new TokenimError('INVALID_ARGUMENT', `the ${purpose} file ${file} is empty`, { file })
  return secret
}

async function promptHidden (question: string): Promise<string> {
  let muted = false
  const sink = new Writable({
    write (chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk)
      cb()
    }
  })
  const rl = createInterface({ input: process.stdin, output: sink, terminal: true })
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question(question, answer => {
        process.stderr.write('\n')
        resolve(answer)
      })
      muted = true
      rl.on('SIGINT', () => reject(new TokenimError('INTERRUPTED', 'interrupted')))
    })
  } finally {
    rl.close()
  }
}
