import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AttachmentRef, Store, StoredMessage } from '../../src/store/index.ts'

export const ME = '0x' + 'aa'.repeat(20)

export function peer (n: number): string {
  return '0x' + n.toString(16).padStart(40, '0')
}

/** Texts that break naive exporters: markup, Markdown syntax, unicode, newlines, control characters. */
export const AWKWARD = [
  '<script>alert("x")</script>',
  '</div><script src=//evil.example/x.js></script><img src=x onerror=alert(1)>',
  '# not a heading\n- not a list\n1. not ordered\n> not a quote\n```\nnot code\n```',
  '**bold?** _em?_ `code?` [link](javascript:alert(1)) ![img](x.png) <b>raw</b> &amp; &lt; | a | b |',
  'line one\n\nline three after a blank line\n    indented four\n---\n===',
  'emoji 🎉👩‍👩‍👧 CJK 你好 RTL שלום \u202Eevil\u202C accents ñ é ü',
  'back\\slash at end \\',
  "quotes \" ' and tabs\there",
  'ctrl \u0007 bell \u001b[31m red \u001b[0m CRLF\r\nnext',
  'plain text',
  '$x^2$ ~~strike~~ {curly} +plus =equals !bang *star*',
  'trailing spaces   \n   leading spaces'
]

export interface Fixture {
  peers: string[]
  names: Map<string, string | undefined>
  messages: StoredMessage[]
}

/**
 * `perConversation` messages in each of `conversations` conversations, alternating directions,
 * with awkward texts, duplicate timestamps (id breaks ties) and contact names for all but the last peer.
 */
export async function fill (store: Store, conversations = 5, perConversation = 100, base = 1_700_000_000_000): Promise<Fixture> {
  const peers: string[] = []
  const names = new Map<string, string | undefined>()
  const messages: StoredMessage[] = []
  const contactNames = ['Alice <script>alert(1)</script>', 'Bob *the* _builder_ #1', 'Zoë 你好 🎉', 'Mallory & "Eve"\nnewline']
  for (let c = 0; c < conversations; c++) {
    const p = peer(0x100 + c)
    peers.push(p)
    const name = c < contactNames.length ? contactNames[c] : undefined
    names.set(p, name)
    if (name !== undefined) await store.setContact(p, name)
    for (let i = 0; i < perConversation; i++) {
      const out = i % 3 === 0
      // every 10th message shares the ts of the previous one
      const ts = base + c * 1_000_000 + (i - (i % 10 === 9 ? 1 : 0)) * 1000
      messages.push({
        id: `c${c}-m${String(i).padStart(4, '0')}`,
        conversation: p,
        from: out ? ME : p,
        to: out ? p : ME,
        ts,
        text: `MSG c${c} #${i}: ${AWKWARD[(i + c) % AWKWARD.length]}`,
        direction: out ? 'out' : 'in',
        status: out ? 'delivered' : 'received',
        ...(out ? {} : { receivedAt: ts + 5 })
      })
    }
  }
  await store.addMessages(messages)
  return { peers, names, messages }
}

export function attachmentFor (bytes: Uint8Array, name: string, mime = 'application/octet-stream'): AttachmentRef {
  return {
    cid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    key: 'a2V5LWJ5dGVz',
    name,
    mime,
    size: bytes.byteLength,
    sha256: createHash('sha256').update(bytes).digest('hex')
  }
}

export async function tempDir (): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-export-'))
  return { dir, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

export async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** The order the export promises: conversations by address, messages by (ts, id). */
export function sorted (messages: StoredMessage[]): StoredMessage[] {
  return [...messages].sort((a, b) =>
    a.conversation < b.conversation ? -1 : a.conversation > b.conversation ? 1 : a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** What the human formats show of a text: CRLF → LF, control characters → U+FFFD. */
export function shown (text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g, '\uFFFD')
}

const HTML_ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&amp;': '&' }
export function unescapeHtml (s: string): string {
  return s.replace(/&(lt|gt|quot|#39|amp);/g, e => HTML_ENTITIES[e])
}

export function unescapeMarkdown (s: string): string {
  return s.replace(/\\([!-/:-@[-`{-~])/g, '$1')
}
