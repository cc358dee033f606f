import assert from 'node:assert/strict'
import { readFile, readdir, stat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { exportHistory, NOT_AVAILABLE, safeFileName } from '../../src/backup/export/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store, StoredMessage } from '../../src/store/index.ts'
import { ME, attachmentFor, peer, tempDir, unescapeHtml } from './helpers.ts'

const P = peer(0x42)
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4])
const EVIL = enc('<html><script>alert(1)</script></html>')
const MISSING = enc('not on this device')
const WRONG = enc('the real bytes')
const BROKEN = enc('unreadable')

function message (id: string, ts: number, text: string, attachment?: StoredMessage['attachment']): StoredMessage {
  return { id, conversation: P, from: P, to: ME, ts, text, direction: 'in', status: 'received', ...(attachment !== undefined ? { attachment } : {}) }
}

const MESSAGES: StoredMessage[] = [
  message('a', 1000, 'a photo', attachmentFor(PNG, 'holiday photo.png', 'image/png')),
  message('b', 2000, 'no attachment'),
  message('c', 3000, '', attachmentFor(EVIL, '../../evil<script>.html', 'text/html')),
  message('d', 4000, 'missing', attachmentFor(MISSING, 'missing.pdf', 'application/pdf')),
  message('e', 5000, 'wrong bytes', attachmentFor(WRONG, 'wrong.bin')),
  message('f', 6000, 'read error', attachmentFor(BROKEN, 'broken.bin'))
]

/** The attachment service of the future, as the caller passes it: bytes for some, none for others. */
function getAttachment (calls: string[]) {
  return (m: StoredMessage): AsyncIterable<Uint8Array> | undefined => {
    calls.push(m.id)
    switch (m.id) {
      case 'a': return (async function * () { yield PNG.subarray(0, 5); yield PNG.subarray(5) })()
      case 'c': return (async function * () { yield EVIL })()
      case 'd': return undefined
      case 'e': return (async function * () { yield enc('other bytes!!!') })()
      case 'f': return (async function * () { yield BROKEN.subarray(0, 3); throw new Error('disk read failed') })()
      default: throw new Error(`asked for a message without attachment: ${m.id}`)
    }
  }
}

