/** The node's level database: messages, conversations, contacts, outbox, seen ids, backup index, meta. */
export { openStore, repairStore, Store, StoreSnapshot, SCHEMA_VERSION, messageRecord } from './store.ts'
export type { OpenStoreOptions, RebuildResult, SkipConversation, MessageRecord } from './store.ts'
export { StoreErrorCode } from './errors.ts'
export { MESSAGE_DIRECTIONS, MESSAGE_STATUSES } from './types.ts'
export type {
  AddMessagesResult, AttachmentRef, BackupRecord, ConsistencyProblem, Contact, ConversationRevision, ConversationSummary,
  MessageDirection, MessageQuery, MessageStatus, OutboxEntry, ReplicaStatus, StoredMessage
} from './types.ts'
export { MAX_ID_LENGTH, MAX_TEXT_LENGTH, isAddress, normalizeMessage } from './validate.ts'
export { markerPathFor, readMarker } from './marker.ts'
export type { StoreMarker, StoreMarkerStatus } from './marker.ts'
