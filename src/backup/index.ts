/**
 * Backups: the versioned, encrypted, deduplicated bundle of a user's history (format:
 * docs/backup-format.md), its builder, reader, checker and CAR files.
 *
 * @example
 * ```ts
 * const { root, digest, bytesNew } = await buildBackup({ store, blockstore: helia.blockstore, owner, version, backupKey })
 * await writeCar(root, helia.blockstore, 'backup.car')
 * const { root: r, blockstore } = await readCar('backup.car')
 * const reader = await readBackup({ root: r, blockstore, owner, version, backupKey })
 * for await (const msg of reader.messages()) { … }
 * const report = await verifyBackup({ root: r, blockstore, backupKey })   // every problem, not only the first
 * ```
 */
export { BackupErrorCode } from './errors.ts'
export {
  FORMAT_NAME, FORMAT_VERSION, SUPPORTED_VERSIONS, DEFAULT_SEGMENT_SIZE, DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_SIZE,
  MAX_ROOT_BLOCK, MAX_MANIFEST_BLOCK, MAX_SEGMENT_BLOCK
} from './constants.ts'
export { buildBackup } from './builder.ts'
export type { BackupSource, BuildBackupOptions, BuildBackupResult, BuildProgress } from './builder.ts'
export { readBackup, readHeader } from './reader.ts'
export type { BackupKeySource, BackupReader, BackupHeaderInfo, ReadBackupOptions, ReadHeaderOptions, ReadSegment, RowsSegment } from './reader.ts'
export { verifyBackup } from './verify.ts'
export type { BackupProblem, OpenedManifest, VerifyBackupOptions, VerifyBackupResult, VerifyProgress } from './verify.ts'
export { writeCar, readCar, walkDag, blockKey, ownBytes } from './car.ts'
export type { CarBlockstore, ReadCarResult, WriteCarOptions, WriteCarResult } from './car.ts'
export { rootCidFromDigest, digestOfRoot, verifyBlock } from './blocks.ts'
export type { BlockGetter, BlockStore } from './blocks.ts'
export { checksumAddress } from './address.ts'
export type { BackupHeader, Manifest, ManifestConversation, ManifestNode, Segment, SegmentInfo } from './schema.ts'
// lower-level reading, for salvage (src/restore): segment by segment, skipping the ones that do not verify
export { checkSegment, checkSegmentRows, openManifest, readManifestNode, segmentPlaces } from './reader.ts'
export type { SegmentPlace } from './reader.ts'
export { fromSegmentMessage } from './schema.ts'
export type { SealCache } from './seal-cache.ts'