describe('export: attachments', function () {
  let cleanup: () => Promise<void>
  let dir: string
  let store: Store

  beforeEach(async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    dir = t.dir
    store = await openStore(join(dir, 'store'))
    await store.setContact(P, 'Carol')
    await store.addMessages(MESSAGES)
  })

  afterEach(async () => {
    await store.close()
    await cleanup()
  })

  async function checkFolder (out: string): Promise<string[]> {
    const folder = `${out}.files`
    assert.equal((await stat(folder)).mode & 0o777, 0o700)
    const names = (await readdir(folder)).sort()
    assert.deepEqual(names, ['0001-holiday_photo.png', '0002-evil_script_.html'])
    for (const n of names) assert.equal((await stat(join(folder, n))).mode & 0o777, 0o600)
    assert.deepEqual(new Uint8Array(await readFile(join(folder, names[0]))), PNG)
    assert.deepEqual(new Uint8Array(await readFile(join(folder, names[1]))), EVIL)
    // only the export, its folder and the store: no temporary files, nothing escaped the folder
    assert.deepEqual((await readdir(dir)).sort(), [out.slice(dir.length + 1), `${out.slice(dir.length + 1)}.files`, 'store'].sort())
    return names
  }

  it('html: copies the bytes beside the export and links them relatively; the rest are listed as unavailable', async () => {
    const out = join(dir, 'chat.html')
    const calls: string[] = []
    const r = await exportHistory({ store, self: ME, format: 'html', out, getAttachment: getAttachment(calls) })
    assert.deepEqual(calls, ['a', 'c', 'd', 'e', 'f'])
    assert.deepEqual({ messages: r.messages, attachments: r.attachments, copied: r.attachmentsCopied, unavailable: r.attachmentsUnavailable, filesDir: r.filesDir },
      { messages: 6, attachments: 5, copied: 2, unavailable: 3, filesDir: `${out}.files` })
    const names = await checkFolder(out)
    const doc = await readFile(out, 'utf8')
    const links = [...doc.matchAll(/<a href="([^"]*)"[^>]*>([^<]*)<\/a>/g)].map(m => ({ href: unescapeHtml(m[1]), text: unescapeHtml(m[2]) }))
    assert.deepEqual(links, [
      { href: `chat.html.files/${names[0]}`, text: 'holiday photo.png' },
      { href: `chat.html.files/${names[1]}`, text: '../../evil<script>.html' }
    ])
    for (const l of links) assert.ok((await stat(resolve(dirname(out), decodeURIComponent(l.href)))).isFile())
    assert.doesNotMatch(doc, /<script/i)
    assert.ok(doc.includes(`missing.pdf <span class="dim">(application/pdf, 18 B) — ${NOT_AVAILABLE}</span>`))
    assert.ok(doc.includes(`wrong.bin <span class="dim">(application/octet-stream, 14 B) — ${NOT_AVAILABLE} (its content does not match its checksum)</span>`))
    assert.ok(doc.includes(`broken.bin <span class="dim">(application/octet-stream, 10 B) — ${NOT_AVAILABLE} (could not be read)</span>`))
    assert.match(doc, /<h2><bdi>Carol<\/bdi> <span class="addr">0x0+42<\/span><\/h2>/)
  })

  it('md: copies and links the same way', async () => {
    const out = join(dir, 'chat.md')
    const r = await exportHistory({ store, self: ME, format: 'md', out, getAttachment: getAttachment([]) })
    assert.equal(r.attachmentsCopied, 2)
    const names = await checkFolder(out)
    const doc = await readFile(out, 'utf8')
    assert.ok(doc.includes(`📎 [holiday photo\\.png](<chat.md.files/${names[0]}>) \\(image/png, 12 B\\)`), doc)
    assert.ok(doc.includes(`📎 [\\.\\./\\.\\./evil\\<script\\>\\.html](<chat.md.files/${names[1]}>)`), doc)
    assert.ok(doc.includes(`📎 missing\\.pdf \\(application/pdf, 18 B\\) — ${NOT_AVAILABLE}`))
    assert.ok(doc.includes('## Carol \\(`0x'))
  })

  it('without a callback html/md list every attachment as not available locally and make no folder', async () => {
    for (const format of ['html', 'md'] as const) {
      const out = join(dir, `bare.${format}`)
      const r = await exportHistory({ store, self: ME, format, out })
      assert.deepEqual([r.attachments, r.attachmentsCopied, r.attachmentsUnavailable, r.filesDir], [5, 0, 5, undefined])
      const doc = await readFile(out, 'utf8')
      assert.equal(doc.split(NOT_AVAILABLE).length - 1, 5)
    }
    assert.deepEqual((await readdir(dir)).sort(), ['bare.html', 'bare.md', 'store'])
  })

  it('json and txt list attachments without reading them', async () => {
    const calls: string[] = []
    const json = await exportHistory({ store, self: ME, format: 'json', out: join(dir, 'x.json'), getAttachment: getAttachment(calls) })
    const txt = await exportHistory({ store, self: ME, format: 'txt', out: join(dir, 'x.txt'), getAttachment: getAttachment(calls) })
    assert.deepEqual(calls, [])
    assert.equal(json.attachments, 5)
    assert.equal(txt.attachments, 5)
    const doc = JSON.parse(await readFile(join(dir, 'x.json'), 'utf8'))
    assert.deepEqual(doc.conversations[0].messages, MESSAGES)
    assert.equal(doc.conversations[0].name, 'Carol')
    const text = await readFile(join(dir, 'x.txt'), 'utf8')
    for (const m of MESSAGES) {
      if (m.attachment === undefined) continue
      assert.ok(text.includes(`    [attachment: ${m.attachment.name} (${m.attachment.mime}, ${m.attachment.size} B) sha256 ${m.attachment.sha256} cid ${m.attachment.cid}]`), m.id)
    }
    assert.ok(text.includes('[1970-01-01 00:00:03 UTC] Carol: \n    [attachment: ../../evil<script>.html'))
    assert.deepEqual((await readdir(dir)).sort(), ['store', 'x.json', 'x.txt'])
  })

  it('file names of copies are safe', () => {
    assert.equal(safeFileName('../../etc/passwd'), 'etc_passwd')
    assert.equal(safeFileName('...'), 'attachment')
    assert.equal(safeFileName(''), 'attachment')
    assert.equal(safeFileName('a\u0000b/c\\d:e*f?.txt'), 'a_b_c_d_e_f_.txt')
    assert.equal(safeFileName('Zoë 你好.jpg'), 'Zoë_你好.jpg')
    const long = safeFileName('x'.repeat(500) + '.jpeg')
    assert.equal(long.length, 80)
    assert.ok(long.endsWith('.jpeg'))
  })
})
