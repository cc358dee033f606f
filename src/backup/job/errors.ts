import { TokenimError } from '../../errors.ts'

/**
 * Error codes of the backup job (`tokenim backup`, `backups`, the scheduler). Part of the public
 * contract: the CLI prints them and README lists them with what to do.
 */
export const BackupJobErrorCode = {
  /** another backup of this data dir is running (info.pid) */
  BACKUP_IN_PROGRESS: 'BACKUP_IN_PROGRESS',
  /** anchoring was asked for but no chain profile applies (use --chain, TOKENIM_CHAIN, DATA_DIR/chain.json, or --no-anchor) */
  NO_CHAIN_PROFILE: 'NO_CHAIN_PROFILE',
  /** `--anchor-pending` found nothing to anchor is not an error; this is for a pending version the chain can no longer take (info.version, info.latest) */
  ANCHOR_SUPERSEDED: 'ANCHOR_SUPERSEDED',
  /**
   * the chain anchors ANOTHER digest under a version this device made (info.version, info.local,
   * info.chain): only a holder of this wallet's key can do that (another device with the same
   * mnemonic, or a leaked key); the local version can never be anchored
   */
  ANCHOR_CONFLICT: 'ANCHOR_CONFLICT',
  /** `tokenim anchor-request`: no pending version (or not the one asked for) to sign a request for */
  NO_PENDING_BACKUP: 'NO_PENDING_BACKUP',
  /** `tokenim anchor-request`: the chain already anchors this version with this digest (`backup --anchor-pending` records it) */
  ALREADY_ANCHORED: 'ALREADY_ANCHORED',
  /** a caller passed malformed options */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** the job was aborted through its signal */
  ABORTED: 'ABORTED'
} as const

export type BackupJobErrorCode = typeof BackupJobErrorCode[keyof typeof BackupJobErrorCode]

export function jobError (code: BackupJobErrorCode, message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return new TokenimError(code, message, info, cause === undefined ? undefined : { cause })
}
