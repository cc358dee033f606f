import { resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import type { RelayParams } from '../../api/relay-routes.ts'
import type { RelayResult } from '../../chain/index.ts'
import { openIdentity } from '../../identity/index.ts'
import { action } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { readSecret } from '../password.ts'

export function registerRelay (program: Command): void {
  program.command('relay')
    .argument('<file>', 'an anchor request made by `tokenim anchor-request`')
    .description('anchor someone else\'s backup version from their signed anchor request, paying the gas with this wallet')
    .addHelpText('after', `
Checks the request before sending anything: its chain id and registry must be those of this data
dir's chain profile (ANCHOR_REQUEST_WRONG_CHAIN), its deadline not passed (SIGNATURE_EXPIRED), its
signature must recover to its owner (INVALID_SIGNATURE: the file was altered), its version must
still be anchorable (ROLLBACK_REJECTED). A version the chain already anchors with that digest is
reported (alreadyAnchored) and nothing is sent. Then submits anchorWithSig from this wallet (it pays
the gas) and prints {owner, version, txHash, gasUsed, …}. Uses the running daemon of the data dir
when there is one, else the keystore password.

Examples:
  $ tokenim relay anchor-request.json
  $ tokenim relay req.json --data-dir /srv/relayer --chain chain.json --json`)
    .action(action(async (ctx, args) => {
      const { opts, out } = ctx
      const { readAnchorRequest } = await import('../../chain/index.ts')
      const request = await readAnchorRequest(resolvePath(args[0] ?? ''))
      const params: RelayParams = { request, ...(opts.chain !== undefined ? { chain: resolvePath(opts.chain) } : {}) }
      let r: RelayResult
      const api = await readApiInfo(opts.dataDir)
      if (api !== undefined) {
        const { callApi } = await import('../../api/index.ts')
        r = await callApi<RelayResult>(api, 'POST', '/v1/relay', params, { signal: ctx.signal })
      } else {
        const { relayRequest, requireChainProfile } = await import('../../api/relay-routes.ts')
        const profile = await requireChainProfile(opts.dataDir, params.chain)
        const identity = await openIdentity(opts.dataDir, await readSecret(opts, { purpose: 'keystore password' }))
        r = await relayRequest(identity.wallet, profile, request, { signal: ctx.signal })
      }
      out.result(r, x => x.alreadyAnchored
        ? `version ${x.version} of ${x.owner} was already anchored with this digest${x.txHash !== undefined ? ` (tx ${x.txHash})` : ''}: nothing sent`
        : [
            `anchored version ${x.version} of ${x.owner}`,
            `tx        ${x.txHash ?? '?'}`,
            `gas used  ${x.gasUsed}`,
            `cid       ${x.cid}`,
            'The owner now runs `tokenim backup --anchor-pending` to record it.'
          ].join('\n'))
    }))
}
