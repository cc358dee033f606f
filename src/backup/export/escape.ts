/**
 * Escaping and clean-up for the human-readable export formats. Message texts and contact names come
 * from other people: they are never trusted to be free of markup, control characters or newlines.
 */

/** C0 controls except tab and newline, DEL, and C1 controls (terminal escapes and the like). */
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g

/** Normalise line ends to \n and replace control characters with U+FFFD (visible, harmless). */
export function cleanText (text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(CONTROL_RE, '\uFFFD')
}

/** A one-line label (contact name, file name): control characters cleaned, line breaks and tabs become spaces. */
export function cleanLine (text: string): string {
  return cleanText(text).replace(/[\n\t\u2028\u2029]/g, ' ')
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Escape for HTML text and (quoted) attribute values. */
export function escapeHtml (text: string): string {
  return cleanText(text).replace(/[&<>"']/g, c => HTML_ESCAPES[c])
}

/**
 * Every character that can start or shape Markdown syntax (CommonMark + GFM: emphasis, code, links,
 * images, raw HTML, entities, headings, lists, block quotes, tables, strikethrough, setext underlines,
 * math). Backslash-escaping ASCII punctuation is always allowed in CommonMark and renders as the
 * character itself.
 */
const MARKDOWN_SPECIAL_RE = /[\\`*_{}[\]()#+\-.!|<>~&=$]/g

/** Escape a one-line label (name, file name) for Markdown inline content. */
export function escapeMarkdownLine (line: string): string {
  return cleanLine(line).replace(MARKDOWN_SPECIAL_RE, c => '\\' + c)
}

/**
 * Escape a (multi-line) message text as the body of a Markdown paragraph: each line is escaped, and
 * lines are joined with backslash hard breaks, so the text stays one paragraph (no blank line ever
 * ends it) and no line of it can open a block (heading, list, quote, fence, HTML, table). Markdown
 * does not show leading spaces or trailing line breaks; json is the lossless format.
 */
export function escapeMarkdownText (text: string): string {
  // trailing line breaks would leave a literal backslash at the end of the paragraph
  return cleanText(text).replace(/\n+$/, '').split('\n')
    .map(line => line.replace(MARKDOWN_SPECIAL_RE, c => '\\' + c)).join('\\\n')
}

/** Percent-encode each segment of a relative path for use in a link. */
export function encodeLinkPath (path: string): string {
  return path.split('/').map(encodeURIComponent).join('/')
}

/** `2023-11-14 22:13:20 UTC` (readable, unambiguous); the raw number for times Date cannot show. */
export function formatTime (ts: number): string {
  const d = new Date(ts)
  if (Number.isNaN(d.getTime())) return `${ts} ms`
  return d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC')
}

/** ISO 8601 for machine-readable attributes (HTML `<time datetime>`). */
export function isoTime (ts: number): string {
  const d = new Date(ts)
  return Number.isNaN(d.getTime()) ? '' : d.toISOString()
}

export { formatBytes, shortAddress } from '../../util/format.ts'
