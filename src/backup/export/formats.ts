import { createHash } from 'node:crypto'
import type { AttachmentRef, StoredMessage } from '../../store/index.ts'
import {
  cleanLine, cleanText, encodeLinkPath, escapeHtml, escapeMarkdownLine, escapeMarkdownText, formatBytes,
  formatTime, isoTime
} from './escape.ts'

export const EXPORT_FORMATS = ['json', 'md', 'html', 'txt'] as const
export type ExportFormat = typeof EXPORT_FORMATS[number]

export function isExportFormat (v: unknown): v is ExportFormat {
  return typeof v === 'string' && (EXPORT_FORMATS as readonly string[]).includes(v)
}

/** The file format identifier in JSON exports. */
export const JSON_EXPORT_FORMAT = 'tokenim-export'
export const JSON_EXPORT_VERSION = 1

export interface DocumentHeader {
  self: string
  exportedAt: number
  /** the one conversation exported, or undefined for all */
  conversation?: string
  since?: number
  until?: number
}

export interface ConversationHeader {
  peer: string
  name?: string
  /** 0-based position among the conversations written */
  index: number
}

/** What became of a message's attachment in this export. */
export type AttachmentOutcome =
  /** json/txt: listed from the message's metadata, bytes not copied */
  | { state: 'listed' }
  /** html/md: copied beside the export; `link` is relative to the export file */
  | { state: 'copied', link: string }
  /** html/md: the bytes could not be had; `reason` is shown to the reader */
  | { state: 'unavailable', reason: string }

export interface MessageView {
  message: StoredMessage
  /** "me", the contact's name, or a short address */
  sender: string
  mine: boolean
  /** 0-based position in its conversation */
  index: number
  attachment?: AttachmentOutcome
}

export interface Totals {
  conversations: number
  messages: number
  attachments: number
}

/** Produces a format's text piece by piece, so the export streams: nothing is held but the current message. */
export interface Renderer {
  /** html/md copy attachment bytes beside the export; json/txt only list attachments */
  copiesAttachments: boolean
  begin: (h: DocumentHeader) => string
  startConversation: (c: ConversationHeader) => string
  message: (v: MessageView) => string
  endConversation: (c: ConversationHeader, count: number) => string
  end: (t: Totals) => string
}

export function renderer (format: ExportFormat): Renderer {
  switch (format) {
    case 'json': return jsonRenderer
    case 'md': return markdownRenderer
    case 'html': return htmlRenderer
    case 'txt': return textRenderer
  }
}

function rangeText (h: DocumentHeader): string {
  if (h.since === undefined && h.until === undefined) return 'all messages'
  if (h.until === undefined) return `from ${formatTime(h.since ?? 0)}`
  if (h.since === undefined) return `until ${formatTime(h.until)}`
  return `from ${formatTime(h.since)} until ${formatTime(h.until)}`
}

function attachmentFacts (a: AttachmentRef): string {
  return `${cleanLine(a.mime)}, ${formatBytes(a.size)}`
}

// ---------------------------------------------------------------------------------------------- json

/**
 * One JSON document (see docs: "JSON export format"), written incrementally: one message per line,
 * each exactly the stored record (lossless), totals last (known only at the end of the stream).
 */
const jsonRenderer: Renderer = {
  copiesAttachments: false,
  begin: h => '{\n' +
    `  "format": ${JSON.stringify(JSON_EXPORT_FORMAT)},\n` +
    `  "v": ${JSON_EXPORT_VERSION},\n` +
    `  "exportedAt": ${h.exportedAt},\n` +
    `  "self": ${JSON.stringify(h.self)},\n` +
    `  "scope": ${JSON.stringify({ conversation: h.conversation ?? null, since: h.since ?? null, until: h.until ?? null })},\n` +
    '  "conversations": [',
  startConversation: c => (c.index > 0 ? ',' : '') + '\n    {\n' +
    `      "peer": ${JSON.stringify(c.peer)},\n` +
    (c.name !== undefined ? `      "name": ${JSON.stringify(c.name)},\n` : '') +
    '      "messages": [',
  message: v => (v.index > 0 ? ',' : '') + '\n        ' + JSON.stringify(v.message),
  endConversation: (_c, count) => (count > 0 ? '\n      ]' : ']') + '\n    }',
  end: t => (t.conversations > 0 ? '\n  ]' : ']') + ',\n' +
    `  "totals": ${JSON.stringify({ conversations: t.conversations, messages: t.messages, attachments: t.attachments })}\n` +
    '}\n'
}

// ------------------------------------------------------------------------------------------ markdown

function mdAttachment (a: AttachmentRef, outcome: AttachmentOutcome | undefined): string {
  const name = escapeMarkdownLine(a.name)
  const facts = escapeMarkdownLine(attachmentFacts(a))
  if (outcome?.state === 'copied') return `📎 [${name}](<${encodeLinkPath(outcome.link)}>) \\(${facts}\\)`
  const note = outcome?.state === 'unavailable' ? ` — ${escapeMarkdownLine(outcome.reason)}` : ''
  return `📎 ${name} \\(${facts}\\)${note}`
}

