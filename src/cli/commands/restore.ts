import { join } from 'node:path'
import type { Command } from 'commander'
import type { RegistryClient } from '../../chain/index.ts'
import { isTokenimError, TokenimError } from '../../errors.ts'
import type { BlockSource, RestoreProblem, RestoreProgress } from '../../restore/index.ts'
import type { BlockGetter } from '../../backup/index.ts'
import { action, collect, intOption } from '../command.ts'
import type { CommandContext } from '../command.ts'
import { fastKdfForTests } from '../env.ts'
import { STORE_DIR } from '../node-access.ts'
import { EXIT, exitCodeFor } from '../exit-codes.ts'
import type { Output } from '../output.ts'
import { readSecret, readSecretFile } from '../password.ts'

interface RestoreFlags {
  mnemonicFile?: string
  version?: string
  file?: string
  bootstrap?: string[]
  passphraseFile?: string
  merge?: boolean
  allowUnanchored?: boolean
  salvage?: boolean
  blockTimeout?: string
}

/**
 * Print an error; one that carries `problems` (a damaged backup) lists them: in the JSON error document
 * (`{"error":{code,message,problems}}`) or one per line on stderr.
 */
export function printRestoreError (out: Output, err: unknown): number {
  const problems = isTokenimError(err) && Array.isArray(err.info.problems) ? err.info.problems as RestoreProblem[] : undefined
  if (problems === undefined || !isTokenimError(err)) {
    out.error(err)
    return exitCodeFor(err)
  }
  if (out.json) {
    process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message, problems } }, null, 2) + '\n')
  } else {
    process.stderr.write(`tokenim: ${err.message} (${err.code})\n`)
    for (const p of problems) process.stderr.write(`  - ${formatProblem(p)}\n`)
  }
  return exitCodeFor(err)
}

export function formatProblem (p: RestoreProblem): string {
  const where: string[] = []
  if (p.conversation !== undefined) where.push(`conversation ${p.conversation}`)
  if (p.segment !== undefined) where.push(`segment ${p.segment}`)
  if (p.block !== undefined && p.conversation === undefined) where.push(p.block)
  if (p.cid !== undefined) where.push(p.cid)
  if (p.messages !== undefined) where.push(`${p.messages} messages lost`)
  return `${p.code}: ${p.message}${where.length > 0 ? ` [${where.join(', ')}]` : ''}`
}

/** --bootstrap flags, else TOKENIM_BOOTSTRAP (comma-separated). */
export function bootstrapList (flags: string[] | undefined): string[] {
  if (flags !== undefined && flags.length > 0) return flags
  const env = process.env.TOKENIM_BOOTSTRAP
  return env === undefined || env === '' ? [] : env.split(',').map(s => s.trim()).filter(s => s !== '')
}

/** The chain client for the command's chain profile, or undefined when none applies. */
export async function chainClient (ctx: CommandContext): Promise<RegistryClient | undefined> {
  // the chain, restore and p2p modules load on use: at start-up they would cost every command ~1.5 s
  const { RegistryClient, resolveChainProfile } = await import('../../chain/index.ts')
  const profile = await resolveChainProfile({ chain: ctx.opts.chain, dataDir: ctx.opts.dataDir })
  return profile === undefined ? undefined : new RegistryClient(profile)
}

/** Progress lines on stderr (people only), at most one per phase change or every 2 s. */
export function progressPrinter (out: Output): (p: RestoreProgress) => void {
  let lastPhase = ''
  let lastAt = 0
  return (p) => {
    const now = Date.now()
    if (p.phase === lastPhase && now - lastAt < 2000) return
    lastPhase = p.phase
    lastAt = now
    const parts: string[] = [p.phase]
    if (p.peers !== undefined) parts.push(`${p.peers} peer(s)`)
    if (p.blocks !== undefined) parts.push(`${p.blocks}${p.totalBlocks !== undefined ? `/${p.totalBlocks}` : ''} blocks`)
    if (p.segments !== undefined) parts.push(`${p.segments}${p.totalSegments !== undefined ? `/${p.totalSegments}` : ''} segments`)
    if (p.messages !== undefined) parts.push(`${p.messages} messages`)
    if (p.problems !== undefined && p.problems > 0) parts.push(`${p.problems} problem(s)`)
    out.info(parts.join(' · '))
  }
}

export interface SourceFlags { file?: string, bootstrap?: string[], blockTimeout?: string }

/** A CAR file (--file) or a temporary network node dialling --bootstrap peers. */
export async function openSource (ctx: CommandContext, o: SourceFlags, onProgress: (p: RestoreProgress) => void, local?: BlockGetter, extraPeers: string[] = []): Promise<BlockSource> {
  const { openCarSource, openNetworkSource } = await import('../../restore/index.ts')
  if (o.file !== undefined) return await openCarSource(o.file, { signal: ctx.signal })
  const timeout = intOption(o.blockTimeout, '--block-timeout', { min: 1, max: 3600 })
  return await openNetworkSource({
    bootstrap: [...bootstrapList(o.bootstrap), ...extraPeers],
    local,
    blockTimeoutMs: timeout !== undefined ? timeout * 1000 : undefined,
    signal: ctx.signal,
    onProgress: p => { onProgress({ phase: p.phase, peers: p.peers, blocks: p.blocks, totalBlocks: p.totalBlocks }) }
  })
}

