/**
 * The base of every error tokenim raises on purpose.
 *
 * Each error carries a stable string `code` (part of the public contract: the CLI prints it in
 * `{"error":{"code","message"}}` and README lists them), a short human message, and optional
 * `info` with details that are safe to show (never secrets).
 */
export class TokenimError extends Error {
  readonly code: string
  readonly info: Record<string, unknown>

  constructor (code: string, message: string, info: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TokenimError'
    this.code = code
    this.info = info
  }
}

/** Narrow an unknown error to a TokenimError, optionally of one code. */
export function isTokenimError (err: unknown, code?: string): err is TokenimError {
  return err instanceof TokenimError && (code === undefined || err.code === code)
}
