import type { Command } from 'commander'
import { action } from '../command.ts'
import { relativeTime } from '../format.ts'
import { withNodeAccess } from '../node-access.ts'

export function registerStatus (program: Command): void {
  program.command('status')
    .description('show whether the daemon runs, its peers, the outbox and the last backup')
    .addHelpText('after', `
--json prints {address, peerId, running, peers, routingTable, outbox, multiaddrs, lastBackup?}:
running is true when a daemon runs on the data dir (peers and multiaddrs are then live); outbox is
the number of messages waiting for delivery; lastBackup is {version, cid, digest, createdAt, anchored, txHash?}.

Examples:
  $ tokenim status
  $ tokenim status --json`)
    .action(action(async (ctx) => {
      const status = await withNodeAccess(ctx, async (node) => await node.status())
      ctx.out.result(status, s => [
        `address    ${s.address}`,
        `peer id    ${s.peerId}`,
        `daemon     ${s.running ? 'running' : 'not running'}`,
        ...(s.running ? [`peers      ${s.peers} connected, ${s.routingTable} in the DHT routing table`] : []),
        ...(s.multiaddrs.length > 0 ? [`multiaddrs ${s.multiaddrs.join('\n           ')}`] : []),
        `outbox     ${s.outbox} message${s.outbox === 1 ? '' : 's'} waiting for delivery`,
        `backup     ${s.lastBackup !== undefined ? `version ${s.lastBackup.version}, ${relativeTime(s.lastBackup.createdAt)}${s.lastBackup.anchored ? '' : ' (not anchored yet)'}` : 'none yet'}`
      ].join('\n'))
    }))
}
