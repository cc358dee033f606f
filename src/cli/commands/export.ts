import { extname, join, resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import { SingleBar } from 'cli-progress'
import { EXPORT_FORMATS, isExportFormat } from '../../backup/export/index.ts'
import type { ExportFormat, ExportProgress } from '../../backup/export/index.ts'
import type { ExportParams, ExportSummary } from '../../api/export-route.ts'
import { TokenimError, isTokenimError } from '../../errors.ts'
import { readIdentityPublic } from '../../identity/index.ts'
import { StoreErrorCode, isAddress, openStore } from '../../store/index.ts'
import { formatBytes } from '../../util/format.ts'
import { action } from '../command.ts'
import type { CommandContext } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import { openLocalBlocks } from '../node-access.ts'
import { parseTimeRange } from '../time.ts'

interface ExportFlags {
  format?: string
  out?: string
  since?: string
  until?: string
  force?: boolean
}

const BY_EXTENSION: Record<string, ExportFormat> = { '.json': 'json', '.md': 'md', '.markdown': 'md', '.html': 'html', '.htm': 'html', '.txt': 'txt' }

export function registerExport (program: Command): void {
  program.command('export')
    .argument('[addr]', 'export only the conversation with this address (default: all conversations)')
    .description('export chat history for people: json, Markdown, HTML or plain text (NOT encrypted)')
    .option('--format <format>', `${EXPORT_FORMATS.join(' | ')} (default: from the --out extension)`)
    .option('--out <path>', 'the file to write (html/md copy attachments to PATH.files/)')
    .option('--since <time>', 'only messages at or after this time: ISO date/time, ms since the epoch, or ago like 2h, 7d')
    .option('--until <time>', 'only messages at or before this time (a date alone means the end of that day)')
    .option('--force', 'replace an existing export file')
    .addHelpText('after', `
The export is a readable copy of your messages and is NOT encrypted: keep it somewhere private.
It is written atomically with mode 0600; an existing file is never replaced without --force.
json is lossless (every stored field); md and html show contact names and copy attachments that
this device has (decrypted and checked against their SHA-256) to PATH.files/, linked from the
export; txt is plain text.

While the daemon runs, it writes the export (it holds the message store). On a terminal (without
--json) a progress line shows the messages written (of how many, without --since/--until) and the size.

Examples:
  $ tokenim export --format html --out chats.html
  $ tokenim export 0x1234…abcd --format md --out alice.md --since 7d
  $ tokenim export --out history.json --since 2024-01-01 --until 2024-06-30 --json`)
    .action(action<ExportFlags>(async (ctx, args, o) => {
      const { opts, out, signal } = ctx
      const conversation = args[0]
      if (conversation !== undefined && !isAddress(conversation)) {
        throw new TokenimError('INVALID_ADDRESS', `not an address: ${JSON.stringify(conversation)} (expected 0x followed by 40 hex digits)`)
      }
      if (o.out === undefined || o.out === '') throw new TokenimError('USAGE', '--out PATH is required')
      const format = o.format ?? BY_EXTENSION[extname(o.out).toLowerCase()]
      if (format === undefined) throw new TokenimError('USAGE', `--format is required (${EXPORT_FORMATS.join(', ')}) when --out has no known extension`)
      if (!isExportFormat(format)) throw new TokenimError('USAGE', `unknown --format ${JSON.stringify(format)}: use one of ${EXPORT_FORMATS.join(', ')}`)
      const { since, until } = parseTimeRange(o.since, o.until)

      const params: ExportParams = {
        format,
        out: resolvePath(o.out),
        ...(conversation !== undefined ? { conversation } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(until !== undefined ? { until } : {}),
        ...(o.force === true ? { force: true } : {})
      }
      const identity = await readIdentityPublic(opts.dataDir)
      const api = await readApiInfo(opts.dataDir)
      let r: ExportSummary
      const bar = exportBar(ctx)
      try {
        if (api !== undefined) {
          // the running daemon holds the store: it writes the export. Streamed: its progress feeds the
          // same bar, and its keep-alives hold the connection of an export of many minutes
          const { callApi } = await import('../../api/index.ts')
          r = await callApi<ExportSummary, ExportProgress>(api, 'POST', '/v1/export', params, { signal, onProgress: bar.onProgress ?? (() => {}) })
        } else {
          const store = await openExportStore(opts.dataDir)
          let blocks: Awaited<ReturnType<typeof openLocalBlocks>>
          try {
            // html/md copy attachment files: read from this device's blockstore (offline), decrypted and verified
            if (format === 'html' || format === 'md') blocks = await openLocalBlocks(opts.dataDir)
            const { doExport } = await import('../../api/export-route.ts')
            r = await doExport({ store, self: identity.address, blockstore: blocks }, params, { signal, onProgress: bar.onProgress })
          } finally {
            await blocks?.close().catch(() => {})
            await store.close()
          }
        }
      } finally {
        bar.stop()
      }
      out.warn(`${r.file} is NOT encrypted: anyone who can read it can read these messages`)
      out.result(r, () => [
        `exported ${r.messages} message${r.messages === 1 ? '' : 's'} in ${r.conversations} conversation${r.conversations === 1 ? '' : 's'} to ${r.file}`,
        ...(r.attachments > 0 ? [`attachments: ${r.attachments} (${r.attachmentsCopied} copied${r.filesDir !== undefined ? ` to ${r.filesDir}` : ''})`] : [])
      ].join('\n'))
    }))
}

/**
 * The export's progress line on stderr, the same in process and through the daemon: only on a TTY and
 * without --json; a bar when the number of messages is known (no --since/--until), a count otherwise.
 */
function exportBar (ctx: CommandContext): { onProgress?: (p: ExportProgress) => void, stop: () => void } {
  if (ctx.out.json || process.stderr.isTTY !== true) return { stop: () => {} }
  let bar: SingleBar | undefined
  let total: number | undefined
  return {
    onProgress: (p) => {
      const payload = {
        of: p.totalMessages ?? 0,
        conversations: p.conversations,
        size: formatBytes(p.bytes),
        files: p.attachmentsCopied > 0 ? ` · ${p.attachmentsCopied} attachment${p.attachmentsCopied === 1 ? '' : 's'} copied` : ''
      }
      if (bar === undefined) {
        total = p.totalMessages
        bar = new SingleBar({
          stream: process.stderr,
          format: total !== undefined
            ? ' export [{bar}] {value}/{of} messages · {conversations} conversations · {size}{files}'
            : ' export {value} messages · {conversations} conversations · {size}{files}',
          hideCursor: true,
          clearOnComplete: true
        })
        bar.start(Math.max(1, total ?? 0), 0, payload)
      }
      bar.update(total !== undefined ? Math.min(p.messages, total) : p.messages, payload)
    },
    stop: () => { bar?.stop() }
  }
}

/**
 * The store of the data dir (created empty when missing, like the other read commands do: a new
 * identity exports an empty history). A running daemon holds it (LevelDB lock): say what to do.
 */
async function openExportStore (dataDir: string): ReturnType<typeof openStore> {
  const path = join(dataDir, 'store')
  try {
    return await openStore(path)
  } catch (err) {
    if (isTokenimError(err, StoreErrorCode.LOCKED)) {
      const daemon = await readApiInfo(dataDir)
      throw new TokenimError(StoreErrorCode.LOCKED,
        daemon !== undefined
          ? `the daemon${daemon.pid !== undefined ? ` (pid ${daemon.pid})` : ''} holds the message store but did not take the export: check that it is still running`
          : `the message store at ${path} is locked by another tokenim process: stop it and run \`tokenim export\` again`,
        { path }, { cause: err })
    }
    throw err
  }
}
