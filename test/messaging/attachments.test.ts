import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unixfs } from '@helia/unixfs'
import { LevelBlockstore } from 'blockstore-level'
import {
  ATTACHMENT_CHUNK_BYTES, decodeAttachmentKey, decryptAttachmentStream, encryptAttachmentStream, guessMime,
  newAttachmentKey, readAttachment
} from '../../src/messaging/index.ts'
import type { MessageAttachment } from '../../src/messaging/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { writeFileAtomic } from '../../src/util/fs.ts'
import { NodeHarness, waitFor, waitResolvable } from '../node/helpers.ts'

async function * from (...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p
}

async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = []
  for await (const c of it) out.push(c)
  return Buffer.concat(out)
}

async function seal (plain: Uint8Array, key: Uint8Array, piece = 100_000): Promise<Buffer> {
  const pieces: Uint8Array[] = []
  for (let o = 0; o < plain.length; o += piece) pieces.push(plain.subarray(o, o + piece))
  return await collect(encryptAttachmentStream(from(...pieces), key))
}

async function rejects (p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => { assert.ok(isTokenimError(err, code), `expected ${code}, got ${String(err)}`); return true })
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('messaging: attachments', function () {
  this.timeout(120_000)

  describe('chunked AES-256-GCM stream', () => {
    const key = decodeAttachmentKey(newAttachmentKey())
    const C = ATTACHMENT_CHUNK_BYTES

    it('round-trips sizes around the chunk boundaries, in any input piece size', async () => {
      for (const size of [0, 1, C - 1, C, C + 1, 3 * C]) {
        const plain = randomBytes(size)
        const sealed = await seal(plain, key, 65_536 + 7)
        assert.equal(sealed.length, size + 16 * Math.max(1, Math.ceil(size / C)), `ciphertext size for ${size}`)
        const opened = await collect(decryptAttachmentStream(from(sealed.subarray(0, 1000), sealed.subarray(1000)), key))
        assert.ok(opened.equals(plain), `round trip of ${size} bytes`)
      }
    })

    it('refuses tampering, truncation at a chunk boundary, dropped, reordered or appended chunks (ATTACHMENT_CORRUPT)', async () => {
      const plain = randomBytes(3 * C)
      const sealed = await seal(plain, key)
      const R = C + 16
      const flipped = Buffer.from(sealed)
      flipped[R + 5] ^= 1
      const cases: Array<[string, Buffer]> = [
        ['flipped byte', flipped],
        ['cut after two chunks', sealed.subarray(0, 2 * R)],
        ['cut inside a chunk', sealed.subarray(0, sealed.length - 3)],
        ['middle chunk dropped', Buffer.concat([sealed.subarray(0, R), sealed.subarray(2 * R)])],
        ['chunks swapped', Buffer.concat([sealed.subarray(R, 2 * R), sealed.subarray(0, R), sealed.subarray(2 * R)])],
        ['bytes appended', Buffer.concat([sealed, Buffer.alloc(16)])],
        ['empty', Buffer.alloc(0)]
      ]
      for (const [what, bad] of cases) {
        await rejects(collect(decryptAttachmentStream(from(bad), key)), 'ATTACHMENT_CORRUPT').catch((err: Error) => { throw new Error(`${what}: ${err.message}`) })
      }
      await rejects(collect(decryptAttachmentStream(from(sealed), decodeAttachmentKey(newAttachmentKey()))), 'ATTACHMENT_CORRUPT')
    })

    it('keys are versioned text; MIME types come from the extension', () => {
      assert.match(newAttachmentKey(), /^v1\.[A-Za-z0-9_-]{43}$/)
      assert.throws(() => decodeAttachmentKey('v2.abc'), (err: unknown) => isTokenimError(err, 'ATTACHMENT_CORRUPT'))
      assert.equal(guessMime('Photo.JPG'), 'image/jpeg')
      assert.equal(guessMime('note.opus'), 'audio/ogg')
      assert.equal(guessMime('x.unknown'), 'application/octet-stream')
      assert.equal(guessMime('README'), 'application/octet-stream')
    })
  })

  describe('reading from a blockstore', () => {
    let dir: string
    let bs: LevelBlockstore
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tokenim-att-'))
      bs = new LevelBlockstore(join(dir, 'blocks'))
      await bs.open()
    })
    after(async () => {
      await bs.close()
      await rm(dir, { recursive: true, force: true })
    })

    it('a tampered or truncated ciphertext, or a wrong hash, is rejected and nothing is written out', async () => {
      const fs = unixfs({ blockstore: bs })
      const plain = randomBytes(2 * ATTACHMENT_CHUNK_BYTES + 1234)
      const keyText = newAttachmentKey()
      const sealed = await seal(plain, decodeAttachmentKey(keyText))
      const ref = (cid: string, over: Partial<MessageAttachment> = {}): MessageAttachment =>
        ({ cid, key: keyText, name: 'x.bin', mime: 'application/octet-stream', size: plain.length, sha256: sha(plain), ...over })

      const good = (await fs.addBytes(sealed)).toString()
      const out = join(dir, 'good.bin')
      await writeFileAtomic(out, readAttachment(ref(good), { blockstore: bs, offline: true }))
      assert.ok((await readFile(out)).equals(plain))
      assert.equal((await stat(out)).mode & 0o777, 0o600)

      const flipped = Buffer.from(sealed)
      flipped[1000] ^= 0x80
      const truncated = sealed.subarray(0, ATTACHMENT_CHUNK_BYTES + 16)
      const bad: Array<[string, MessageAttachment]> = [
        ['tampered', ref((await fs.addBytes(flipped)).toString())],
        ['truncated', ref((await fs.addBytes(truncated)).toString())],
        ['wrong sha256', ref(good, { sha256: sha(Buffer.from('other')) })],
        ['wrong size', ref(good, { size: plain.length - 1 })]
      ]
      for (const [what, r] of bad) {
        const target = join(dir, `${what.replace(/ /g, '-')}.bin`)
        await rejects(writeFileAtomic(target, readAttachment(r, { blockstore: bs, offline: true })), 'ATTACHMENT_CORRUPT')
          .catch((err: Error) => { throw new Error(`${what}: ${err.message}`) })
        await assert.rejects(stat(target), { code: 'ENOENT' })
      }
      assert.deepEqual((await readdir(dir)).filter(f => f.endsWith('.tmp')), [], 'no temporary files left')

      // blocks not here, offline: unavailable
      const absent = ref('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
      await rejects(collect(readAttachment(absent, { blockstore: bs, offline: true })), 'ATTACHMENT_UNAVAILABLE')
    })
  })

  describe('between two TokenimNodes on 127.0.0.1', () => {
    const h = new NodeHarness()
    after(async () => { await h.cleanup() })

    it('a few MB round-trip with identical bytes (background fetch, verify, pin), and a file over the limit is refused before anything is sent', async () => {
      const [a, b] = await Promise.all([h.node(), h.node()])
      await waitResolvable(a, b)
      const dir = await h.dir()
      const file = join(dir, 'holiday.png')
      const plain = randomBytes(3 * 1024 * 1024 + 321)
      await writeFile(file, plain)

      const fetched: string[] = []
      b.on('attachment', (e) => { fetched.push(e.id) })
      const progress: number[] = []
      const t0 = Date.now()
      const sent = await a.sendFile(b.address, file, { caption: 'look', onProgress: (p) => { progress.push(p.bytes) } })
      const sendMs = Date.now() - t0
      assert.equal(sent.status, 'delivered')
      assert.equal(sent.attachment.size, plain.length)
      assert.equal(sent.attachment.sha256, sha(plain))
      assert.equal(sent.attachment.mime, 'image/png')
      assert.equal(sent.attachment.name, 'holiday.png')
      assert.equal(progress.at(-1), plain.length)
      assert.ok(await a.hasAttachment(sent.id), 'the sender keeps it pinned')

      const t1 = Date.now()
      await waitFor(() => fetched.includes(sent.id), 'b to fetch the attachment in the background')
      const fetchMs = Date.now() - t1
      assert.ok(await b.hasAttachment(sent.id))
      const [msg] = await b.messages(a.address)
      assert.equal(msg.text, 'look')
      assert.deepEqual(msg.attachment, sent.attachment)

      const out = join(dir, 'saved.png')
      const saved = await b.saveAttachment(sent.id, out)
      assert.equal(saved.size, plain.length)
      assert.ok((await readFile(out)).equals(plain), 'identical bytes')
      await rejects(b.saveAttachment(sent.id, out), 'FILE_EXISTS')
      await b.saveAttachment(sent.id, out, { force: true, offline: true })
      assert.ok((await readFile(out)).equals(plain))
      await rejects(b.saveAttachment(msg.id.replace(/.$/, c => c === '0' ? '1' : '0'), join(dir, 'none')), 'NO_ATTACHMENT')
      console.log(`      3 MiB: encrypt+add+deliver ${sendMs} ms, background fetch+verify+pin ${fetchMs} ms`)

      // over the limit: refused before anything is stored or sent
      const before = (await a.messages(b.address)).length
      await rejects(a.sendFile(b.address, file, { maxBytes: 1024 * 1024 }), 'FILE_TOO_LARGE')
      await rejects(a.sendFile(b.address, join(dir, 'missing.png')), 'FILE_NOT_FOUND')
      assert.equal((await a.messages(b.address)).length, before)
      assert.equal((await a.status()).outbox, 0)
    })
  })
})
