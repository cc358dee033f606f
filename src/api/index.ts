export { startApiServer, progressRoute, MAX_BODY_BYTES, NDJSON, PROGRESS_INTERVAL_MS, KEEP_ALIVE_MS } from './server.ts'
export type { ApiServer, ApiServerInit, Route, Routes, ApiRequest } from './server.ts'
export { callApi } from './client.ts'
export type { ApiEndpoint, CallApiOptions } from './client.ts'
export { acquireDaemonLock, lockedBy } from './lock.ts'
export type { DaemonLock } from './lock.ts'
export { ApiErrorCode, apiError } from './errors.ts'
export { createRoutes, parseMessagesQuery, messagesQueryString } from './routes.ts'
export type { RoutesInit } from './routes.ts'
export {
  SEND_WAIT_MS, listMessages, listContacts, addContact, sendMessage, idView, nodeStatus, offlineStatus,
  messageView, contactView, backupSummary, DEFAULT_ATTACHMENT_MAX_BYTES, attachmentMaxBytes, sendFileOp, saveAttachmentOp
} from './ops.ts'
export type { MessageView, AttachmentView, ContactView, IdView, StatusView, BackupSummary, MessagesQuery, SendFileView, SavedAttachmentView, TransferProgress } from './ops.ts'
export {
  MAX_MESSAGE_BYTES, MAX_CONTACT_NAME, MAX_LIMIT, parseAddress, displayAddress, parseMessageText,
  parseContactName, parseTimestamp, parseCount, parseObject
} from './validate.ts'
