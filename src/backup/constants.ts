/** Constants of the backup format, v1 and v2 (docs/backup-format.md). Changing any of them changes the format. */

export const FORMAT_NAME = 'tokenim-backup'
/** the format version the builder writes */
export const FORMAT_VERSION = 2
/** format versions this reader understands */
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2]

/** multicodec codes */
export const DAG_CBOR = 0x71
export const DAG_PB = 0x70
export const RAW = 0x55
export const SHA2_256 = 0x12
export const IDENTITY_HASH = 0x00

/** default maximum messages per segment */
export const DEFAULT_SEGMENT_SIZE = 256
export const MAX_SEGMENT_SIZE = 4096
/** smallest power-of-two run the tail of a conversation is cut into (builder.ts tailChunks) */
export const TAIL_MIN = 16
/** default soft byte limit of a segment's encoded messages (cut after the message that reaches it) */
export const DEFAULT_SEGMENT_BYTES = 256 * 1024
export const MIN_SEGMENT_BYTES = 1024
export const MAX_SEGMENT_BYTES = 2 * 1024 * 1024

/** zstd level used for every sealed box (fixed: the level is part of what makes sealing deterministic) */
export const ZSTD_LEVEL = 3

/** size caps (bytes) a reader enforces before decoding */
export const MAX_ROOT_BLOCK = 4 * 1024
export const MAX_MANIFEST_BLOCK = 16 * 1024 * 1024
export const MAX_SEGMENT_BLOCK = 4 * 1024 * 1024 + 4 * 1024
export const MAX_SEGMENT_PLAINTEXT = 4 * 1024 * 1024
export const MAX_MANIFEST_PLAINTEXT = 64 * 1024 * 1024
/** any other block (attachments) */
export const MAX_OTHER_BLOCK = 4 * 1024 * 1024
/** the largest block a CAR reader accepts */
export const MAX_CAR_BLOCK = MAX_MANIFEST_BLOCK

/** limits on list lengths inside the manifest */
export const MAX_LIST = 1_000_000

/** sealed box suite byte: zstd + HMAC-derived single-use key + AES-256-GCM with a zero nonce */
export const BOX_SUITE_1 = 0x01
export const SIV_LENGTH = 32
export const TAG_LENGTH = 16
export const NONCE = new Uint8Array(12)

/**
 * v2: default target number of conversations per manifest shard (a shard boundary is drawn with probability
 * 1/shardSize). 2, not 8: an append rewrites the shard of every touched conversation, and a touched
 * conversation sits on average in a shard of ~2·shardSize − 1 conversations (big shards are hit more often),
 * so with 8 a +1% backup rewrote ~60 untouched conversations' entries and segment links; with 2 the top node
 * grows instead (42 B per shard). docs/backup-format.md#what-an-append-writes
 */
export const DEFAULT_SHARD_SIZE = 2
export const MAX_SHARD_SIZE = 1024
/**
 * v2: a shard is also closed after this many times shardSize conversations, or this many segments. 2 (was 4):
 * a shard of at most 4 conversations bounds what one touched conversation drags along (bench: +1% new bytes
 * 2.56–2.97% → 2.56–2.84% over 20 keys).
 */
export const SHARD_CAP_FACTOR = 2
export const MAX_SHARD_SEGMENTS = 4096

/** v1: manifest; v2: index, shard, contacts */
export type BoxKind = 'segment' | 'manifest' | 'index' | 'shard' | 'contacts'
