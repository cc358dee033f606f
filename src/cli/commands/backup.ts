import { resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import { SingleBar } from 'cli-progress'
import { callApi } from '../../api/index.ts'
import type { BackupParams } from '../../api/backup-routes.ts'
import type { AnchorPendingResult, JobProgress, RunBackupResult } from '../../backup/job/index.ts'
import { TokenimError } from '../../errors.ts'
import { readIdentityPublic } from '../../identity/index.ts'
import type { LocalNode, TokenimNode } from '../../node/index.ts'
import { action, collect, intOption } from '../command.ts'
import { EXIT } from '../exit-codes.ts'
import type { CommandContext } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { resolveNodeSettings } from '../node-config.ts'
import { readSecret, readSecretFile } from '../password.ts'

interface BackupFlags {
  out?: string
  /** commander: --no-anchor sets anchor=false */
  anchor?: boolean
  anchorPending?: boolean
  passphraseFile?: string
  keepLast?: string
  replica?: string[]
}

/** Start a node of the data dir for one command (the daemon is not running), run fn, stop it. */
export async function withLocalNode<T> (ctx: CommandContext, fn: (node: TokenimNode) => Promise<T>): Promise<T> {
  const { dataDir } = ctx.opts
  await readIdentityPublic(dataDir)
  const settings = await resolveNodeSettings(dataDir)
  const password = await readSecret(ctx.opts, { purpose: 'keystore password' })
  ctx.signal.throwIfAborted()
  // loaded here, not at start-up: libp2p, Helia and ethers cost ~1.5 s of CPU for every command
  const { createTokenimNode } = await import('../../node/index.ts')
  const node = await createTokenimNode({ dataDir, password, listen: settings.listen, bootstrap: settings.bootstrap, mdns: settings.mdns })
  try {
    await node.start()
    ctx.signal.throwIfAborted()
    return await fn(node)
  } finally {
    await node.stop()
  }
}

/**
 * Open the data dir's stores for one command without network (src/node/local.ts: no libp2p started or
 * loaded), run fn, close them: for a backup that asks no replica.
 */
export async function withOfflineNode<T> (ctx: CommandContext, fn: (node: LocalNode) => Promise<T>): Promise<T> {
  const { dataDir } = ctx.opts
  await readIdentityPublic(dataDir)
  const password = await readSecret(ctx.opts, { purpose: 'keystore password' })
  ctx.signal.throwIfAborted()
  const { openLocalNode } = await import('../../node/local.ts')
  const node = await openLocalNode({ dataDir, password })
  try {
    ctx.signal.throwIfAborted()
    return await fn(node)
  } finally {
    await node.stop()
  }
}

function progressBar (ctx: CommandContext): { onProgress?: (p: JobProgress) => void, stop: () => void } {
  if (ctx.out.json || process.stderr.isTTY !== true) return { stop: () => {} }
  const bar = new SingleBar({
    stream: process.stderr,
    format: ' {phase} [{bar}] {value}/{total} messages · {segments} segments · {mib} MiB ({newMib} MiB new)',
    hideCursor: true,
    clearOnComplete: true
  })
  let started = false
  return {
    onProgress: (p) => {
      const payload = { phase: p.phase.padEnd(9), segments: p.segments, mib: (p.bytes / 1048576).toFixed(1), newMib: (p.bytesNew / 1048576).toFixed(1) }
      if (!started) {
        bar.start(Math.max(1, p.totalMessages), 0, payload)
        started = true
      }
      bar.update(Math.min(p.messages, p.totalMessages), payload)
    },
    stop: () => { if (started) bar.stop() }
  }
}

function isAnchorPendingResult (r: RunBackupResult | AnchorPendingResult): r is AnchorPendingResult {
  return Array.isArray((r as AnchorPendingResult).versions)
}

function mib (n: number): string {
  return n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`
}

function humanBackup (r: RunBackupResult): string {
  const state = r.outcome === 'anchored' ? `anchored (tx ${r.txHash ?? '?'})` : r.outcome === 'pending' ? 'NOT ANCHORED (pending): run `tokenim backup --anchor-pending` later' : 'local only (not anchored: --no-anchor)'
  const lines = [
    `backup version ${r.version}: ${state}`,
    `cid       ${r.cid}`,
    `digest    ${r.digest}`,
    `messages  ${r.messages}`,
    `size      ${mib(r.bytesTotal)} (${mib(r.bytesNew)} new)`
  ]
  if (r.file !== undefined) lines.push(`file      ${r.file}`)
  for (const x of r.replicas) lines.push(`replica   ${x.address}: ${x.ok ? 'pinned' : `failed (${x.code ?? 'error'})`}`)
  if (r.unpinned.length > 0) lines.push(`unpinned  versions ${r.unpinned.join(', ')} (--keep-last)`)
  return lines.join('\n')
}

function humanPending (r: AnchorPendingResult): string {
  if (r.versions.length === 0) return 'no pending backup versions'
  const conflicts = r.conflicts
  return r.versions.map(v => `version ${v.version}: ${v.anchored
    ? `anchored (tx ${v.txHash ?? '?'})`
    : conflicts.includes(v.version) ? 'CONFLICT: the chain anchors another bundle under this version (ANCHOR_CONFLICT)' : `still pending (${v.error?.code ?? 'error'})`}`).join('\n')
}

export function registerBackup (program: Command): void {
  program.command('backup')
    .description('make the next backup version: encrypted, deduplicated, pinned, anchored on chain, replicated')
    .option('--out <file.car>', 'also write the bundle as a CARv1 file (atomic, mode 0600; never overwrites)')
    .option('--no-anchor', 'make a local backup that is not anchored on chain (listed as local-only)')
    .option('--anchor-pending', 'only anchor the versions that are waiting (chain was down or out of funds)')
    .option('--passphrase-file <file>', 'file holding the backup passphrase (second factor)')
    .option('--keep-last <n>', 'unpin local versions older than the newest N (the chain keeps every anchor)')
    .option('--replica <address>', 'wallet address of a replica to ask to pin it (repeatable; default: config.json "replicas")', collect)
    .addHelpText('after', `
The chain profile comes from --chain FILE, TOKENIM_CHAIN, "chain" in config.json or DATA_DIR/chain.json;
without one only --no-anchor works (NO_CHAIN_PROFILE).

Exit status: 0 when the backup is made (and anchored, unless --no-anchor; replica failures are
warnings); ${EXIT.BACKUP_PENDING} when the backup was made and pinned locally but could not be anchored
(it is recorded as pending: run \`tokenim backup --anchor-pending\` later); with --anchor-pending,
${EXIT.INTEGRITY} when the chain anchors another bundle under a pending version (ANCHOR_CONFLICT: only a
holder of this wallet's key can do that); other codes as for every command.

A wallet without funds (INSUFFICIENT_FUNDS) can have a pending version anchored by someone else:
\`tokenim anchor-request --out FILE\` here, \`tokenim relay FILE\` on a funded node, then
\`tokenim backup --anchor-pending\` here records it.

Examples:
  $ tokenim backup
  $ tokenim backup --out ~/tokenim-$(date +%F).car --keep-last 5
  $ tokenim backup --no-anchor --json
  $ tokenim backup --anchor-pending`)
    .action(action<BackupFlags>(async (ctx, _args, o) => {
      const { opts, out } = ctx
      const keepLast = intOption(o.keepLast, '--keep-last', { min: 1, max: 100_000 })
      if (o.anchorPending === true && o.anchor === false) throw new TokenimError('USAGE', '--anchor-pending and --no-anchor cannot be combined')
      if (o.anchorPending === true && o.out !== undefined) throw new TokenimError('USAGE', '--out cannot be used with --anchor-pending')
      const params: BackupParams = {
        ...(o.out !== undefined ? { out: resolvePath(o.out) } : {}),
        ...(o.anchor === false ? { noAnchor: true } : {}),
        ...(o.anchorPending === true ? { anchorPending: true } : {}),
        ...(o.passphraseFile !== undefined ? { passphrase: await readSecretFile(o.passphraseFile, 'backup passphrase') } : {}),
        ...(keepLast !== undefined ? { keepLast } : {}),
        ...(o.replica !== undefined && o.replica.length > 0 ? { replicas: o.replica } : {}),
        ...(opts.chain !== undefined ? { chain: resolvePath(opts.chain) } : {})
      }
      let result: RunBackupResult | AnchorPendingResult
      const api = await readApiInfo(opts.dataDir)
      const bar = progressBar(ctx)
      try {
        if (api !== undefined) {
          out.info('backing up through the running daemon…')
          // streamed: the daemon's progress feeds the same bar, and its keep-alives hold a long backup's connection
          result = await callApi<RunBackupResult | AnchorPendingResult, JobProgress>(api, 'POST', '/v1/backup', params, { signal: ctx.signal, onProgress: bar.onProgress ?? (() => {}) })
        } else {
          const { backupReplicas, doBackup } = await import('../../api/backup-routes.ts')
          const job = async (node: LocalNode | TokenimNode): Promise<RunBackupResult | AnchorPendingResult> => await doBackup(node, params, { signal: ctx.signal, onProgress: bar.onProgress })
          // the network is started only to ask replicas (of anchored versions): a backup is built, pinned and
          // anchored on this device alone
          const asksReplicas = params.noAnchor !== true && (await backupReplicas(opts.dataDir, params)).length > 0
          result = asksReplicas ? await withLocalNode(ctx, job) : await withOfflineNode(ctx, job)
        }
      } finally {
        bar.stop()
      }
      for (const w of result.warnings) out.warn(`${w.message} (${w.code})`)
      if (isAnchorPendingResult(result)) {
        out.result(result, humanPending)
        if (result.conflicts.length > 0) return EXIT.INTEGRITY
        return result.pending.length > 0 ? EXIT.BACKUP_PENDING : 0
      }
      out.result(result, humanBackup)
      return result.outcome === 'pending' ? EXIT.BACKUP_PENDING : 0
    }))
}
