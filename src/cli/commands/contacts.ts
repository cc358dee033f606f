import type { Command } from 'commander'
import { parseAddress, parseContactName } from '../../api/index.ts'
import type { ContactView } from '../../api/index.ts'
import { TokenimError } from '../../errors.ts'
import { action } from '../command.ts'
import { table } from '../format.ts'
import { withNodeAccess } from '../node-access.ts'

export function registerContacts (program: Command): void {
  const contacts = program.command('contacts')
    .description('list contacts (names for wallet addresses), or add one')
    .addHelpText('after', `
--json prints [{address, name?, addedAt}] (addedAt in ms since the epoch).

Examples:
  $ tokenim contacts
  $ tokenim contacts add 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --name bob
  $ tokenim contacts --json`)
    .action(action(async (ctx) => {
      const list = await withNodeAccess(ctx, async (node) => await node.contacts())
      ctx.out.result(list, l => l.length === 0
        ? '(no contacts; add one with `tokenim contacts add ADDRESS --name NAME`)'
        : table(l.map(c => ({ name: c.name ?? '', address: c.address, added: new Date(c.addedAt).toISOString().slice(0, 10) })), ['name', 'address', 'added']))
    }))
  contacts.command('add')
    .description('add a contact, or rename one')
    .argument('<address>', 'the contact\'s wallet address')
    .requiredOption('--name <name>', 'the name to show instead of the address')
    .addHelpText('after', `
--json prints the contact {address, name, addedAt}.

Examples:
  $ tokenim contacts add 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --name bob`)
    .action(action<{ name?: string }>(async (ctx, [address], o) => {
      if (o.name === undefined) throw new TokenimError('USAGE', '--name is required')
      const addr = parseAddress(address, 'address')
      const name = parseContactName(o.name, '--name')
      const contact: ContactView = await withNodeAccess(ctx, async (node) => await node.addContact(addr, name))
      ctx.out.result(contact, c => `${c.name ?? ''}  ${c.address}`)
    }))
}
