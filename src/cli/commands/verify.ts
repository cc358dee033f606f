import type { Command } from 'commander'
import type { LevelBlockstore } from 'blockstore-level'
import type { BlockGetter } from '../../backup/index.ts'
import { TokenimError, isTokenimError } from '../../errors.ts'
import { deriveKeys, identityExists, openIdentity, readIdentityPublic } from '../../identity/index.ts'
import type { BlockSource } from '../../restore/index.ts'
import { action, collect, intOption } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { openLocalBlocks } from '../node-access.ts'
import { EXIT } from '../exit-codes.ts'
import { readSecret, readSecretFile } from '../password.ts'
import { chainClient, formatProblem, openSource, printRestoreError, progressPrinter } from './restore.ts'

interface VerifyFlags {
  version?: string
  file?: string
  public?: boolean
  owner?: string
  mnemonicFile?: string
  passphraseFile?: string
  bootstrap?: string[]
  allowUnanchored?: boolean
  blockTimeout?: string
}

const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/

export function registerVerify (program: Command): void {
  program.command('verify')
    .description('check a backup against the chain without importing it; lists every problem found')
    .option('--version <n>', 'check this anchored version instead of the latest')
    .option('--file <car>', 'check this CAR file instead of fetching the backup from the network')
    .option('--public', 'no keys: check blocks, root digest vs anchor, owner and version only')
    .option('--owner <address>', 'whose backup (default: this data dir\'s identity); implies --public without --mnemonic-file')
    .option('--mnemonic-file <file>', 'derive the keys from this mnemonic instead of unlocking the keystore')
    .option('--passphrase-file <file>', 'file holding the backup passphrase, if the backup has one')
    .option('--bootstrap <multiaddr>', 'peer to fetch the backup from; repeatable (the local daemon is used too)', collect)
    .option('--allow-unanchored', 'with --file: check the bundle even when the chain cannot vouch for it')
    .option('--block-timeout <seconds>', 'how long to wait for one block from the network (default 20)')
    .addHelpText('after', `
Exit status 0 only when the backup is fully intact and is the chain's latest anchor (or --version);
3 when a problem was found (each is listed with where it is: block CID, conversation and segment).

Examples:
  $ tokenim verify                                   # own latest backup, via the local daemon / peers
  $ tokenim verify --file backup.car --json
  $ tokenim verify --public --owner 0xAbC… --file their.car`)
    .action(action<VerifyFlags>(async (ctx, _args, o) => {
      const { opts, out } = ctx
      try {
        const version = intOption(o.version, '--version', { min: 1 })
        if (o.owner !== undefined && !ADDRESS_RE.test(o.owner)) throw new TokenimError('USAGE', '--owner must be a 0x address')
        if (o.allowUnanchored === true && o.file === undefined) throw new TokenimError('USAGE', '--allow-unanchored only applies to a CAR file (--file)')
        const hasIdentity = await identityExists(opts.dataDir)
        const publicMode = o.public === true || (o.owner !== undefined && o.mnemonicFile === undefined)

        // keys (full mode) and owner
        let owner = o.owner
        let backupRootKey: Uint8Array | undefined
        if (!publicMode) {
          if (o.mnemonicFile !== undefined) {
            const keys = deriveKeys(await readSecretFile(o.mnemonicFile, 'mnemonic'))
            backupRootKey = keys.backupRootKey
            owner ??= keys.address
          } else if (hasIdentity) {
            const opened = await openIdentity(opts.dataDir, await readSecret(opts, { purpose: 'keystore password' }))
            backupRootKey = opened.keys.backupRootKey
            owner ??= opened.address
          } else {
            throw new TokenimError('NO_IDENTITY', `no identity in ${opts.dataDir}: pass --mnemonic-file, or --public with --owner ADDR`)
          }
        } else if (owner === undefined && hasIdentity) {
          owner = (await readIdentityPublic(opts.dataDir)).address
        }
        const passphrase = o.passphraseFile !== undefined ? await readSecretFile(o.passphraseFile, 'backup passphrase') : undefined

        // sources: a CAR, or the network (plus this data dir's own blocks / running daemon)
        const onProgress = progressPrinter(out)
        let local: LevelBlockstore | undefined
        const extraPeers: string[] = []
        if (o.file === undefined) {
          const api = await readApiInfo(opts.dataDir).catch(() => undefined)
          if (api !== undefined) extraPeers.push(...api.multiaddrs.filter(a => a.startsWith('/ip4/127.0.0.1/') || a.startsWith('/ip6/::1/')).slice(0, 1))
          else local = await openLocalBlocks(opts.dataDir)
        }
        const chain = await chainClient(ctx)
        // loaded on use: at start-up these would cost every command ~1.5 s
        const { backupKeySource, verifyRestoreSource } = await import('../../restore/index.ts')
        const { readHeader } = await import('../../backup/index.ts')
        let source: BlockSource | undefined
        try {
          source = await openSource(ctx, o, onProgress, local as BlockGetter | undefined, extraPeers)
          if (owner === undefined) {
            // someone else's CAR, checked publicly: whose it says it is (the chain then checks that claim)
            if (source.root === undefined) throw new TokenimError('USAGE', 'no identity here: pass --owner ADDR')
            owner = (await readHeader({ root: source.root, blockstore: source.blockstore, signal: ctx.signal })).owner
          }
          const res = await verifyRestoreSource({
            source,
            chain,
            owner,
            version,
            backupKey: backupRootKey !== undefined ? backupKeySource(backupRootKey, passphrase) : undefined,
            allowUnanchored: o.allowUnanchored,
            signal: ctx.signal,
            onProgress
          })
          for (const w of res.warnings) out.warn(w)
          out.result(res, r => [
            `${r.ok ? 'OK' : 'NOT OK'}: backup of ${r.owner}${r.version !== undefined ? ` version ${r.version}` : ''}${r.latest !== undefined ? ` (chain latest: ${r.latest})` : ''} — ${r.mode} check`,
            ...(r.cid !== undefined ? [`cid       ${r.cid}`] : []),
            ...(r.digest !== undefined ? [`digest    ${r.digest}`] : []),
            ...(r.messages !== undefined ? [`messages  ${r.messages} in ${r.conversations ?? '?'} conversations, ${r.segments} segments`] : []),
            ...(r.problems.length > 0 ? ['', `${r.problems.length} problem(s):`, ...r.problems.map(p => `  - ${formatProblem(p)}`)] : [])
          ].join('\n'))
          return res.ok ? EXIT.OK : EXIT.INTEGRITY
        } finally {
          await source?.close()
          await local?.close().catch(() => {})
          chain?.close()
        }
      } catch (err) {
        if (isTokenimError(err, 'INTERRUPTED') || ctx.signal.aborted) throw err
        return printRestoreError(out, err)
      }
    }))
}
