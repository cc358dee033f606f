import { resolve } from 'node:path'
import type { Command } from 'commander'
import { SingleBar } from 'cli-progress'
import type { TransferProgress } from '../../api/index.ts'
import { TokenimError } from '../../errors.ts'
import { formatBytes } from '../../util/format.ts'
import { action } from '../command.ts'
import type { CommandContext } from '../command.ts'
import { withNodeAccess } from '../node-access.ts'

/** Transfers smaller than this get no progress bar. */
export const PROGRESS_MIN_BYTES = 4 * 1024 * 1024

/**
 * A progress bar on stderr for a transfer of `total` bytes: only on a TTY, without --json, and for
 * transfers over a few MB (the bar appears once the first progress report says how big it is).
 */
export function transferBar (ctx: CommandContext, label: string): { onProgress?: (p: TransferProgress) => void, stop: () => void } {
  if (ctx.out.json || process.stderr.isTTY !== true) return { stop: () => {} }
  let bar: SingleBar | undefined
  return {
    onProgress: (p) => {
      if (p.total < PROGRESS_MIN_BYTES) return
      const payload = { label, done: formatBytes(p.bytes), size: formatBytes(p.total) }
      if (bar === undefined) {
        bar = new SingleBar({ stream: process.stderr, format: ' {label} [{bar}] {percentage}% · {done} of {size}', hideCursor: true, clearOnComplete: true })
        bar.start(p.total, 0, payload)
      }
      bar.update(Math.min(p.bytes, p.total), payload)
    },
    stop: () => { bar?.stop() }
  }
}

interface GetFlags { out?: string, force?: boolean }

export function registerAttachment (program: Command): void {
  const cmd = program.command('attachment')
    .description('attachments of messages: write one out to a file')
  cmd.command('get')
    .description('write the attachment of a message to a file (fetching it first if this device does not have it)')
    .argument('<id>', 'the message id (from `tokenim messages --json`)')
    .option('--out <path>', 'the file to write (mode 0600, written atomically)')
    .option('--force', 'replace an existing file')
    .addHelpText('after', `
The bytes are decrypted and checked against the size and SHA-256 the message carries before the
file appears (ATTACHMENT_CORRUPT otherwise, and nothing is written). An attachment that is not on
this device is fetched from the other party or from peers that hold it (ATTACHMENT_UNAVAILABLE when
none answers in time). With a daemon running on the data dir the daemon writes the file.

Examples:
  $ tokenim attachment get 01951f7e-8c3a-7b21-9f00-4a5e6b7c8d9e --out ~/holiday.png
  $ tokenim attachment get 01951f7e-8c3a-7b21-9f00-4a5e6b7c8d9e --out photo.png --force --json`)
    .action(action<GetFlags>(async (ctx, [id], o) => {
      if (o.out === undefined || o.out === '') throw new TokenimError('USAGE', '--out PATH is required')
      const out = resolve(o.out)
      const bar = transferBar(ctx, 'fetch')
      try {
        const r = await withNodeAccess(ctx, async (node) => await node.saveAttachment(id, out, o.force === true, bar.onProgress))
        bar.stop()
        ctx.out.result(r, v => `saved ${v.name} (${formatBytes(v.size)}, ${v.mime}) to ${v.file}`)
      } finally {
        bar.stop()
      }
    }))
}
