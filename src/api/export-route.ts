import { exportHistory, isExportFormat, EXPORT_FORMATS } from '../backup/export/index.ts'
import type { ExportFormat, ExportProgress, ExportStore } from '../backup/export/index.ts'
import { readAttachment } from '../messaging/index.ts'
import type { AttachmentBlockstore } from '../messaging/index.ts'
import type { TokenimNode } from '../node/index.ts'
import { ApiErrorCode, apiError } from './errors.ts'
import { progressRoute } from './server.ts'
import type { Routes } from './server.ts'
import { parseAbsolutePath, parseAddress, parseObject, parseTimestamp } from './validate.ts'

/** What `tokenim export` asks for (the CLI has already turned human times into ms). */
export interface ExportParams {
  format: ExportFormat
  /** absolute path: the daemon does not share the caller's working directory */
  out: string
  conversation?: string
  since?: number
  until?: number
  force?: boolean
}

export interface ExportSummary {
  file: string
  messages: number
  conversations: number
  attachments: number
  attachmentsCopied: number
  filesDir?: string
}

export function parseExportParams (body: unknown): ExportParams {
  const b = parseObject(body)
  if (typeof b.format !== 'string' || !isExportFormat(b.format)) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `format must be one of ${EXPORT_FORMATS.join(', ')}`, { field: 'format' })
  }
  if (b.force !== undefined && typeof b.force !== 'boolean') throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'force must be true or false', { field: 'force' })
  return {
    format: b.format,
    out: parseAbsolutePath(b.out, 'out'),
    ...(b.conversation !== undefined ? { conversation: parseAddress(b.conversation, 'conversation') } : {}),
    ...(b.since !== undefined ? { since: parseTimestamp(b.since, 'since') } : {}),
    ...(b.until !== undefined ? { until: parseTimestamp(b.until, 'until') } : {}),
    ...(b.force === true ? { force: true } : {})
  }
}

/**
 * Export the history of `self` from `store`; attachments are copied (html/md) from `blockstore`
 * without touching the network. Shared by the daemon's route and the in-process command; `onProgress`
 * gets the exporter's reports (messages written of the total when known, bytes, attachments copied).
 */
export async function doExport (deps: { store: ExportStore, self: string, blockstore?: AttachmentBlockstore }, p: ExportParams, { signal, onProgress }: { signal?: AbortSignal, onProgress?: (p: ExportProgress) => void } = {}): Promise<ExportSummary> {
  const { blockstore } = deps
  const r = await exportHistory({
    store: deps.store,
    self: deps.self,
    format: p.format,
    out: p.out,
    conversation: p.conversation,
    since: p.since,
    until: p.until,
    force: p.force === true,
    signal,
    onProgress,
    getAttachment: blockstore === undefined
      ? undefined
      : (m) => m.attachment === undefined ? undefined : readAttachment(m.attachment, { blockstore, offline: true, signal })
  })
  return {
    file: r.file,
    messages: r.messages,
    conversations: r.conversations,
    attachments: r.attachments,
    attachmentsCopied: r.attachmentsCopied,
    ...(r.filesDir !== undefined ? { filesDir: r.filesDir } : {})
  }
}

/**
 * `POST /v1/export`: the running daemon holds the store, so it writes the export itself. A progress
 * route: with `Accept: application/x-ndjson` the exporter's reports ({@link ExportProgress}) stream
 * to the client, and keep-alives hold the connection of an export of many minutes.
 */
export function exportRoutes (node: TokenimNode): Routes {
  return {
    'POST /v1/export': progressRoute(async ({ body, signal, progress }) => await doExport(
      { store: node.store, self: node.address, blockstore: node.p2p.helia.blockstore },
      parseExportParams(body),
      { signal, onProgress: progress }))
  }
}
