import { resolve } from 'node:path'
import type { Command } from 'commander'
import { parseAddress, parseMessageText } from '../../api/index.ts'
import { TokenimError } from '../../errors.ts'
import { formatBytes } from '../../util/format.ts'
import { action } from '../command.ts'
import { withNodeAccess } from '../node-access.ts'
import { transferBar } from './attachment.ts'

interface SendFlags { file?: string, caption?: string }

export function registerSend (program: Command): void {
  program.command('send')
    .description('send an end-to-end encrypted message or file to a wallet address')
    .argument('<address>', 'the recipient\'s wallet address (0x…, checksummed or lowercase)')
    .argument('[text]', 'the message (at most 64 KiB); with --file, the caption')
    .option('--file <path>', 'send this file as an attachment (images, voice notes, any file; limit: config.json attachmentMaxBytes, default 100 MiB)')
    .option('--caption <text>', 'with --file: the text shown with the file')
    .addHelpText('after', `
Prints the message id and its status: "delivered" (the recipient acknowledged it) or "queued" (not
reachable yet: it stays in the outbox and is retried by the daemon, also after restarts).
With a daemon running on the data dir the daemon sends it; otherwise a node is started for the
command (it asks for the keystore password and waits up to 15 s for the first delivery attempt).

A file is encrypted with a fresh random key and kept (pinned) on this node; the message carries its
CID, key, name, type, size and SHA-256, and the recipient's node fetches it from here (or from any
peer that has it). Keep your node running until the recipient has it. FILE_TOO_LARGE, FILE_NOT_FOUND
and FILE_NOT_READABLE are reported before anything is sent.

Examples:
  $ tokenim send 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 "hello"
  $ tokenim send 0x70997970c51812dc3a010c7d01b50e0d17dc79c8 "see you at 6" --json
  $ tokenim send 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --file ~/holiday.png --caption "the view"`)
    .action(action<SendFlags>(async (ctx, [to, text], o) => {
      const address = parseAddress(to, 'address')
      if (o.file === undefined) {
        if (o.caption !== undefined) throw new TokenimError('USAGE', '--caption goes with --file')
        if (text === undefined) throw new TokenimError('USAGE', 'missing the message text (or --file PATH)')
        const body = parseMessageText(text)
        const result = await withNodeAccess(ctx, async (node) => await node.send(address, body))
        ctx.out.result(result, r => r.status === 'delivered'
          ? `delivered  ${r.id}`
          : `queued     ${r.id}  (the recipient is not reachable yet; the daemon keeps retrying)`)
        return
      }
      if (o.file === '') throw new TokenimError('USAGE', '--file needs a path')
      if (text !== undefined && o.caption !== undefined) throw new TokenimError('USAGE', 'give the caption either as TEXT or with --caption, not both')
      const captionText = o.caption ?? text
      const caption = captionText === undefined || captionText === '' ? undefined : parseMessageText(captionText, 'caption')
      const bar = transferBar(ctx, 'encrypt')
      try {
        const result = await withNodeAccess(ctx, async (node) => await node.sendFile(address, resolve(o.file as string), caption, bar.onProgress))
        bar.stop()
        const a = result.attachment
        ctx.out.result(result, r => (r.status === 'delivered'
          ? `delivered  ${r.id}`
          : `queued     ${r.id}  (the recipient is not reachable yet; the daemon keeps retrying)`) +
          `\n           ${a.name} (${formatBytes(a.size)}, ${a.mime}); keep this node running until the recipient has fetched it`)
      } finally {
        bar.stop()
      }
    }))
}
