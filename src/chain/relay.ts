/**
 * Relayed anchoring: an owner whose wallet cannot pay for gas signs an anchor request (EIP-712, the
 * registry's `Anchor` type) and hands it to a relayer, who checks it and submits it with
 * `anchorWithSig`, paying the gas. The request is a small JSON document:
 *
 *   { owner, version, digest, cid, deadline, chainId, registry, signature }
 *
 * `cid` is derived from `digest` (a convenience for people; a request whose cid does not match is
 * refused). Nothing in it is secret: the signature only authorises anchoring that one (version,
 * digest) for that owner on that registry until the deadline, and the registry's strictly
 * increasing versions make it usable once.
 *
 * @example
 * ```ts
 * const request = await createAnchorRequest(profile, ownerWallet, { version: 4, digest, deadline })
 * // … the relayer, with its own funded wallet:
 * const relayer = new RegistryClient(profile, relayerWallet)
 * const r = await relayAnchorRequest(relayer, parseAnchorRequest(request))
 * ```
 */
import { readFile } from 'node:fs/promises'
import { getAddress, isAddress, verifyTypedData } from 'ethers'
import { z } from 'zod'
import { TokenimError } from '../errors.ts'
import { anchorTypedData, cidFromDigest } from './client.ts'
import type { ChainCallOptions, RegistryClient, TypedDataSigner } from './client.ts'
import { ChainErrorCode } from './errors.ts'
import type { ChainProfile } from './profile.ts'

/** A signed authorisation for a relayer to anchor (owner, version, digest) on one registry. */
export interface AnchorRequest {
  owner: string
  version: number
  /** 0x-prefixed sha2-256 digest of the backup's root block */
  digest: string
  /** the root CID, derived from the digest */
  cid: string
  /** unix seconds; the registry refuses the signature after it */
  deadline: number
  chainId: number
  registry: string
  /** the owner's EIP-712 signature (65 bytes, hex) */
  signature: string
}

/** What a relay did. `alreadyAnchored`: the chain had this version with this digest (nothing sent, no gas). */
export interface RelayResult {
  owner: string
  version: number
  digest: string
  cid: string
  txHash?: string
  gasUsed: number
  blockNumber?: number
  relayer?: string
  alreadyAnchored: boolean
}

const HEX32 = /^0x[0-9a-fA-F]{64}$/
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/

const requestSchema = z.object({
  owner: z.string().refine(s => isAddress(s), 'must be a 0x address'),
  version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  digest: z.string().regex(HEX32, 'must be 32 bytes of 0x-prefixed hex'),
  cid: z.string().min(1).max(200),
  deadline: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  chainId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  registry: z.string().refine(s => isAddress(s), 'must be a 0x address'),
  signature: z.string().regex(SIGNATURE, 'must be 65 bytes of 0x-prefixed hex')
})

function invalid (source: string, reason: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(ChainErrorCode.INVALID_ANCHOR_REQUEST, `${source} is not a valid anchor request: ${reason}`, { source, ...info })
}

/**
 * Sign an anchor request as the owner (`wallet` must be the owner's; needs no RPC).
 * `deadline` is unix seconds.
 */
export async function createAnchorRequest (
  profile: Pick<ChainProfile, 'chainId' | 'registry'>,
  wallet: TypedDataSigner & { address: string },
  o: { version: number, digest: string, deadline: number }
): Promise<AnchorRequest> {
  const { domain, types, value } = anchorTypedData(profile, wallet.address, o.version, o.digest, o.deadline)
  const signature = await wallet.signTypedData(domain, types, value)
  return {
    owner: value.owner,
    version: o.version,
    digest: value.digest.toLowerCase(),
    cid: cidFromDigest(value.digest),
    deadline: o.deadline,
    chainId: profile.chainId,
    registry: getAddress(profile.registry),
    signature
  }
}

/**
 * Validate the shape of a parsed request (INVALID_ANCHOR_REQUEST naming the field). The signature
 * is checked against the relayer's profile by `checkAnchorRequest`.
 */
export function parseAnchorRequest (value: unknown, source = 'the anchor request'): AnchorRequest {
  const r = requestSchema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    const field = issue?.path.map(String).join('.') ?? ''
    throw invalid(source, `${field !== '' ? `field "${field}" ` : ''}${issue?.message ?? 'is malformed'}`, { field })
  }
  const req: AnchorRequest = { ...r.data, owner: getAddress(r.data.owner), registry: getAddress(r.data.registry), digest: r.data.digest.toLowerCase() }
  if (/^0x0{64}$/.test(req.digest)) throw invalid(source, 'the digest is zero', { field: 'digest' })
  if (req.cid !== cidFromDigest(req.digest)) {
    throw invalid(source, `its cid ${req.cid} is not the one its digest gives (${cidFromDigest(req.digest)}): the file was altered`, { field: 'cid' })
  }
  return req
}

