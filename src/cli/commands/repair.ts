import { join } from 'node:path'
import type { Command } from 'commander'
import { acquireDaemonLock } from '../../api/index.ts'
import type { DaemonLock } from '../../api/index.ts'
import type { BlockGetter, BlockStore } from '../../backup/index.ts'
import { isTokenimError } from '../../errors.ts'
import { identityExists, openIdentity } from '../../identity/index.ts'
import type { RepairProgress, RepairResult, RestoreProgress } from '../../restore/index.ts'
import { ensurePrivateDir } from '../../util/fs.ts'
import { action, collect, intOption } from '../command.ts'
import { EXIT } from '../exit-codes.ts'
import { STORE_DIR } from '../node-access.ts'
import { readSecret, readSecretFile } from '../password.ts'
import { bootstrapList, chainClient, openSource, printRestoreError, progressPrinter } from './restore.ts'

interface RepairFlags {
  file?: string
  bootstrap?: string[]
  passphraseFile?: string
  version?: string
  backup?: boolean
  allowUnanchored?: boolean
  blockTimeout?: string
  acceptLoss?: boolean
}

export function registerRepair (program: Command): void {
  program.command('repair')
    .description('repair a damaged message store, then merge the latest verified backup into it (keeps newer messages)')
    .option('--file <car>', 'merge the backup from this CAR file')
    .option('--bootstrap <multiaddr>', 'peer to fetch the backup from (a replica, another device); repeatable', collect)
    .option('--passphrase-file <file>', 'file holding the backup passphrase, if the backup has one')
    .option('--version <n>', 'merge this anchored version instead of the latest')
    .option('--no-backup', 'only repair the store; do not merge a backup')
    .option('--allow-unanchored', 'with --file: merge even if the chain cannot vouch for the backup')
    .option('--block-timeout <seconds>', 'how long to wait for one block from the network (default 20)')
    .option('--accept-loss', 'accept that messages the store lost cannot come back (no backup has them): stop reporting it')
    .addHelpText('after', `
Stop the daemon first. Steps: LevelDB's own repair of the database files; the conversation summaries
and the message id index rebuilt from the messages; then, with a chain profile (or --file), the chain's
latest backup is fetched (this data dir's own blocks, --bootstrap peers, or --file), verified in full
before anything is written, and merged: messages are added by id, nothing in the store is replaced or
removed, so messages newer than the backup are kept. Running it again changes nothing.

--json prints {ok, fixes:[{kind, count, message}], found, remaining, imported, kept, messages,
version?, cid?, digest?, anchored?, contactsAdded, attachments, warnings}: kept counts the messages that
were in the store (all kept), imported those that came back from the backup.
Exit 0 when the store is consistent afterwards; 6 when problems remain; 3 when the backup is damaged.

Examples:
  $ tokenim repair
  $ tokenim repair --no-backup
  $ tokenim repair --file backup.car --passphrase-file pass.txt --json
  $ tokenim repair --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3…`)
    .action(action<RepairFlags>(async (ctx, _args, o) => {
      const { opts, out } = ctx
      const { dataDir } = opts
      let lock: DaemonLock | undefined
      try {
        const version = intOption(o.version, '--version', { min: 1 })
        // the daemon must not run while its store is rebuilt (DAEMON_RUNNING), and must not start meanwhile
        lock = await acquireDaemonLock(dataDir)
        const { repairMessageStore, backupKeySource } = await import('../../restore/index.ts')
        const storePath = join(dataDir, STORE_DIR)
        const printer = progressPrinter(out)
        // the printer shows any phase name: repair's own (inspect, repair, check) as well as restore's
        const onProgress = (p: RepairProgress | RestoreProgress): void => { printer(p as RestoreProgress) }
        const explicit = o.file !== undefined || bootstrapList(o.bootstrap).length > 0 || version !== undefined
        const chain = o.backup === false ? undefined : await chainClient(ctx)
        const wantBackup = o.backup !== false && (chain !== undefined || o.file !== undefined) && await identityExists(dataDir)
        const skipped: string[] = []
        if (o.backup !== false && !wantBackup) {
          skipped.push(await identityExists(dataDir)
            ? 'no chain profile (--chain, TOKENIM_CHAIN, DATA_DIR/chain.json) and no --file: only the store was repaired, no backup was merged'
            : `no identity in ${dataDir}: only the store was repaired, no backup was merged`)
        }
        let res: RepairResult
        try {
          if (!wantBackup) {
            res = await repairMessageStore({ storePath, signal: ctx.signal, onProgress, acceptLoss: o.acceptLoss === true })
          } else {
            const opened = await openIdentity(dataDir, await readSecret(opts, { purpose: 'keystore password' }))
            const passphrase = o.passphraseFile !== undefined ? await readSecretFile(o.passphraseFile, 'backup passphrase') : undefined
            const blocksPath = join(dataDir, 'blocks')
            await ensurePrivateDir(blocksPath)
            const { LevelBlockstore } = await import('blockstore-level')
            const local = new LevelBlockstore(blocksPath)
            await local.open()
            try {
              const source = await openSource(ctx, o, onProgress, o.file === undefined ? local as BlockGetter : undefined)
              try {
                res = await repairMessageStore({
                  storePath,
                  signal: ctx.signal,
                  onProgress,
                  acceptLoss: o.acceptLoss === true,
                  backup: {
                    owner: opened.address,
                    backupKey: backupKeySource(opened.keys.backupRootKey, passphrase),
                    source,
                    chain,
                    version,
                    allowUnanchored: o.allowUnanchored,
                    attachments: local as unknown as BlockStore
                  }
                })
              } catch (err) {
                // nothing anchored yet and nothing asked for: the store repair stands on its own
                if (explicit || !isTokenimError(err, 'NO_BACKUP')) throw err
                skipped.push(`${err.message}: only the store was repaired`)
                res = await repairMessageStore({ storePath, signal: ctx.signal, onProgress, acceptLoss: o.acceptLoss === true })
              } finally {
                await source.close()
              }
            } finally {
              await local.close().catch(() => {})
            }
          }
        } finally {
          chain?.close()
        }
        res.warnings.push(...skipped)
        for (const w of res.warnings) out.warn(w)
        out.result(res, r => [
          r.ok ? 'the message store is consistent' : `the message store still has ${r.remaining.length} problem(s):`,
          ...(r.ok ? [] : r.remaining.slice(0, 10).map(p => `  - ${p.message}`)),
          `found      ${r.found.length === 0 ? 'no index problems' : `${r.found.length} problem(s)`}`,
          `fixed      ${r.fixes.length === 0 ? 'nothing needed fixing' : r.fixes.map(f => f.message).join('\n           ')}`,
          ...(r.version !== undefined ? [`backup     version ${r.version}${r.anchored === true ? ' (anchored on chain)' : ' (UNANCHORED)'} ${r.cid ?? ''}`] : []),
          `imported   ${r.imported} message(s) from the backup`,
          `kept       ${r.kept} message(s) already in the store (newer ones included)`,
          `messages   ${r.messages} in all`
        ].join('\n'))
        return res.ok ? EXIT.OK : EXIT.STATE
      } catch (err) {
        if (isTokenimError(err, 'INTERRUPTED') || ctx.signal.aborted) throw err
        return printRestoreError(out, err)
      } finally {
        await lock?.release().catch(() => {})
      }
    }))
}
