import type { Command } from 'commander'
import { parseAddress, parseCount } from '../../api/index.ts'
import type { MessagesQuery, MessageView } from '../../api/index.ts'
import { action } from '../command.ts'
import { relativeTime, shortAddress, table } from '../format.ts'
import { withNodeAccess } from '../node-access.ts'
import { parseTimeRange } from '../time.ts'

interface MessagesOptions { since?: string, until?: string, limit?: string }

export function registerMessages (program: Command): void {
  program.command('messages')
    .description('list messages, oldest first: of one conversation, or all')
    .argument('[address]', 'only the conversation with this wallet address')
    .option('--since <time>', 'only messages sent at or after this time')
    .option('--until <time>', 'only messages sent at or before this time')
    .option('--limit <n>', 'only the newest N messages (still listed oldest first)')
    .addHelpText('after', `
A <time> is an ISO date or date-time (2026-01-31, 2026-01-31T18:00, 2026-01-31T18:00:00Z; local
time without a zone; --until with a date alone covers that whole day), milliseconds since the epoch
(1767225600000), or a duration back from now: 30s, 15m, 2h, 7d, 2w.
--json prints [{id, from, to, ts, text, status, attachment?}] (ts in ms; status: queued, sent,
delivered, received, failed). Without --json: a table, with contact names where known.

Examples:
  $ tokenim messages
  $ tokenim messages 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --since 2h
  $ tokenim messages --since 2026-01-01 --until 2026-02-01 --json
  $ tokenim messages --limit 20`)
    .action(action<MessagesOptions>(async (ctx, [peer], o) => {
      const now = Date.now()
      const q: MessagesQuery = {}
      if (peer !== undefined) q.peer = parseAddress(peer, 'address')
      const range = parseTimeRange(o.since, o.until, now)
      if (range.since !== undefined) q.since = range.since
      if (range.until !== undefined) q.until = range.until
      if (o.limit !== undefined) q.limit = parseCount(o.limit, '--limit')
      const { messages, names, self } = await withNodeAccess(ctx, async (node) => {
        const messages = await node.messages(q)
        if (ctx.out.json) return { messages, names: new Map<string, string>(), self: '' }
        const [contacts, id] = await Promise.all([node.contacts(), node.id()])
        return { messages, names: new Map(contacts.filter(c => c.name !== undefined).map(c => [c.address.toLowerCase(), c.name as string])), self: id.address.toLowerCase() }
      })
      ctx.out.result(messages, list => render(list, names, self, now))
    }))
}

function render (list: MessageView[], names: Map<string, string>, self: string, now: number): string {
  if (list.length === 0) return '(no messages)'
  const who = (address: string): string => address.toLowerCase() === self ? 'me' : names.get(address.toLowerCase()) ?? shortAddress(address)
  return table(list.map(m => ({
    when: relativeTime(m.ts, now),
    from: who(m.from),
    to: who(m.to),
    status: m.status,
    text: oneLine(m.text) + (m.attachment !== undefined ? ` [${m.attachment.name}]` : '')
  })), ['when', 'from', 'to', 'status', 'text'])
}

function oneLine (text: string): string {
  const flat = text.replace(/\s*\n\s*/g, ' ⏎ ')
  return flat.length > 100 ? flat.slice(0, 99) + '…' : flat
}