/** Read and validate a request file (FILE_NOT_FOUND, INVALID_ANCHOR_REQUEST). */
export async function readAnchorRequest (path: string): Promise<AnchorRequest> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new TokenimError('FILE_NOT_FOUND', `${path} does not exist`, { path }, { cause: err })
    throw new TokenimError('FILE_NOT_READABLE', `cannot read ${path} (${code ?? 'error'})`, { path }, { cause: err })
  }
  if (text.length > 64 * 1024) throw invalid(path, 'it is larger than 64 KiB')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw invalid(path, 'it is not JSON')
  }
  return parseAnchorRequest(json, path)
}

/**
 * Check a request before spending gas on it: made for this chain and registry
 * (ANCHOR_REQUEST_WRONG_CHAIN), not expired (SIGNATURE_EXPIRED; the registry refuses it once the
 * block time is past the deadline), signed by its owner (INVALID_SIGNATURE: any changed field
 * breaks the signature).
 */
export function checkAnchorRequest (req: AnchorRequest, profile: Pick<ChainProfile, 'chainId' | 'registry'>, nowSeconds = Math.floor(Date.now() / 1000)): void {
  const registry = getAddress(profile.registry)
  if (req.chainId !== profile.chainId || req.registry !== registry) {
    throw new TokenimError(ChainErrorCode.ANCHOR_REQUEST_WRONG_CHAIN,
      `the anchor request is for registry ${req.registry} on chain ${req.chainId}, this chain profile is registry ${registry} on chain ${profile.chainId}: relay it with the owner's chain profile`,
      { expected: { chainId: profile.chainId, registry }, actual: { chainId: req.chainId, registry: req.registry } })
  }
  if (nowSeconds > req.deadline) {
    throw new TokenimError(ChainErrorCode.SIGNATURE_EXPIRED,
      `the anchor request expired at ${new Date(req.deadline * 1000).toISOString()}: ask the owner for a new one (tokenim anchor-request)`, { deadline: req.deadline })
  }
  const { domain, types, value } = anchorTypedData(profile, req.owner, req.version, req.digest, req.deadline)
  let signer: string
  try {
    signer = verifyTypedData(domain, types, value, req.signature)
  } catch (err) {
    throw new TokenimError(ChainErrorCode.INVALID_SIGNATURE, 'the anchor request\'s signature is malformed', {}, { cause: err })
  }
  if (signer !== req.owner) {
    throw new TokenimError(ChainErrorCode.INVALID_SIGNATURE,
      `the anchor request is not signed by its owner ${req.owner} (the signature recovers to ${signer}): the file was altered or forged`, { owner: req.owner, signer })
  }
}

/**
 * Relay a request with `client` (whose signer pays the gas): check it (checkAnchorRequest), then
 * read the chain: the same digest already anchored for that version → `alreadyAnchored` (nothing
 * sent); another digest there, or a newer version → ROLLBACK_REJECTED (the request can no longer
 * be used); else `anchorWithSig`. On dev chains the relayer's wallet is topped up first.
 */
export async function relayAnchorRequest (client: RegistryClient, req: AnchorRequest, opts: ChainCallOptions & { nowSeconds?: number } = {}): Promise<RelayResult> {
  checkAnchorRequest(req, client.profile, opts.nowSeconds)
  const call = { signal: opts.signal }
  const base = { owner: req.owner, version: req.version, digest: req.digest, cid: req.cid }
  const [onChain, latest] = await Promise.all([client.digestOf(req.owner, req.version, call), client.latest(req.owner, call)])
  if (onChain !== undefined) {
    if (onChain.toLowerCase() !== req.digest) {
      throw new TokenimError(ChainErrorCode.ROLLBACK_REJECTED,
        `the chain already anchors another bundle (${onChain}) as version ${req.version} of ${req.owner}: this request can no longer be used`,
        { latest: latest.version, given: req.version, anchored: onChain })
    }
    const event = (await client.history(req.owner, call)).find(e => e.version === req.version)
    return { ...base, ...(event !== undefined ? { txHash: event.txHash, blockNumber: event.blockNumber } : {}), gasUsed: 0, alreadyAnchored: true }
  }
  if (latest.version >= req.version) {
    throw new TokenimError(ChainErrorCode.ROLLBACK_REJECTED,
      `version ${req.version} is not newer than ${req.owner}'s anchored version ${latest.version}: this request can no longer be used`,
      { latest: latest.version, given: req.version })
  }
  const relayer = client.signer === undefined ? undefined : await client.signer.getAddress()
  if (relayer !== undefined) await client.ensureFunds(relayer, call)
  let r
  try {
    r = await client.anchorWithSig(req.owner, req.version, req.digest, req.deadline, req.signature, { ...call, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) })
  } catch (err) {
    if (err instanceof TokenimError && err.code === ChainErrorCode.INSUFFICIENT_FUNDS) {
      throw new TokenimError(ChainErrorCode.INSUFFICIENT_FUNDS, `the relaying wallet ${relayer ?? ''} cannot pay the gas: fund it, or relay from a funded one`, { relayer }, { cause: err })
    }
    throw err
  }
  return { ...base, txHash: r.txHash, gasUsed: Number(r.gasUsed), blockNumber: r.blockNumber, ...(relayer !== undefined ? { relayer } : {}), alreadyAnchored: false }
}
