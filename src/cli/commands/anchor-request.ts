import { join, resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import type { AnchorRequestParams, AnchorRequestView } from '../../api/relay-routes.ts'
import { parseDuration } from '../../config/index.ts'
import { TokenimError, isTokenimError } from '../../errors.ts'
import { openIdentity } from '../../identity/index.ts'
import { exists, writeFileAtomic } from '../../util/fs.ts'
import { action, intOption } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { STORE_DIR } from '../node-access.ts'
import { readSecret } from '../password.ts'

interface AnchorRequestFlags {
  version?: string
  out?: string
  deadline: string
  force?: boolean
}

const MIN_DEADLINE_MS = 60_000
const MAX_DEADLINE_MS = 365 * 86_400_000
/** the request names no secret: readable by the relayer it is handed to */
const REQUEST_FILE_MODE = 0o644

export function registerAnchorRequest (program: Command): void {
  program.command('anchor-request')
    .description('sign a request for a relayer to anchor a pending backup version (when this wallet cannot pay the gas)')
    .option('--out <file>', 'write the request here (JSON; required)')
    .option('--version <n>', 'the pending version to sign for (default: the newest pending one)')
    .option('--deadline <duration>', 'how long the relayer may use it, e.g. 2h, 7d (at most 365d)', '7d')
    .option('--force', 'replace an existing file')
    .addHelpText('after', `
For a wallet with no ETH on a real chain (\`backup\` then exits 10, INSUFFICIENT_FUNDS): this signs
the registry's anchorWithSig authorisation (EIP-712) for a pending version and writes
{owner, version, digest, cid, deadline, chainId, registry, signature}. Anyone with a funded wallet
on that chain runs \`tokenim relay FILE\` and pays the gas; then \`tokenim backup --anchor-pending\`
here records the version as anchored.

The file holds no secret (mode 0644): the signature only lets someone anchor exactly this version
of your backup on this registry until the deadline, and only once. Needs the keystore password, or
the running daemon.

Examples:
  $ tokenim anchor-request --out anchor-request.json
  $ tokenim anchor-request --version 4 --deadline 2d --out req.json --json
  $ tokenim relay req.json --data-dir /srv/relayer      # on the relayer's machine
  $ tokenim backup --anchor-pending                     # back here, once relayed`)
    .action(action<AnchorRequestFlags>(async (ctx, _args, o) => {
      const { opts, out } = ctx
      if (o.out === undefined || o.out === '') throw new TokenimError('USAGE', '--out FILE is required')
      const file = resolvePath(o.out)
      if (o.force !== true && await exists(file)) throw new TokenimError('FILE_EXISTS', `refusing to overwrite ${file} (--force replaces it)`, { path: file })
      const version = intOption(o.version, '--version', { min: 1 })
      const ms = parseDuration(o.deadline)
      if (ms < MIN_DEADLINE_MS || ms > MAX_DEADLINE_MS) throw new TokenimError('USAGE', '--deadline must be between 1m and 365d')
      const params: AnchorRequestParams = {
        deadline: Math.floor((Date.now() + ms) / 1000),
        ...(version !== undefined ? { version } : {}),
        ...(opts.chain !== undefined ? { chain: resolvePath(opts.chain) } : {})
      }
      let view: AnchorRequestView
      const api = await readApiInfo(opts.dataDir)
      if (api !== undefined) {
        const { callApi } = await import('../../api/index.ts')
        view = await callApi<AnchorRequestView>(api, 'POST', '/v1/backup/anchor-request', params, { signal: ctx.signal })
      } else {
        const { makeAnchorRequest, requireChainProfile } = await import('../../api/relay-routes.ts')
        const profile = await requireChainProfile(opts.dataDir, params.chain)
        const identity = await openIdentity(opts.dataDir, await readSecret(opts, { purpose: 'keystore password' }))
        const { openStore, StoreErrorCode } = await import('../../store/index.ts')
        let store
        try {
          store = await openStore(join(opts.dataDir, STORE_DIR), { createIfMissing: false })
        } catch (err) {
          if (isTokenimError(err, StoreErrorCode.NOT_FOUND)) throw new TokenimError('NO_PENDING_BACKUP', 'no backup was made in this data dir yet (`tokenim backup`)')
          throw err
        }
        try {
          view = await makeAnchorRequest({ store, wallet: identity.wallet, profile }, params, { signal: ctx.signal })
        } finally {
          await store.close()
        }
      }
      for (const w of view.warnings) out.warn(`${w.message} (${w.code})`)
      await writeFileAtomic(file, JSON.stringify(view.request, null, 2) + '\n', { mode: REQUEST_FILE_MODE, exclusive: o.force !== true })
      const r = view.request
      out.result({ file, ...r }, () => [
        `wrote the anchor request for backup version ${r.version} to ${file}`,
        `owner     ${r.owner}`,
        `cid       ${r.cid}`,
        `chain     ${r.chainId}, registry ${r.registry}`,
        `valid     until ${new Date(r.deadline * 1000).toISOString()}`,
        '',
        'It holds no secret. Give it to someone with a funded wallet on that chain, who runs',
        `  tokenim relay ${file}`,
        'then run `tokenim backup --anchor-pending` here to record the version as anchored.'
      ].join('\n'))
    }))
}
