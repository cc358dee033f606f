import { exportHistory, isExportFormat, EXPORT_FORMATS } from '../backup/export/index.ts'
import type { ExportFormat, ExportStore } from '../backup/export/index.ts'
import { readAttachment } from '../messaging/index.ts'
import type { AttachmentBlockstore } from '../messaging/index.ts'
import type { TokenimNode } from '../node/index.ts'
import { ApiErrorCode, apiError } from './errors.ts'
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
 * without touching the network. Shared by the daemon's route and the in-process command.
 */
export async function doExport (deps: { store: ExportStore, self: string, blockstore?: AttachmentBlockstore }, p: ExportParams, { signal }: { signal?: AbortSignal } = {}): Promise<ExportSummary> {
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

/** `POST /v1/export`: the running daemon holds the store, so it writes the export itself. */
export function exportRoutes (node: TokenimNode): Routes {
  return {
    'POST /v1/export': async ({ body, signal }) => await doExport(
      { store: node.store, self: node.address, blockstore: node.p2p.helia.blockstore },
      parseExportParams(body),
      { signal })
  }
}
