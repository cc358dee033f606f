import { extname, join, resolve as resolvePath } from 'node:path'
import type { Command } from 'commander'
import { EXPORT_FORMATS, isExportFormat } from '../../backup/export/index.ts'
import type { ExportFormat } from '../../backup/export/index.ts'
import type { ExportParams, ExportSummary } from '../../api/export-route.ts'
import { TokenimError, isTokenimError } from '../../errors.ts'
import { readIdentityPublic } from '../../identity/index.ts'
import { StoreErrorCode, isAddress, openStore } from '../../store/index.ts'
import { action } from '../command.ts'
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

While the daemon runs, it writes the export (it holds the message store).

Examples:
  $ tokenim export --format html --out chats.html
  $ tokenim export 0x1234…abcd --format md --out alice.md --since 7d
  $ tokenim export --out history.json --since 2024-01-01 --until 2024-06-30 --json`)
    .action(action<ExportFlags>(async ({ opts, out, signal }, args, o) => {
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
      if (api !== undefined) {
        // the running daemon holds the store: it writes the export
        const { callApi } = await import('../../api/index.ts')
        r = await callApi<ExportSummary>(api, 'POST', '/v1/export', params, { signal })
      } else {
        const store = await openExportStore(opts.dataDir)
        let blocks: Awaited<ReturnType<typeof openLocalBlocks>>
        try {
          // html/md copy attachment files: read from this device's blockstore (offline), decrypted and verified
          if (format === 'html' || format === 'md') blocks = await openLocalBlocks(opts.dataDir)
          const { doExport } = await import('../../api/export-route.ts')
          r = await doExport({ store, self: identity.address, blockstore: blocks }, params, { signal })
        } finally {
          await blocks?.close().catch(() => {})
          await store.close()
        }
      }
      out.warn(`${r.file} is NOT encrypted: anyone who can read it can read these messages`)
      out.result(r, () => [
        `exported ${r.messages} message${r.messages === 1 ? '' : 's'} in ${r.conversations} conversation${r.conversations === 1 ? '' : 's'} to ${r.file}`,
        ...(r.attachments > 0 ? [`attachments: ${r.attachments} (${r.attachmentsCopied} copied${r.filesDir !== undefined ? ` to ${r.filesDir}` : ''})`] : [])
      ].join('\n'))
    }))
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
