/**
 * Relayed anchoring, shared by the daemon's control API and the in-process CLI path:
 *
 *   POST /v1/backup/anchor-request {deadline, version?, chain?} → {request: AnchorRequest, warnings}
 *        the owner (`tokenim anchor-request`): a signed request for a pending backup version
 *   POST /v1/relay {request, chain?}                            → RelayResult
 *        the relayer (`tokenim relay FILE`): check the request and anchor it, paying the gas
 *
 * Back on the owner's node, `backup --anchor-pending` finds the version anchored with its digest and
 * records it as anchored (src/backup/job/run.ts), so nothing is anchored twice.
 */
import type { JobWarning } from '../backup/job/index.ts'
import { RegistryClient, createAnchorRequest, parseAnchorRequest, relayAnchorRequest } from '../chain/index.ts'
import type { AnchorRequest, ChainProfile, RelayResult, TypedDataSigner } from '../chain/index.ts'
import { TokenimError, isTokenimError } from '../errors.ts'
import type { TokenimNode } from '../node/index.ts'
import type { Store } from '../store/index.ts'
import { requireChainProfile } from './chain-profile.ts'
import { apiError, ApiErrorCode } from './errors.ts'
import type { Routes } from './server.ts'
import { parseObject } from './validate.ts'

/** How long the owner's side waits for the chain when it checks a version is still anchorable. */
const CHECK_TIMEOUT_MS = 5_000

export interface AnchorRequestParams {
  /** unix seconds after which the signature is refused */
  deadline: number
  /** the pending version to sign for (default: the newest pending one) */
  version?: number
  /** chain profile path (--chain) */
  chain?: string
}

export interface AnchorRequestView {
  request: AnchorRequest
  warnings: JobWarning[]
}

export interface RelayParams {
  request: AnchorRequest
  /** chain profile path (--chain) */
  chain?: string
}

export { requireChainProfile }

/**
 * Codes of the owner's side (declared with the backup job's codes, src/backup/job/errors.ts; written
 * out here so this module loads no backup code)
 */
const NO_PENDING_BACKUP = 'NO_PENDING_BACKUP'
const ALREADY_ANCHORED = 'ALREADY_ANCHORED'
const ANCHOR_SUPERSEDED = 'ANCHOR_SUPERSEDED'

/**
 * Sign a relay request for a pending version (the newest, or `version`). When the chain can be read
 * it is asked first: a version it already anchors with this digest is ALREADY_ANCHORED (record it
 * with `backup --anchor-pending`), one it can no longer take is ANCHOR_SUPERSEDED; when it cannot
 * be read the request is made anyway, with a warning (the relayer checks again).
 */
export async function makeAnchorRequest (
  deps: { store: Pick<Store, 'backups'>, wallet: TypedDataSigner & { address: string }, profile: ChainProfile },
  p: AnchorRequestParams,
  opts: { signal?: AbortSignal, chainTimeoutMs?: number } = {}
): Promise<AnchorRequestView> {
  const pending = (await deps.store.backups()).filter(r => r.pending === true && !r.anchored).sort((a, b) => b.version - a.version)
  const rec = p.version === undefined ? pending[0] : pending.find(r => r.version === p.version)
  if (rec === undefined) {
    throw new TokenimError(NO_PENDING_BACKUP, p.version === undefined
      ? 'no backup version is waiting to be anchored (see `tokenim backups`; `tokenim backup` makes one)'
      : `backup version ${p.version} is not waiting to be anchored${pending.length > 0 ? ` (pending: ${pending.map(r => r.version).join(', ')})` : ''}`,
    { ...(p.version !== undefined ? { version: p.version } : {}) })
  }
  const warnings: JobWarning[] = []
  const owner = deps.wallet.address
  const reader = new RegistryClient(deps.profile, undefined, { readTimeoutMs: opts.chainTimeoutMs ?? CHECK_TIMEOUT_MS })
  try {
    const call = { signal: opts.signal }
    const [onChain, latest] = await Promise.all([reader.digestOf(owner, rec.version, call), reader.latest(owner, call)])
    if (onChain !== undefined && onChain.toLowerCase() === rec.digest.toLowerCase()) {
      throw new TokenimError(ALREADY_ANCHORED,
        `backup version ${rec.version} is already anchored on chain (relayed?): run \`tokenim backup --anchor-pending\` to record it`, { version: rec.version })
    }
    if (onChain !== undefined || latest.version >= rec.version) {
      throw new TokenimError(ANCHOR_SUPERSEDED,
        `the chain already has version ${latest.version} for ${owner}${onChain !== undefined ? ' (with another bundle under this version)' : ''}; local version ${rec.version} can no longer be anchored: run \`tokenim backup\` for a new one`,
        { version: rec.version, latest: latest.version })
    }
  } catch (err) {
    if (isTokenimError(err, ALREADY_ANCHORED) || isTokenimError(err, ANCHOR_SUPERSEDED) || opts.signal?.aborted === true) throw err
    const e = isTokenimError(err) ? err : new TokenimError('CHAIN_ERROR', (err as Error).message)
    warnings.push({ code: e.code, message: `the chain could not be checked (${e.message}); the request is made anyway and the relayer checks it` })
  } finally {
    reader.close()
  }
  const request = await createAnchorRequest(deps.profile, deps.wallet, { version: rec.version, digest: rec.digest, deadline: p.deadline })
  return { request, warnings }
}

