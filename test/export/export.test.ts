import assert from 'node:assert/strict'
import { readFile, readdir, stat, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { exportHistory, JSON_EXPORT_FORMAT } from '../../src/backup/export/index.ts'
import type { ExportFormat, ExportProgress } from '../../src/backup/export/index.ts'
import { TokenimError, isTokenimError } from '../../src/errors.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store, StoredMessage } from '../../src/store/index.ts'
import { ME, attachmentFor, collect, fill, peer, shown, sorted, tempDir, unescapeHtml, unescapeMarkdown } from './helpers.ts'
import type { Fixture } from './helpers.ts'

interface Seen { conversation: string, sender: string, time: string, text: string }

const UTC = (ts: number): string => new Date(ts).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC')
const label = (f: Fixture, m: StoredMessage): string => m.direction === 'out' ? 'me' : (f.names.get(m.conversation)?.replace(/\n/g, ' ') ?? `${m.conversation.slice(0, 6)}…${m.conversation.slice(-4)}`)

/** Read back (conversation, sender, time, text) of every message of a human-readable export. */
function parseHtml (doc: string): Seen[] {
  const seen: Seen[] = []
  for (const section of doc.split('<section>').slice(1)) {
    const conversation = /<span class="addr">(0x[0-9a-f]{40})<\/span><\/h2>/.exec(section)?.[1] ?? ''
    const re = /<article class="msg(?: mine)?" id="m-[^"]*"><div class="meta"><b><bdi>([^<]*)<\/bdi><\/b> · <time datetime="[^"]*">([^<]*)<\/time>[^<]*<\/div>(?:<div class="text">([^<]*)<\/div>)?/g
    for (const m of section.matchAll(re)) {
      seen.push({ conversation, sender: unescapeHtml(m[1]), time: m[2], text: unescapeHtml(m[3] ?? '') })
    }
  }
  return seen
}

function parseMarkdown (doc: string): Seen[] {
  const seen: Seen[] = []
  for (const section of doc.split('\n## ').slice(1)) {
    const conversation = /`(0x[0-9a-f]{40})`/.exec(section)?.[1] ?? ''
    for (const block of section.split('\n\n').map(b => b.replace(/\n+$/, '')).filter(b => b.startsWith('**'))) {
      const [head, ...lines] = block.split('\\\n')
      const h = /^\*\*(.*)\*\* · (.*)$/.exec(head)
      assert.ok(h, `message header: ${head}`)
      const textLines = lines.filter(l => !l.startsWith('📎'))
      seen.push({ conversation, sender: unescapeMarkdown(h[1]), time: unescapeMarkdown(h[2]), text: textLines.map(unescapeMarkdown).join('\n') })
    }
  }
  return seen
}

function parseText (doc: string): Seen[] {
  const seen: Seen[] = []
  let conversation = ''
  let current: Seen | undefined
  for (const line of doc.split('\n')) {
    if (current !== undefined && line.startsWith('    ')) {
      if (!line.startsWith('    [attachment: ')) current.text += '\n' + line.slice(4)
      continue
    }
    current = undefined
    const conv = /^== .*?(0x[0-9a-f]{40})>? ==$/.exec(line)
    if (conv !== null) { conversation = conv[1]; continue }
    const m = /^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)\] (.*?): (.*)$/.exec(line)
    if (m !== null) {
      current = { conversation, sender: m[2], time: m[1], text: m[3] }
      seen.push(current)
    }
  }
  return seen
}

function expected (f: Fixture, messages: StoredMessage[], { trimEnd = false } = {}): Seen[] {
  return sorted(messages).map(m => ({
    conversation: m.conversation,
    sender: label(f, m),
    time: UTC(m.ts),
    text: trimEnd ? shown(m.text).replace(/\n+$/, '') : shown(m.text)
  }))
}

