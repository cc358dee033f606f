import type { Command } from 'commander'
import { action } from '../command.ts'
import { relativeTime } from '../format.ts'
import { withNodeAccess } from '../node-access.ts'
import type { StatusView } from '../../api/index.ts'

/** The backup health lines: last anchored version, pending versions and their problem, the scheduler. */
function backupLines (b: StatusView['backup']): string[] {
  if (b === undefined) return []
  const out: string[] = []
  if (b.lastAnchored !== undefined && b.lastAnchored.version !== b.last?.version) out.push(`           last anchored: version ${b.lastAnchored.version}, ${relativeTime(b.lastAnchored.createdAt)}`)
  if (b.pending.length > 0) out.push(`           PENDING anchor: version${b.pending.length === 1 ? '' : 's'} ${b.pending.join(', ')} (tokenim backup --anchor-pending)`)
  if (b.problem !== undefined) out.push(`           problem: ${b.problem.code}: ${b.problem.message} (${relativeTime(b.problem.at)})`)
  const sc = b.scheduler
  if (sc !== undefined) {
    const parts = [`every ${Math.round(sc.everyMs / 60_000)} min`]
    if (sc.lastSuccessAt !== undefined) parts.push(`last success ${relativeTime(sc.lastSuccessAt)}${sc.lastSuccessVersion !== undefined ? ` (version ${sc.lastSuccessVersion})` : ''}`)
    if (sc.nextRunAt !== undefined) parts.push(`next ${relativeTime(sc.nextRunAt)}`)
    out.push(`scheduler  ${parts.join(', ')}`)
    if (sc.problem !== undefined) out.push(`           last run failed${sc.failures > 1 ? ` ${sc.failures} times` : ''}: ${sc.problem.code}: ${sc.problem.message}`)
  }
  return out
}

export function registerStatus (program: Command): void {
  program.command('status')
    .description('show whether the daemon runs, its peers, the outbox and the last backup')
    .addHelpText('after', `
--json prints {address, peerId, running, peers, routingTable, outbox, multiaddrs, lastBackup?}:
running is true when a daemon runs on the data dir (peers and multiaddrs are then live); outbox is
the number of messages waiting for delivery; lastBackup is {version, cid, digest, createdAt, anchored, txHash?};
backup is {last?, lastAnchored?, pending: [versions], problem?: {version, code, message, at}, scheduler?:
{everyMs, nextRunAt?, lastRunAt?, lastSuccessAt?, lastSuccessVersion?, failures, problem?}}.

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
        `backup     ${s.lastBackup !== undefined ? `version ${s.lastBackup.version}, ${relativeTime(s.lastBackup.createdAt)}${s.lastBackup.anchored ? '' : ' (not anchored yet)'}` : 'none yet'}`,
        ...backupLines(s.backup)
      ].join('\n'))
    }))
}