/** Relay a request with `wallet` paying the gas, on the chain of `profile` (see relayAnchorRequest). */
export async function relayRequest (wallet: RelayWallet, profile: ChainProfile, request: AnchorRequest, opts: { signal?: AbortSignal } = {}): Promise<RelayResult> {
  const client = new RegistryClient(profile, wallet)
  try {
    return await relayAnchorRequest(client, request, { signal: opts.signal })
  } finally {
    client.close()
  }
}

type RelayWallet = ConstructorParameters<typeof RegistryClient>[1]

function parseAnchorRequestParams (body: unknown): AnchorRequestParams {
  const b = parseObject(body)
  for (const k of Object.keys(b)) if (!['deadline', 'version', 'chain'].includes(k)) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `unknown field ${k}`, { field: k })
  if (typeof b.deadline !== 'number' || !Number.isSafeInteger(b.deadline) || b.deadline < 0) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'deadline must be unix seconds', { field: 'deadline' })
  const p: AnchorRequestParams = { deadline: b.deadline }
  if (b.version !== undefined && b.version !== null) {
    if (typeof b.version !== 'number' || !Number.isSafeInteger(b.version) || b.version < 1) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'version must be a positive integer', { field: 'version' })
    p.version = b.version
  }
  if (b.chain !== undefined && b.chain !== null) p.chain = parseChainPath(b.chain)
  return p
}

function parseRelayParams (body: unknown): RelayParams {
  const b = parseObject(body)
  for (const k of Object.keys(b)) if (!['request', 'chain'].includes(k)) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `unknown field ${k}`, { field: k })
  return { request: parseAnchorRequest(b.request), ...(b.chain !== undefined && b.chain !== null ? { chain: parseChainPath(b.chain) } : {}) }
}

function parseChainPath (v: unknown): string {
  if (typeof v !== 'string' || v === '' || v.length > 4096) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'chain must be a path', { field: 'chain' })
  return v
}

/** The routes, for createRoutes(node, { extend: { …, ...relayRoutes(node) } }). */
export function relayRoutes (node: TokenimNode): Routes {
  return {
    'POST /v1/backup/anchor-request': async ({ body, signal }) => {
      const p = parseAnchorRequestParams(body)
      const profile = await requireChainProfile(node.dataDir, p.chain)
      return await makeAnchorRequest({ store: node.store, wallet: node.identity.wallet, profile }, p, { signal })
    },
    'POST /v1/relay': async ({ body, signal }) => {
      const p = parseRelayParams(body)
      const profile = await requireChainProfile(node.dataDir, p.chain)
      return await relayRequest(node.identity.wallet, profile, p.request, { signal })
    }
  }
}
