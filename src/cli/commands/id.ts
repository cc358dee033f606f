import type { Command } from 'commander'
import { readIdentityPublic } from '../../identity/index.ts'
import { action } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'

export function registerId (program: Command): void {
  program.command('id')
    .description('show this node\'s identity: wallet address, peer id and, when the daemon runs, its addresses')
    .addHelpText('after', `
Examples:
  $ tokenim id
  $ tokenim id --json`)
    .action(action(async ({ opts, out }) => {
      const identity = await readIdentityPublic(opts.dataDir)
      const api = await readApiInfo(opts.dataDir)
      const result = { address: identity.address, peerId: identity.peerId, multiaddrs: api?.multiaddrs ?? [] }
      out.result(result, r => [
        `address    ${r.address}`,
        `peer id    ${r.peerId}`,
        r.multiaddrs.length > 0 ? `multiaddrs ${r.multiaddrs.join('\n           ')}` : 'multiaddrs (daemon not running)'
      ].join('\n'))
    }))
}