const markdownRenderer: Renderer = {
  copiesAttachments: true,
  begin: h => [
    '# tokenim export',
    '',
    `- Account: \`${h.self}\` \\(me\\)`,
    `- Exported: ${escapeMarkdownLine(formatTime(h.exportedAt))}`,
    `- Range: ${escapeMarkdownLine(rangeText(h))}`,
    '',
    '> This file is not encrypted: anyone who can read it can read these messages\\.',
    '',
    ''
  ].join('\n'),
  startConversation: c => c.name !== undefined
    ? `## ${escapeMarkdownLine(c.name)} \\(\`${c.peer}\`\\)\n\n`
    : `## \`${c.peer}\`\n\n`,
  message: v => {
    const m = v.message
    const lines = [`**${escapeMarkdownLine(v.sender)}** · ${escapeMarkdownLine(formatTime(m.ts))}`]
    const text = escapeMarkdownText(m.text)
    if (text !== '') lines.push(text)
    if (m.attachment !== undefined) lines.push(mdAttachment(m.attachment, v.attachment))
    // backslash hard breaks keep the message one paragraph
    return lines.join('\\\n') + '\n\n'
  },
  endConversation: (_c, count) => count === 0 ? '*No messages in this range\\.*\n\n' : '',
  end: t => `---\n\n${t.messages} messages in ${t.conversations} conversations\\.\n`
}

// ---------------------------------------------------------------------------------------------- html

const CSS = `
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #f5f5f7; --card: #fff; --mine: #dcf1ff; --dim: #6e6e73; --line: #d2d2d7; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --bg: #1d1d1f; --card: #2c2c2e; --mine: #0b3a5b; --dim: #a1a1a6; --line: #3a3a3c; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem; font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 48rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .75rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
code, .addr { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; overflow-wrap: anywhere; }
.dim { color: var(--dim); font-size: .85em; }
.warn { border-left: 3px solid #d70015; padding: .25rem .75rem; }
.msg { background: var(--card); border-radius: .6rem; padding: .5rem .75rem; margin: .4rem 3rem .4rem 0; }
.msg.mine { background: var(--mine); margin: .4rem 0 .4rem 3rem; }
.meta { font-size: .8rem; color: var(--dim); margin-bottom: .15rem; }
.meta b { color: var(--fg); }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.att { margin-top: .25rem; font-size: .9rem; }
footer { margin: 2rem 0 0; color: var(--dim); font-size: .85rem; text-align: center; }
`
/** The stylesheet is allowed by its hash: the page's policy forbids every script and every other style. */
const CSS_HASH = createHash('sha256').update(CSS).digest('base64')

function htmlAttachment (a: AttachmentRef, outcome: AttachmentOutcome | undefined): string {
  const name = escapeHtml(cleanLine(a.name))
  const facts = escapeHtml(attachmentFacts(a))
  if (outcome?.state === 'copied') {
    return `<div class="att">📎 <a href="${escapeHtml(encodeLinkPath(outcome.link))}" rel="noopener noreferrer">${name}</a> <span class="dim">(${facts})</span></div>`
  }
  const note = outcome?.state === 'unavailable' ? ` — ${escapeHtml(outcome.reason)}` : ''
  return `<div class="att">📎 ${name} <span class="dim">(${facts})${note}</span></div>`
}

const htmlRenderer: Renderer = {
  copiesAttachments: true,
  begin: h => `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-${CSS_HASH}'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tokenim">
<title>tokenim export</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>tokenim export</h1>
<p class="dim">Account <span class="addr">${escapeHtml(h.self)}</span> (me) · exported <time datetime="${isoTime(h.exportedAt)}">${escapeHtml(formatTime(h.exportedAt))}</time> · ${escapeHtml(rangeText(h))}</p>
<p class="warn dim">This file is not encrypted: anyone who can read it can read these messages.</p>
</header>
`,
  startConversation: c => `<section>
<h2>${c.name !== undefined ? `<bdi>${escapeHtml(cleanLine(c.name))}</bdi> ` : ''}<span class="addr">${escapeHtml(c.peer)}</span></h2>
`,
  message: v => {
    const m = v.message
    const status = v.mine && m.status !== 'delivered' ? ` · ${escapeHtml(m.status)}` : ''
    return `<article class="msg${v.mine ? ' mine' : ''}" id="m-${escapeHtml(encodeURIComponent(m.id))}">` +
      `<div class="meta"><b><bdi>${escapeHtml(cleanLine(v.sender))}</bdi></b> · <time datetime="${isoTime(m.ts)}">${escapeHtml(formatTime(m.ts))}</time>${status}</div>` +
      (m.text !== '' ? `<div class="text">${escapeHtml(m.text)}</div>` : '') +
      (m.attachment !== undefined ? htmlAttachment(m.attachment, v.attachment) : '') +
      '</article>\n'
  },
  endConversation: (_c, count) => (count === 0 ? '<p class="dim">No messages in this range.</p>\n' : '') + '</section>\n',
  end: t => `<footer>${t.messages} messages in ${t.conversations} conversations</footer>
</main>
</body>
</html>
`
}

// ---------------------------------------------------------------------------------------------- text

function indent (text: string): string {
  return text.split('\n').join('\n    ')
}

const textRenderer: Renderer = {
  copiesAttachments: false,
  begin: h => [
    'tokenim export',
    `account:  ${h.self} (me)`,
    `exported: ${formatTime(h.exportedAt)}`,
    `range:    ${rangeText(h)}`,
    'This file is not encrypted: anyone who can read it can read these messages.',
    '',
    ''
  ].join('\n'),
  startConversation: c => `== ${c.name !== undefined ? `${cleanLine(c.name)} <${c.peer}>` : c.peer} ==\n\n`,
  message: v => {
    const m = v.message
    let s = `[${formatTime(m.ts)}] ${cleanLine(v.sender)}: ${indent(cleanText(m.text))}\n`
    if (m.attachment !== undefined) {
      const a = m.attachment
      s += `    [attachment: ${cleanLine(a.name)} (${attachmentFacts(a)}) sha256 ${cleanLine(a.sha256)} cid ${cleanLine(a.cid)}]\n`
    }
    return s
  },
  endConversation: (_c, count) => (count === 0 ? '(no messages in this range)\n' : '') + '\n',
  end: t => `-- ${t.messages} messages in ${t.conversations} conversations --\n`
}
