import { TokenimError } from '../errors.ts'

/**
 * Stable error codes raised by src/restore (part of the public contract: the CLI prints them, `verify`
 * lists them as problems). The backup engine's codes (MISSING_BLOCK, BACKUP_TAMPERED, COUNT_MISMATCH,
 * WRONG_PASSPHRASE, DECRYPT_FAILED, BACKUP_OWNER_MISMATCH, …) and the chain's (CHAIN_UNREACHABLE, …) pass
 * through unchanged.
 */
export const RestoreErrorCode = {
  /** the chain has no anchor for the address (usually: another mnemonic), or not the version asked for */
  NO_BACKUP: 'NO_BACKUP',
  /** the bundle is an older anchored version than the chain's latest, and no --version asked for it */
  ROLLBACK_REFUSED: 'ROLLBACK_REFUSED',
  /** the bundle's root digest matches no anchor of the owner (tampered, forged or never anchored) */
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  /** the target data dir holds something else than a restore in progress (use --merge) */
  TARGET_NOT_EMPTY: 'TARGET_NOT_EMPTY',
  /** no chain profile applies (--chain, TOKENIM_CHAIN, DATA_DIR/chain.json) and --allow-unanchored was not given */
  NO_CHAIN_PROFILE: 'NO_CHAIN_PROFILE',
  /** neither a CAR file nor any peer to fetch the bundle from */
  NO_SOURCE: 'NO_SOURCE',
  /** --salvage imported what verified, but some messages could not be recovered (info.problems) */
  SALVAGE_INCOMPLETE: 'SALVAGE_INCOMPLETE',
  /** the data dir's identity is another address than the mnemonic's (restore --merge) */
  IDENTITY_MISMATCH: 'IDENTITY_MISMATCH',
  /** malformed options (programming error) */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT'
} as const

export type RestoreErrorCode = typeof RestoreErrorCode[keyof typeof RestoreErrorCode]

export function restoreError (code: string, message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return new TokenimError(code, message, info, cause === undefined ? undefined : { cause })
}
