import type { Command } from 'commander'
import { TokenimError } from '../errors.ts'
import { globalOptions, type GlobalOptions } from './options.ts'
import { createOutput, type Output } from './output.ts'
import { EXIT } from './exit-codes.ts'

/** What every command's action receives. */
export interface CommandContext {
  opts: GlobalOptions
  out: Output
  /** aborted on SIGINT/SIGTERM: long work stops and cleans up */
  signal: AbortSignal
}

/** The exit code the last action produced (read by runCli). */
let lastExitCode: number = EXIT.OK

export function takeExitCode (): number {
  const code = lastExitCode
  lastExitCode = EXIT.OK
  return code
}

/**
 * Wrap a command's action: resolves the global options, builds the output, turns SIGINT/SIGTERM into
 * an abort signal, and maps every error to `{"error":{code,message}}` and an exit code in one place.
 * The handler gets the positional arguments and the command's own options; it returns an exit code
 * (default 0) and prints its result through ctx.out.
 */
export function action<O = Record<string, unknown>> (
  handler: (ctx: CommandContext, args: string[], options: O) => Promise<number | undefined | void>
): (...args: unknown[]) => Promise<void> {
  return async (...raw: unknown[]) => {
    const cmd = raw[raw.length - 1] as Command
    const options = raw[raw.length - 2] as O
    const args = raw.slice(0, -2).flatMap(a => Array.isArray(a) ? a.map(String) : a === undefined ? [] : [String(a)])
    const opts = globalOptions(cmd)
    const out = createOutput(opts.json)
    const controller = new AbortController()
    let interrupted = false
    const onSignal = (sig: NodeJS.Signals): void => {
      if (interrupted) {
        // a second Ctrl-C: stop waiting for a graceful shutdown
        process.exit(EXIT.INTERRUPTED)
      }
      interrupted = sig === 'SIGINT'
      controller.abort(new TokenimError('INTERRUPTED', `interrupted by ${sig}`))
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    try {
      const code = await handler({ opts, out, signal: controller.signal }, args, options)
      lastExitCode = interrupted ? EXIT.INTERRUPTED : (code ?? EXIT.OK)
    } catch (err) {
      lastExitCode = interrupted ? out.error(new TokenimError('INTERRUPTED', 'interrupted')) : out.error(err)
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}

/** Parse a positive integer option, with a USAGE error naming the flag. */
export function intOption (value: string | undefined, flag: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new TokenimError('USAGE', `${flag} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`)
  }
  return n
}

/** commander collector for repeatable options (`--listen A --listen B`). */
export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}
