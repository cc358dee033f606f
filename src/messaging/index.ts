/**
 * End-to-end encrypted direct messages between wallet addresses over `/tokenim/msg/1.1.0` (and 1.0.0):
 * envelope format and crypto (envelope.ts), message ids (ids.ts).
 */
export { MessagingError, MessagingErrorCode } from './errors.ts'
export { newMessageId, isMessageId, messageIdTime, UUID_V7_RE } from './ids.ts'
export {
  MSG_PROTOCOL,
  MSG_PROTOCOL_V1,
  MSG_PROTOCOLS,
  ENVELOPE_VERSION,
  ENVELOPE_VERSIONS,
  RECEIPT_VERSIONS,
  MAX_RECEIPT_IDS,
  createReceiptBatch,
  receiptIds,
  EPOCH_MAX_MESSAGES,
  EPOCH_MAX_AGE_MS,
  SendEpoch,
  openSendEpoch,
  receivingEpochKey,
  MAX_FRAME_BYTES,
  MAX_TEXT_LENGTH,
  RECEIPT_STATUSES,
  sealMessage,
  sealEphemeral,
  openMessage,
  openingSecret,
  staticSecret,
  receiptMacKeys,
  checkRecipient,
  checkSender,
  createReceipt,
  verifyReceipt,
  encodeFrame,
  decodeFrame,
  decodeEnvelope,
  decodeReceipt,
  encodeBody,
  decodeBody
} from './envelope.ts'
export type {
  Envelope,
  EnvelopeHeader,
  EnvelopeHeaderV1,
  EnvelopeHeaderV2,
  Receipt,
  ReceiptBatch,
  AnyReceipt,
  ReceiptStatus,
  Frame,
  MessageBody,
  MessageAttachment,
  MessagingKeyPair,
  SealInput,
  SealEphemeral,
  SealedMessage,
  OpenedMessage,
  OpenOptions,
  ReceiptKeys,
  ReceiptMacKeys,
  SessionKeys
} from './envelope.ts'
export {
  MessagingService,
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_DELIVERY_TIMEOUT_MS,
  DEFAULT_RETRY_BASE_MS,
  DEFAULT_RETRY_MAX_MS,
  MAX_FRAMES_PER_STREAM
} from './service.ts'
export type {
  MessagingComponents,
  MessagingInit,
  MessagingEvents,
  MessagingStats,
  MessagingStore,
  MessagingResolver,
  MessagingNode,
  SendOptions,
  SendResult
} from './service.ts'
export { TokenBuckets } from './rate-limit.ts'
export type { TokenBucketInit } from './rate-limit.ts'
export {
  AttachmentService,
  AttachmentError,
  AttachmentErrorCode,
  ATTACHMENT_CHUNK_BYTES,
  DEFAULT_ATTACHMENT_MAX_BYTES,
  guessMime,
  newAttachmentKey,
  decodeAttachmentKey,
  encryptAttachmentStream,
  decryptAttachmentStream,
  verifyPlaintext,
  checkAttachmentFile,
  readAttachment,
  attachmentOf
} from './attachments.ts'
export type {
  AttachmentProgress,
  AttachmentServiceComponents,
  AttachmentServiceInit,
  AttachmentServiceEvents,
  AttachmentBlockstore,
  AttachmentPins,
  ReadOptions as AttachmentReadOptions,
  ReadAttachmentOptions,
  SaveResult as AttachmentSaveResult
} from './attachments.ts'
