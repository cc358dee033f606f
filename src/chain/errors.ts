import { isError } from 'ethers'
import { TokenimError } from '../errors.ts'

/**
 * Error codes the chain domain raises. They are part of the public contract (the CLI prints them).
 *
 * - CHAIN_UNREACHABLE: the RPC endpoint cannot be reached (info.url).
 * - CHAIN_TIMEOUT: a chain call did not finish within its timeout (info.what, info.timeoutMs; for a
 *   send that was already broadcast, info.txHash: it may still be mined).
 * - WRONG_CHAIN_ID: the RPC serves another chain than the profile says (info.expected, info.actual).
 * - NO_REGISTRY: there is no contract code at the profile's registry address.
 * - INSUFFICIENT_FUNDS: the sending wallet cannot pay the gas (use a relayer: anchorWithSig).
 * - ROLLBACK_REJECTED: the version is not greater than the owner's latest (info.latest, info.given).
 * - INVALID_DIGEST: the digest is not 32 bytes, or is zero.
 * - SIGNATURE_EXPIRED / INVALID_SIGNATURE: a relayed anchor's signature is too old / not the owner's.
 * - INVALID_ANCHOR_REQUEST: an anchor request file (relay.ts) is malformed or altered (info.field).
 * - ANCHOR_REQUEST_WRONG_CHAIN: an anchor request names another chain id or registry than the
 *   relayer's profile (info.expected, info.actual).
 * - INVALID_ARGUMENT: any other malformed input (address, version, deadline).
 * - NO_SIGNER: a send was asked of a client constructed without a signer.
 * - INVALID_CHAIN_PROFILE / CHAIN_PROFILE_NOT_FOUND: the chain profile file is malformed / missing.
 * - CHAIN_ABORTED: the caller's AbortSignal fired.
 * - CHAIN_ERROR: any other failure of the RPC or the transaction (info.reason when known).
 */
export const ChainErrorCode = {
  UNREACHABLE: 'CHAIN_UNREACHABLE',
  TIMEOUT: 'CHAIN_TIMEOUT',
  WRONG_CHAIN_ID: 'WRONG_CHAIN_ID',
  NO_REGISTRY: 'NO_REGISTRY',
  INSUFFICIENT_FUNDS: 'INSUFFICIENT_FUNDS',
  ROLLBACK_REJECTED: 'ROLLBACK_REJECTED',
  INVALID_DIGEST: 'INVALID_DIGEST',
  SIGNATURE_EXPIRED: 'SIGNATURE_EXPIRED',
  INVALID_SIGNATURE: 'INVALID_SIGNATURE',
  INVALID_ANCHOR_REQUEST: 'INVALID_ANCHOR_REQUEST',
  ANCHOR_REQUEST_WRONG_CHAIN: 'ANCHOR_REQUEST_WRONG_CHAIN',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NO_SIGNER: 'NO_SIGNER',
  INVALID_CHAIN_PROFILE: 'INVALID_CHAIN_PROFILE',
  CHAIN_PROFILE_NOT_FOUND: 'CHAIN_PROFILE_NOT_FOUND',
  ABORTED: 'CHAIN_ABORTED',
  ERROR: 'CHAIN_ERROR'
} as const

export type ChainErrorCode = typeof ChainErrorCode[keyof typeof ChainErrorCode]

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE',
  'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED'
])

/** Context for translating a library error. */
export interface ChainErrorContext {
  url: string
  what: string
}

function nodeCode (err: unknown): string | undefined {
  for (let e = err as { code?: unknown, cause?: unknown } | undefined, i = 0; e != null && i < 5; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code
  }
  return undefined
}

/** True for errors worth retrying on a read (the endpoint could not be reached). */
export function isTransient (err: unknown): boolean {
  return err instanceof TokenimError && err.code === ChainErrorCode.UNREACHABLE
}

export function unreachable (url: string, cause?: unknown, detail?: string): TokenimError {
  return new TokenimError(ChainErrorCode.UNREACHABLE,
    `chain RPC ${url} is unreachable${detail !== undefined ? ` (${detail})` : ''}`, { url }, { cause })
}

/**
 * Translate an ethers (or node network) error into a TokenimError. Contract reverts are decoded by
 * the caller's ABI (ethers puts them in `err.revert`) into ROLLBACK_REJECTED, INVALID_DIGEST,
 * SIGNATURE_EXPIRED and INVALID_SIGNATURE.
 */
export function toChainError (err: unknown, ctx: ChainErrorContext): TokenimError {
  if (err instanceof TokenimError) return err
  const net = nodeCode(err)
  if (net !== undefined) return unreachable(ctx.url, err, net)
  if (isError(err, 'CALL_EXCEPTION')) {
    const revert = err.revert
    if (revert != null) {
      switch (revert.name) {
        case 'VersionNotIncreasing': {
          const [latest, given] = revert.args.map(Number)
          return new TokenimError(ChainErrorCode.ROLLBACK_REJECTED,
            `version ${given} is not newer than the anchored version ${latest}: refusing a rollback`, { latest, given }, { cause: err })
        }
        case 'ZeroDigest':
          return new TokenimError(ChainErrorCode.INVALID_DIGEST, 'the backup digest must not be zero', {}, { cause: err })
        case 'SignatureExpired':
          return new TokenimError(ChainErrorCode.SIGNATURE_EXPIRED,
            `the anchor signature expired (deadline ${String(revert.args[0])})`, { deadline: Number(revert.args[0]) }, { cause: err })
        case 'InvalidSignature':
          return new TokenimError(ChainErrorCode.INVALID_SIGNATURE, 'the anchor signature is not valid for this owner', {}, { cause: err })
      }
    }
    return new TokenimError(ChainErrorCode.ERROR, `${ctx.what} failed on chain: ${err.shortMessage}`,
      { reason: err.reason ?? undefined }, { cause: err })
  }
  if (isError(err, 'INSUFFICIENT_FUNDS') || /insufficient funds|enough funds/i.test(errorText(err))) {
    return new TokenimError(ChainErrorCode.INSUFFICIENT_FUNDS,
      `the wallet cannot pay the gas for ${ctx.what}; fund it, or anchor through a relayer (anchorWithSig)`, {}, { cause: err })
  }
  if (isError(err, 'TIMEOUT')) {
    return new TokenimError(ChainErrorCode.TIMEOUT, `${ctx.what} timed out at ${ctx.url}`, { url: ctx.url, what: ctx.what }, { cause: err })
  }
  if (isError(err, 'NETWORK_ERROR') || isError(err, 'SERVER_ERROR')) {
    return unreachable(ctx.url, err, err.shortMessage)
  }
  if (isError(err, 'BAD_DATA')) {
    return new TokenimError(ChainErrorCode.ERROR, `${ctx.what}: unexpected answer from ${ctx.url}`, { url: ctx.url }, { cause: err })
  }
  return new TokenimError(ChainErrorCode.ERROR, `${ctx.what} failed: ${firstLine(errorText(err))}`, { url: ctx.url }, { cause: err })
}

function errorText (err: unknown): string {
  const parts: string[] = []
  for (let e = err as { message?: unknown, error?: unknown, info?: { error?: unknown } } | undefined, i = 0; e != null && i < 4; i++) {
    if (typeof e.message === 'string') parts.push(e.message)
    e = (e.error ?? e.info?.error) as typeof e
  }
  return parts.join(' | ')
}

function firstLine (s: string): string {
  const line = s.split('\n')[0] ?? ''
  return line.length > 300 ? line.slice(0, 300) + '…' : line
}
