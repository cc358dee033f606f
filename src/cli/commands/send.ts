import type { Command } from 'commander'
import { parseAddress, parseMessageText } from '../../api/index.ts'
import { action } from '../command.ts'
import { withNodeAccess } from '../node-access.ts'

export function registerSend (program: Command): void {
  program.command('send')
    .description('send an end-to-end encrypted message to a wallet address')
    .argument('<address>', 'the recipient\'s wallet address (0x…, checksummed or lowercase)')
    .argument('<text>', 'the message (at most 64 KiB)')
    .addHelpText('after', `
Prints the message id and its status: "delivered" (the recipient acknowledged it) or "queued" (not
reachable yet: it stays in the outbox and is retried by the daemon, also after restarts).
With a daemon running on the data dir the daemon sends it; otherwise a node is started for the
command (it asks for the keystore password and waits up to 15 s for the first delivery attempt).

Examples:
  $ tokenim send 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 "hello"
  $ tokenim send 0x70997970c51812dc3a010c7d01b50e0d17dc79c8 "see you at 6" --json`)
    .action(action(async (ctx, [to, text]) => {
      const address = parseAddress(to, 'address')
      const body = parseMessageText(text)
      const result = await withNodeAccess(ctx, async (node) => await node.send(address, body))
      ctx.out.result(result, r => r.status === 'delivered'
        ? `delivered  ${r.id}`
        : `queued     ${r.id}  (the recipient is not reachable yet; the daemon keeps retrying)`)
    }))
}