describe('export: formats', function () {
  let cleanup: () => Promise<void>
  let dir: string
  let store: Store
  let fixture: Fixture

  before(async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    dir = t.dir
    store = await openStore(join(dir, 'store'))
    fixture = await fill(store, 5, 100)
  })

  after(async () => {
    await store.close()
    await cleanup()
  })

  it('json: one valid document, lossless, every message of every conversation, oldest first, names', async () => {
    const out = join(dir, 'all.json')
    const r = await exportHistory({ store, self: ME, format: 'json', out, now: 1_234 })
    assert.deepEqual({ file: r.file, messages: r.messages, conversations: r.conversations, attachments: r.attachments }, { file: out, messages: 500, conversations: 5, attachments: 0 })
    const doc = JSON.parse(await readFile(out, 'utf8'))
    assert.equal(doc.format, JSON_EXPORT_FORMAT)
    assert.equal(doc.v, 1)
    assert.equal(doc.exportedAt, 1_234)
    assert.equal(doc.self, ME)
    assert.deepEqual(doc.scope, { conversation: null, since: null, until: null })
    assert.deepEqual(doc.totals, { conversations: 5, messages: 500, attachments: 0 })
    assert.deepEqual(doc.conversations.map((c: { peer: string }) => c.peer), [...fixture.peers].sort())
    for (const c of doc.conversations) {
      const name = fixture.names.get(c.peer)
      if (name === undefined) assert.equal('name' in c, false)
      else assert.equal(c.name, name)
      assert.deepEqual(c.messages, await collect(store.messages(c.peer)))
    }
    // every field of every input message survives
    const all = doc.conversations.flatMap((c: { messages: StoredMessage[] }) => c.messages)
    assert.deepEqual(all, sorted(fixture.messages))
  })

  const human: Array<[ExportFormat, (doc: string) => Seen[], boolean]> = [
    ['html', parseHtml, false],
    ['md', parseMarkdown, true],
    ['txt', parseText, false]
  ]
  for (const [format, parse, trimEnd] of human) {
    it(`${format}: every message with its sender label, time and exact text, in order`, async () => {
      const out = join(dir, `all.${format}`)
      const r = await exportHistory({ store, self: ME, format, out })
      assert.equal(r.messages, 500)
      assert.equal(r.conversations, 5)
      const doc = await readFile(out, 'utf8')
      assert.deepEqual(parse(doc), expected(fixture, fixture.messages, { trimEnd }))
      assert.equal((await stat(out)).mode & 0o777, 0o600)
    })
  }

  it('html: self-contained, no script from message text or names, no script at all', async () => {
    const out = join(dir, 'safe.html')
    await exportHistory({ store, self: ME, format: 'html', out })
    const doc = await readFile(out, 'utf8')
    assert.doesNotMatch(doc, /<script/i)
    assert.doesNotMatch(doc, /<img/i)
    assert.doesNotMatch(doc, /<[^>]*\sonerror=/i)
    assert.match(doc, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;/)
    assert.match(doc, /Content-Security-Policy" content="default-src 'none'/)
    // no external resources
    assert.doesNotMatch(doc, /(src|href)="(https?:)?\/\//i)
    // names beside addresses in the headers
    for (const p of fixture.peers) {
      const name = fixture.names.get(p)
      const h2 = new RegExp(`<h2>(?:<bdi>([^<]*)</bdi> )?<span class="addr">${p}</span></h2>`).exec(doc)
      assert.ok(h2, `header for ${p}`)
      assert.equal(h2[1] === undefined ? undefined : unescapeHtml(h2[1]), name?.replace(/\n/g, ' '))
    }
    // every tag in the file is one the exporter writes
    const allowed = new Set(['!doctype', 'a', 'article', 'b', 'bdi', 'body', 'div', 'footer', 'h1', 'h2', 'head', 'header', 'html', 'main', 'meta', 'p', 'section', 'span', 'style', 'time', 'title'])
    for (const m of doc.matchAll(/<\/?([a-zA-Z0-9!]+)/g)) assert.ok(allowed.has(m[1].toLowerCase()), m[0])
  })

  it('md: no raw markup or block syntax from message text', async () => {
    const out = join(dir, 'safe.md')
    await exportHistory({ store, self: ME, format: 'md', out })
    const doc = await readFile(out, 'utf8')
    // every markup character from a text or name is backslash-escaped (an odd run of backslashes before it)
    const texts = doc.replace(/`0x[0-9a-f]{40}`/g, '').replace(/^\*\*|\*\* · /gm, '')
    assert.doesNotMatch(texts, /(^|[^\\])(\\\\)*[<[`*_]/m)
    for (const line of doc.split('\n')) {
      // only the exporter's own headings, list items and quote open a line with block syntax
      if (/^(#|-|>|\d+\.|```|===|---)/.test(line)) {
        assert.match(line, /^(# tokenim export|## |- Account|- Exported|- Range|> This file is not encrypted|---$)/, line)
      }
    }
    for (const p of fixture.peers) {
      const name = fixture.names.get(p)
      assert.ok(doc.includes(name === undefined ? `## \`${p}\`` : `\\(\`${p}\`\\)`), `header for ${p}`)
    }
  })

  it('one conversation (ADDR) only', async () => {
    const p = fixture.peers[2]
    for (const format of ['json', 'txt'] as const) {
      const out = join(dir, `one.${format}`)
      const r = await exportHistory({ store, self: ME, format, out, conversation: p.toUpperCase().replace('0X', '0x') })
      assert.equal(r.messages, 100)
      assert.equal(r.conversations, 1)
      const doc = await readFile(out, 'utf8')
      if (format === 'json') {
        const j = JSON.parse(doc)
        assert.equal(j.scope.conversation, p)
        assert.equal(j.conversations.length, 1)
        assert.deepEqual(j.conversations[0].messages, sorted(fixture.messages.filter(m => m.conversation === p)))
      } else {
        assert.deepEqual(parseText(doc), expected(fixture, fixture.messages.filter(m => m.conversation === p)))
      }
    }
    // a conversation with nothing in it: present, empty
    const empty = '0x' + 'ee'.repeat(20)
    const r = await exportHistory({ store, self: ME, format: 'json', out: join(dir, 'empty.json'), conversation: empty })
    assert.equal(r.messages, 0)
    const j = JSON.parse(await readFile(join(dir, 'empty.json'), 'utf8'))
    assert.deepEqual(j.conversations, [{ peer: empty, messages: [] }])
  })

  it('since/until are inclusive, exact at the boundaries, for one conversation and for all', async () => {
    const times = [...new Set(fixture.messages.map(m => m.ts))].sort((a, b) => a - b)
    const since = times[37]
    const until = times[412]
    const inRange = fixture.messages.filter(m => m.ts >= since && m.ts <= until)
    assert.ok(inRange.length > 0 && inRange.length < 500)

    const all = JSON.parse(await readFile((await exportHistory({ store, self: ME, format: 'json', out: join(dir, 'range.json'), since, until })).file, 'utf8'))
    assert.deepEqual(all.scope, { conversation: null, since, until })
    assert.deepEqual(all.conversations.flatMap((c: { messages: StoredMessage[] }) => c.messages), sorted(inRange))
    assert.equal(all.totals.messages, inRange.length)

    // one ms inside each boundary drops exactly the messages on it
    const narrower = JSON.parse(await readFile((await exportHistory({ store, self: ME, format: 'json', out: join(dir, 'range2.json'), since: since + 1, until: until - 1 })).file, 'utf8'))
    assert.deepEqual(narrower.conversations.flatMap((c: { messages: StoredMessage[] }) => c.messages),
      sorted(inRange.filter(m => m.ts !== since && m.ts !== until)))

    const p = fixture.peers[1]
    const one = await exportHistory({ store, self: ME, format: 'html', out: join(dir, 'range.html'), conversation: p, since, until })
    const want = inRange.filter(m => m.conversation === p)
    assert.equal(one.messages, want.length)
    assert.deepEqual(parseHtml(await readFile(one.file, 'utf8')), expected(fixture, want))

    // conversations without messages in the range are left out of an all-conversations export
    const first = fixture.messages.filter(m => m.conversation === fixture.peers[0])
    const lastOfFirst = Math.max(...first.map(m => m.ts))
    const r = await exportHistory({ store, self: ME, format: 'txt', out: join(dir, 'range.txt'), until: lastOfFirst })
    assert.equal(r.conversations, 1)
    assert.equal(r.messages, 100)
  })
  it('progress: from 0 of the known total to every message and the whole file; no total with a time range', async () => {
    const seen: ExportProgress[] = []
    const out = join(dir, 'progress.json')
    const r = await exportHistory({ store, self: ME, format: 'json', out, onProgress: (p) => { seen.push(p) } })
    assert.deepEqual(seen[0], { messages: 0, totalMessages: 500, conversations: 0, attachmentsCopied: 0, bytes: 0 })
    assert.deepEqual(seen.at(-1), { messages: 500, totalMessages: 500, conversations: 5, attachmentsCopied: 0, bytes: (await stat(out)).size })
    for (const key of ['messages', 'conversations', 'bytes'] as const) {
      const values = seen.map(p => p[key])
      assert.deepEqual(values, [...values].sort((a, b) => a - b), key)
    }
    assert.equal(r.messages, 500)
    const one: ExportProgress[] = []
    await exportHistory({ store, self: ME, format: 'txt', out: join(dir, 'progress-one.txt'), conversation: fixture.peers[1], onProgress: (p) => { one.push(p) } })
    assert.equal(one[0].totalMessages, 100)
    const ranged: ExportProgress[] = []
    const since = Math.min(...fixture.messages.map(m => m.ts)) + 1
    const rr = await exportHistory({ store, self: ME, format: 'txt', out: join(dir, 'progress-ranged.txt'), since, onProgress: (p) => { ranged.push(p) } })
    assert.ok(ranged.every(p => p.totalMessages === undefined))
    assert.equal(ranged.at(-1)?.messages, rr.messages)
  })
})

describe('export: files', function () {
  let cleanup: () => Promise<void>
  let dir: string
  let store: Store

  beforeEach(async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    dir = t.dir
    store = await openStore(join(dir, 'store'))
    await fill(store, 2, 20)
  })

  afterEach(async () => {
    await store.close()
    await cleanup()
  })

  it('refuses to overwrite an existing file (FILE_EXISTS), leaving it intact; --force replaces it', async () => {
    const out = join(dir, 'x.html')
    await writeFile(out, 'precious')
    await assert.rejects(exportHistory({ store, self: ME, format: 'html', out }), err => isTokenimError(err, 'FILE_EXISTS'))
    assert.equal(await readFile(out, 'utf8'), 'precious')
    const r = await exportHistory({ store, self: ME, format: 'html', out, force: true })
    assert.equal(r.messages, 40)
    assert.match(await readFile(out, 'utf8'), /^<!DOCTYPE html>/)
    assert.equal((await stat(out)).mode & 0o777, 0o600)
    assert.deepEqual((await readdir(dir)).sort(), ['store', 'x.html'])
  })

  it('refuses an existing attachment folder of an html/md export', async () => {
    await mkdir(join(dir, 'y.md.files'))
    await assert.rejects(exportHistory({ store, self: ME, format: 'md', out: join(dir, 'y.md') }), err => isTokenimError(err, 'FILE_EXISTS'))
    assert.deepEqual((await readdir(dir)).sort(), ['store', 'y.md.files'])
  })

  it('an unwritable location is a clear error and leaves nothing behind', async () => {
    const file = join(dir, 'regular')
    await writeFile(file, 'x')
    for (const format of ['html', 'json'] as const) {
      const out = join(file, `x.${format}`)
      await assert.rejects(exportHistory({ store, self: ME, format, out }), err => {
        assert.ok(isTokenimError(err), String(err))
        assert.ok(['NO_SUCH_DIRECTORY', 'PERMISSION_DENIED'].includes(err.code), err.code)
        assert.ok(err.message.includes(out))
        return true
      })
    }
    await assert.rejects(exportHistory({ store, self: ME, format: 'txt', out: join(dir, 'missing', 'x.txt') }), err => isTokenimError(err, 'NO_SUCH_DIRECTORY'))
    assert.deepEqual((await readdir(dir)).sort(), ['regular', 'store'])
  })

  it('unknown format, bad range, bad address and a directory as --out are errors before anything is written', async () => {
    await assert.rejects(exportHistory({ store, self: ME, format: 'pdf', out: join(dir, 'x.pdf') }), err => isTokenimError(err, 'USAGE'))
    await assert.rejects(exportHistory({ store, self: ME, format: 'json', out: join(dir, 'x.json'), since: 10, until: 9 }), err => isTokenimError(err, 'USAGE'))
    await assert.rejects(exportHistory({ store, self: ME, format: 'json', out: join(dir, 'x.json'), conversation: 'alice' }), err => isTokenimError(err, 'INVALID_ADDRESS'))
    await assert.rejects(exportHistory({ store, self: ME, format: 'json', out: dir, force: true }), err => isTokenimError(err, 'USAGE'))
    assert.deepEqual((await readdir(dir)).sort(), ['store'])
  })

  it('an abort midway leaves no partial file and no attachment folder', async () => {
    const p = peer(0x100)
    const bytes = new TextEncoder().encode('attachment bytes')
    await store.addMessages([
      { id: 'att-1', conversation: p, from: p, to: ME, ts: 1_700_000_000_500, text: 'one', direction: 'in', status: 'received', attachment: attachmentFor(bytes, 'a.bin') },
      { id: 'att-2', conversation: p, from: p, to: ME, ts: 1_700_000_001_500, text: 'two', direction: 'in', status: 'received', attachment: attachmentFor(bytes, 'b.bin') }
    ])
    const controller = new AbortController()
    const out = join(dir, 'abort.html')
    let calls = 0
    const getAttachment = (): AsyncIterable<Uint8Array> => {
      // the user presses Ctrl-C while the second attachment is copied
      if (++calls === 2) controller.abort(new TokenimError('INTERRUPTED', 'interrupted'))
      return (async function * () { yield bytes })()
    }
    await assert.rejects(exportHistory({ store, self: ME, format: 'html', out, getAttachment, signal: controller.signal }), err => isTokenimError(err, 'INTERRUPTED'))
    assert.equal(calls, 2)
    assert.deepEqual((await readdir(dir)).sort(), ['store'])
  })
})
