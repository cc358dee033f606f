import { resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import { callApi } from '../../api/index.ts'
import type { BackupListEntry, ListBackupsResult } from '../../backup/job/index.ts'
import { action } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { withLocalNode } from './backup.ts'

const LABEL: Record<BackupListEntry['status'], string> = {
  anchored: 'anchored',
  pending: 'UNANCHORED (pending)',
  'local-only': 'local only (not anchored)',
  superseded: 'UNANCHORED (superseded)',
  'chain-only': 'on chain only',
  conflict: 'CONFLICT with chain'
}

function human (list: BackupListEntry[]): string {
  if (list.length === 0) return 'no backups yet (tokenim backup)'
  return list.map(b => {
    const when = b.createdAt ?? b.anchoredAt
    const reps = b.replicas.filter(r => r.ok).map(r => r.address)
    return [
      `v${b.version}  ${LABEL[b.status]}${b.pinned ? '  pinned here' : ''}${when !== undefined ? `  ${new Date(when).toISOString()}` : ''}${b.messages !== undefined ? `  ${b.messages} messages` : ''}`,
      `     cid ${b.cid}`,
      ...(b.txHash !== undefined ? [`     tx  ${b.txHash}`] : []),
      ...(reps.length > 0 ? [`     replicas ${reps.join(', ')}`] : []),
      ...(b.problem !== undefined ? [`     problem: ${b.problem.message} (${b.problem.code})`] : [])
    ].join('\n')
  }).join('\n')
}

export function registerBackups (program: Command): void {
  program.command('backups')
    .description('list backup versions: the chain\'s anchors merged with the local index, pins and replica receipts')
    .addHelpText('after', `
--json prints [{version, cid, digest, txHash, anchored, status, pinned, replicas, createdAt, messages, …}];
status is anchored | pending | local-only | superseded | chain-only | conflict.
Without a chain profile (or with the chain unreachable: a warning) only the local index is listed.`)
    .action(action(async (ctx) => {
      const { opts, out } = ctx
      const chain = opts.chain !== undefined ? resolvePath(opts.chain) : undefined
      const api = await readApiInfo(opts.dataDir)
      const result: ListBackupsResult = api !== undefined
        ? await callApi<ListBackupsResult>(api, 'GET', `/v1/backups${chain !== undefined ? `?chain=${encodeURIComponent(chain)}` : ''}`, undefined, { signal: ctx.signal })
        : await withLocalNode(ctx, async (node) => {
          const { doListBackups } = await import('../../api/backup-routes.ts')
          return await doListBackups(node, { chain }, { signal: ctx.signal })
        })
      if (result.chainError !== undefined) out.warn(`the chain could not be read, listing local versions only: ${result.chainError.message} (${result.chainError.code})`)
      out.result(result.backups, human)
    }))
}