export function registerRestore (program: Command): void {
  program.command('restore')
    .description('rebuild an empty data dir from the latest anchored backup, using the mnemonic (and backup passphrase)')
    .option('--mnemonic-file <file>', 'file holding the mnemonic (required)')
    .option('--version <n>', 'restore this anchored version instead of the latest (deliberate rollback)')
    .option('--file <car>', 'read the backup from this CAR file instead of the network')
    .option('--bootstrap <multiaddr>', 'peer to fetch the backup from (a replica, another device); repeatable', collect)
    .option('--passphrase-file <file>', 'file holding the backup passphrase, if the backup has one')
    .option('--merge', 'add the backup to a non-empty data dir of the same identity (keeps what is there)')
    .option('--allow-unanchored', 'with --file: restore even if the chain cannot vouch for the backup (unreachable, never anchored)')
    .option('--salvage', 'from a damaged backup, import every segment that verifies and list what was lost')
    .option('--block-timeout <seconds>', 'how long to wait for one block from the network (default 20)')
    .addHelpText('after', `
Nothing counts as restored until the whole backup has verified: every block against its hash, the root
against the chain's anchor for the mnemonic's address, the version against the chain's latest (an older
backup is a rollback and is refused unless you ask for it with --version), every segment decrypted and
counted. Into an empty data dir the messages are staged as their segments verify (one pass) and removed
again, leaving the dir as it was, if the backup turns out damaged.
The new keystore is encrypted with the password (--password-file / TOKENIM_PASSWORD / prompt); a new
device key is made; the device record is published when the node next starts (tokenim daemon).
An interrupted restore (even killed) is continued by running the same command again.

Examples:
  $ tokenim restore --mnemonic-file words.txt --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3…
  $ tokenim restore --mnemonic-file words.txt --file backup.car --passphrase-file pass.txt --json
  $ tokenim restore --mnemonic-file words.txt --file old.car --version 2      # deliberately older
  $ tokenim restore --mnemonic-file words.txt --file damaged.car --salvage`)
    .action(action<RestoreFlags>(async (ctx, _args, o) => {
      const { opts, out } = ctx
      try {
        if (o.mnemonicFile === undefined) throw new TokenimError('USAGE', 'restore needs --mnemonic-file FILE (the mnemonic of the identity to restore)')
        if (o.allowUnanchored === true && o.file === undefined) throw new TokenimError('USAGE', '--allow-unanchored only applies to a CAR file (--file)')
        const version = intOption(o.version, '--version', { min: 1 })
        const phrase = await readSecretFile(o.mnemonicFile, 'mnemonic')
        const passphrase = o.passphraseFile !== undefined ? await readSecretFile(o.passphraseFile, 'backup passphrase') : undefined
        const password = await readSecret(opts, { purpose: 'new keystore password', confirm: true })
        const onProgress = progressPrinter(out)
        const chain = await chainClient(ctx)
        try {
          const source = await openSource(ctx, o, onProgress)
          try {
            const { restoreBackup } = await import('../../restore/index.ts')
            const res = await restoreBackup({
              dataDir: opts.dataDir,
              storePath: join(opts.dataDir, STORE_DIR),
              phrase,
              passphrase,
              password,
              scryptN: fastKdfForTests().scryptN,
              source,
              chain,
              version,
              allowUnanchored: o.allowUnanchored,
              merge: o.merge,
              salvage: o.salvage,
              signal: ctx.signal,
              onProgress
            })
            for (const w of res.warnings) out.warn(w)
            if (!res.anchored) out.warn('this backup was NOT checked against the chain (--allow-unanchored)')
            out.result(res, r => [
              `${r.ok ? 'restored' : 'partly restored (salvage)'} ${r.owner} from backup version ${r.version}${r.anchored ? ' (anchored on chain)' : ' (UNANCHORED)'}`,
              `cid            ${r.cid}`,
              `messages       ${r.messages} (${r.imported} written now${r.resumed ? ', continued an interrupted restore' : ''})`,
              `conversations  ${r.conversations}`,
              `contacts       ${r.contacts}`,
              ...(r.lost !== undefined && r.lost.segments > 0 ? ['', `LOST: ${r.lost.messages} messages in ${r.lost.segments} segment(s):`, ...r.problems.map(p => `  - ${formatProblem(p)}`)] : []),
              '',
              'Start the node (tokenim daemon) to publish this device\'s record.'
            ].join('\n'))
            return res.ok ? EXIT.OK : EXIT.INTEGRITY
          } finally {
            await source.close()
          }
        } finally {
          chain?.close()
        }
      } catch (err) {
        if (isTokenimError(err, 'INTERRUPTED') || ctx.signal.aborted) throw err
        return printRestoreError(out, err)
      }
    }))
}
