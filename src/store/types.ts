/** Records kept in the store. All addresses are lowercase 0x-prefixed 20-byte hex. */

export type MessageDirection = 'in' | 'out'
export type MessageStatus = 'queued' | 'sent' | 'delivered' | 'received' | 'failed'

export const MESSAGE_DIRECTIONS: readonly MessageDirection[] = ['in', 'out']
export const MESSAGE_STATUSES: readonly MessageStatus[] = ['queued', 'sent', 'delivered', 'received', 'failed']

export interface AttachmentRef {
  /** CID of the (encrypted) attachment content */
  cid: string
  /** content key, base64 or hex text (opaque to the store) */
  key: string
  name: string
  mime: string
  /** plaintext size in bytes */
  size: number
  /** lowercase hex sha-256 of the plaintext */
  sha256: string
}

export interface StoredMessage {
  /** unique message id (UUIDv7/ULID text); 1..128 printable ASCII characters, no spaces */
  id: string
  /** the peer's address: `from` for incoming messages, `to` for outgoing ones */
  conversation: string
  from: string
  to: string
  /** sender's clock, ms since the epoch (non-negative integer) */
  ts: number
  text: string
  direction: MessageDirection
  status: MessageStatus
  attachment?: AttachmentRef
  /** receiver's clock when an incoming message was stored */
  receivedAt?: number
}

export interface ConversationSummary {
  peer: string
  /** exact number of message rows of this conversation */
  count: number
  /** smallest ts */
  firstTs: number
  /** ts of the newest message by (ts, id) */
  lastTs: number
  /** id of the newest message by (ts, id) */
  lastMessageId: string
}

/** A conversation's summary as stored, with its change token ({@link Store.revisions}). */
export interface ConversationRevision extends ConversationSummary {
  /**
   * Change token: a random value that every write of this conversation's message rows replaces (in the
   * same batch), so an unchanged token means unchanged rows (the backup's conversation cache keys on it).
   * Absent in summaries written before it existed.
   */
  rev?: string
  /**
   * Append run: kept by writes that only add rows after the conversation's newest one, replaced (by that
   * write's `rev`) by any other write; an unchanged run means the rows then are a prefix of the rows now.
   */
  run?: string
}

export interface Contact {
  address: string
  name?: string
  addedAt: number
}

export interface OutboxEntry {
  /** the message id */
  id: string
  /** recipient address */
  to: string
  /** failed attempts so far */
  attempts: number
  /** ms since the epoch */
  nextAttemptAt: number
  lastError?: string
  /** the encoded, encrypted envelope to deliver */
  envelope: Uint8Array
}

export interface ReplicaStatus {
  address: string
  peerId?: string
  ok: boolean
  at: number
  error?: string
}

export interface BackupRecord {
  version: number
  cid: string
  digest: string
  txHash?: string
  anchored: boolean
  /** built but not (yet) anchored on chain; `backup --anchor-pending` picks these up */
  pending?: boolean
  createdAt: number
  messages: number
  bytesTotal: number
  bytesNew: number
  /** CAR file written with --out */
  file?: string
  replicas: ReplicaStatus[]
}

export interface MessageQuery {
  /** ts >= since (inclusive) */
  since?: number
  /** ts <= until (inclusive) */
  until?: number
  limit?: number
  /** newest first */
  reverse?: boolean
}

export interface AddMessagesResult {
  added: number
  /** ids already in the store, or repeated within the call */
  skipped: number
}

export interface ConsistencyProblem {
  /**
   * - `count-mismatch`: a conversation's count differs from its rows
   * - `bounds-mismatch`: firstTs / lastTs / lastMessageId differ from the rows
   * - `missing-conversation`: rows exist but no summary
   * - `empty-conversation`: a summary exists but no rows
   * - `index-missing`: a message row has no byId entry (or one pointing elsewhere)
   * - `index-dangling`: a byId entry points to no row
   * - `bad-row`: a message row whose key does not parse or disagrees with its value
   */
  kind: 'count-mismatch' | 'bounds-mismatch' | 'missing-conversation' | 'empty-conversation' | 'index-missing' | 'index-dangling' | 'bad-row'
  message: string
  conversation?: string
  id?: string
  expected?: number | string
  actual?: number | string
}
