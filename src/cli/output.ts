import { isTokenimError } from '../errors.ts'
import { EXIT, exitCodeFor } from './exit-codes.ts'

/**
 * Everything the CLI prints goes through here: with --json exactly one JSON document on stdout
 * (errors too, as {"error":{"code","message"}}), otherwise readable text, with errors on stderr.
 */
export interface Output {
  json: boolean
  /** the command's result: JSON document, or the human rendering of it */
  result: <T>(value: T, human: (value: T) => string) => void
  /** a notice for people (stderr; silent with --json) */
  info: (line: string) => void
  /** a warning for people (stderr, also with --json since it does not touch stdout) */
  warn: (line: string) => void
  /** print an error, return the exit code to use */
  error: (err: unknown) => number
}

export function createOutput (json: boolean, stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
  return {
    json,
    result (value, human) {
      if (json) {
        stdout.write(JSON.stringify(value, jsonReplacer, 2) + '\n')
      } else {
        const text = human(value)
        if (text !== '') stdout.write(text.endsWith('\n') ? text : text + '\n')
      }
    },
    info (line) {
      if (!json) stderr.write(line + '\n')
    },
    warn (line) {
      stderr.write(`warning: ${line}\n`)
    },
    error (err) {
      const { code, message } = describeError(err)
      if (json) {
        stdout.write(JSON.stringify({ error: { code, message } }) + '\n')
      } else {
        stderr.write(`tokenim: ${message} (${code})\n`)
        if (process.env.DEBUG !== undefined && err instanceof Error && err.stack !== undefined) stderr.write(err.stack + '\n')
      }
      return exitCodeFor(err)
    }
  }
}

export function describeError (err: unknown): { code: string, message: string } {
  if (isTokenimError(err)) return { code: err.code, message: err.message }
  const e = err as { code?: unknown, message?: unknown }
  if (typeof e?.code === 'string' && e.code.startsWith('commander.')) {
    return { code: 'USAGE', message: String(e.message ?? 'invalid usage').replace(/^error: /, '') }
  }
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) }
}

/** bigint → string, Uint8Array → hex, so results always serialise. */
function jsonReplacer (_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  return value
}

export { EXIT }
