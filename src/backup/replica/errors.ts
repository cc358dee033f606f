import { TokenimError } from '../../errors.ts'

/**
 * Reason codes of the replica protocol (`/tokenim/pin/1.0.0`). A replica answers a refused request with
 * a receipt `{ ok: false, code, message }`; the requesting side raises REPLICA_REFUSED with
 * info.reason = that code. Part of the public contract.
 */
export const ReplicaReason = {
  /** the replica does not keep backups of this owner (not in its --replica-for list) */
  UNKNOWN_OWNER: 'UNKNOWN_OWNER',
  /** the chain has no anchor for this owner and version */
  NOT_ANCHORED: 'NOT_ANCHORED',
  /** the chain anchors another root for this owner and version, or the root says another owner/version */
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  /** pinning this version would exceed the owner's byte quota on the replica */
  OVER_QUOTA: 'OVER_QUOTA',
  /** the request is malformed (shape, CID codec/hash) */
  BAD_REQUEST: 'BAD_REQUEST',
  /** the replica could not check the chain (it is unreachable from the replica) */
  CHAIN_UNAVAILABLE: 'CHAIN_UNAVAILABLE',
  /** the replica could not fetch the whole DAG (a block missing, tampered, too big, or a timeout) */
  FETCH_FAILED: 'FETCH_FAILED',
  /** anything else went wrong on the replica */
  REPLICA_ERROR: 'REPLICA_ERROR'
} as const

export type ReplicaReason = typeof ReplicaReason[keyof typeof ReplicaReason]

/** Error codes raised on the requesting side. */
export const ReplicaErrorCode = {
  /** the replica answered with a refusal (info.reason: a ReplicaReason) */
  REPLICA_REFUSED: 'REPLICA_REFUSED',
  /** the replica could not be found or reached, or did not answer in time */
  REPLICA_UNREACHABLE: 'REPLICA_UNREACHABLE',
  /** the replica answered something that is not a valid receipt for our request */
  REPLICA_PROTOCOL_ERROR: 'REPLICA_PROTOCOL_ERROR',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT'
} as const

export function replicaError (code: string, message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return new TokenimError(code, message, info, cause === undefined ? undefined : { cause })
}
