import assert from 'node:assert/strict'
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as cborg from 'cborg'
import { x25519GenerateKeyPair, x25519SharedSecret } from '../../src/crypto/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import {
  createReceipt,
  createReceiptBatch,
  decodeBody,
  decodeEnvelope,
  decodeFrame,
  decodeReceipt,
  encodeBody,
  encodeFrame,
  EPOCH_MAX_AGE_MS,
  EPOCH_MAX_MESSAGES,
  isMessageId,
  MAX_FRAME_BYTES,
  MAX_RECEIPT_IDS,
  messageIdTime,
  newMessageId,
  openingSecret,
  openMessage,
  openSendEpoch,
  receiptIds,
  receiptMacKeys,
  receivingEpochKey,
  sealEphemeral,
  sealMessage,
  SendEpoch,
  staticSecret,
  verifyReceipt
} from '../../src/messaging/index.ts'
import type { Envelope, EnvelopeHeaderV2, Frame, Receipt } from '../../src/messaging/index.ts'
import { decodeFrameStrictly } from '../../src/messaging/envelope.ts'

const ALICE = '0x' + 'a1'.repeat(20)
const BOB = '0x' + 'b2'.repeat(20)
const CAROL = '0x' + 'c3'.repeat(20)

function rejects (fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isTokenimError(err, code), `expected ${code}, got ${(err as Error)?.name}: ${(err as { code?: string })?.code} ${(err as Error)?.message}`)
    return true
  })
}

/** The frame with the head of its first byte string of 24..255 bytes written in 2 bytes instead of 1. */
function widenBytesHead (bytes: Uint8Array): Uint8Array {
  const at = bytes.indexOf(0x58)
  if (at < 0) return Uint8Array.from([...bytes, 0])
  return Uint8Array.from([...bytes.subarray(0, at), 0x59, 0x00, ...bytes.subarray(at + 1)])
}

/** A random 32-byte AES key (an epoch key nobody else holds). */
function createSecretKeyForTest (): ReturnType<typeof createSecretKey> {
  return createSecretKey(randomBytes(32))
}

/** Re-encode a decoded map with one field changed (bypassing our encoder). */
function mutate (bytes: Uint8Array, change: (m: Record<string, unknown>) => void): Uint8Array {
  const m = dagCbor.decode(bytes) as Record<string, unknown>
  change(m)
  return dagCbor.encode(m)
}

describe('messaging/envelope', () => {
  const alice = x25519GenerateKeyPair()
  const bob = x25519GenerateKeyPair()
  const mallory = x25519GenerateKeyPair()

  function seal (text = 'hello bob'): { envelope: Envelope, bytes: Uint8Array } {
    return sealMessage({ from: ALICE, to: BOB, body: { text } }, alice, bob.publicKey)
  }

  function open (bytes: Uint8Array, senderKey = alice.publicKey): ReturnType<typeof openMessage> {
    return openMessage(decodeEnvelope(bytes), { self: BOB, keys: bob, senderKey })
  }

  describe('message ids', () => {
    it('are UUIDv7, unique and sortable by time', () => {
      const ids = Array.from({ length: 2000 }, () => newMessageId())
      assert.equal(new Set(ids).size, ids.length)
      for (const id of ids) assert.ok(isMessageId(id), id)
      assert.deepEqual([...ids].sort(), ids, 'ids of one process are monotonic')
      const t = Date.now()
      assert.ok(Math.abs(messageIdTime(newMessageId(t)) - t) <= 1)
      assert.ok(newMessageId(1000) < newMessageId(Date.now() + 10_000))
    })
  })

  describe('seal/open', () => {
    it('round-trips text and attachment', () => {
      const { envelope, bytes } = seal('hi ✓ 🚀')
      assert.ok(bytes.length < 400)
      assert.deepEqual(decodeFrame(bytes), envelope)
      const opened = open(bytes)
      assert.equal(opened.body.text, 'hi ✓ 🚀')
      assert.equal(opened.from, ALICE)
      assert.equal(opened.to, BOB)
      assert.equal(opened.id, envelope.id)
      assert.equal(opened.ts, envelope.ts)

      const attachment = { cid: 'bafyfake', key: 'k'.repeat(43), name: 'a.png', mime: 'image/png', size: 12, sha256: 'ab'.repeat(32) }
      const sealed = sealMessage({ from: ALICE.toUpperCase().replace('0X', '0x'), to: BOB, body: { text: '', attachment }, id: newMessageId(), ts: 5 }, alice, bob.publicKey)
      assert.deepEqual(open(sealed.bytes).body, { text: '', attachment })
    })

    it('uses a fresh ephemeral key per message', () => {
      const a = seal('same')
      const b = seal('same')
      assert.notDeepEqual(a.envelope.epk, b.envelope.epk)
      assert.notDeepEqual(a.envelope.ct, b.envelope.ct)
    })

    it('rejects tampered ciphertext with DECRYPT_FAILED', () => {
      const { bytes } = seal()
      for (const i of [0, 5, -1]) {
        const bad = mutate(bytes, m => { const ct = new Uint8Array(m.ct as Uint8Array); ct[(ct.length + i) % ct.length] ^= 1; m.ct = ct })
        rejects(() => open(bad), 'DECRYPT_FAILED')
      }
      rejects(() => open(mutate(bytes, m => { m.ct = (m.ct as Uint8Array).subarray(0, 20) })), 'DECRYPT_FAILED')
    })

    it('rejects tampered associated data (id, ts, from, epk) with DECRYPT_FAILED', () => {
      const { bytes } = seal()
      rejects(() => open(mutate(bytes, m => { m.id = newMessageId() })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { m.ts = (m.ts as number) + 1 })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { m.epk = x25519GenerateKeyPair().publicKey })), 'DECRYPT_FAILED')
      // claimed sender changed to Carol (whose published key Bob looks up is Carol's): the key is Alice's → forged
      rejects(() => open(mutate(bytes, m => { m.from = CAROL }), x25519GenerateKeyPair().publicKey), 'FORGED_SENDER')
      // Carol's record is replaced by Alice's key (attacker controls the lookup): still tied to `from` through the AAD? no —
      // the keys match, so only the AAD binds the address: it must fail
      rejects(() => open(mutate(bytes, m => { m.from = CAROL })), 'DECRYPT_FAILED')
    })

    it('rejects a forged sender', () => {
      // Mallory seals with her own key but claims to be Alice
      const forged = sealMessage({ from: ALICE, to: BOB, body: { text: 'from alice, honest' } }, mallory, bob.publicKey)
      rejects(() => open(forged.bytes), 'FORGED_SENDER')
      // Mallory also writes Alice's public key into spk: she lacks Alice's private key, so the static-static DH differs
      const withAliceKey = mutate(forged.bytes, m => { m.spk = alice.publicKey })
      rejects(() => open(withAliceKey), 'DECRYPT_FAILED')
      const spoofed = sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, { privateKey: mallory.privateKey, publicKey: alice.publicKey }, bob.publicKey)
      rejects(() => open(spoofed.bytes), 'DECRYPT_FAILED')
    })

    it('rejects a message for someone else', () => {
      const toCarol = sealMessage({ from: ALICE, to: CAROL, body: { text: 'x' } }, alice, bob.publicKey)
      rejects(() => open(toCarol.bytes), 'WRONG_RECIPIENT')
      // readdressed to Bob by an attacker: AAD mismatch
      rejects(() => open(mutate(toCarol.bytes, m => { m.to = BOB })), 'DECRYPT_FAILED')
      // sealed to Carol's key but addressed to Bob
      const wrongKey = sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, alice, x25519GenerateKeyPair().publicKey)
      rejects(() => open(wrongKey.bytes), 'DECRYPT_FAILED')
    })

    it('rejects low-order ephemeral keys as malformed', () => {
      const { bytes } = seal()
      rejects(() => open(mutate(bytes, m => { m.epk = new Uint8Array(32) })), 'MALFORMED_FRAME')
    })

    it('seals and opens with the X25519 work done ahead on the thread pool: the same format, checks and errors', async () => {
      const recipientKey = bob.publicKey
      const ephemeral = await sealEphemeral(recipientKey)
      const { envelope, bytes } = sealMessage({ from: ALICE, to: BOB, body: { text: 'made ahead' } }, alice, recipientKey, {}, ephemeral)
      assert.deepEqual(envelope.epk, ephemeral.publicKey)
      assert.equal(open(bytes).body.text, 'made ahead')
      // an ephemeral is for one message: its secret is zeroed once used, and refused then
      assert.ok(ephemeral.sharedSecret.every(b => b === 0))
      rejects(() => sealMessage({ from: ALICE, to: BOB, body: { text: 'again' } }, alice, recipientKey, {}, ephemeral), 'INVALID_MESSAGE_ARGUMENT')
      // opening with the secret made ahead: the same result as openMessage alone
      const options = { self: BOB, keys: bob, senderKey: alice.publicKey }
      const env = decodeEnvelope(seal('opened ahead').bytes)
      assert.deepEqual(openMessage(env, { ...options, ephemeralSecret: await openingSecret(env, options) }), openMessage(env, options))
      // and the same refusals, in the same order
      const cases: Array<[Envelope, typeof options, string]> = [
        [decodeEnvelope(sealMessage({ from: ALICE, to: CAROL, body: { text: 'x' } }, alice, bob.publicKey).bytes), options, 'WRONG_RECIPIENT'],
        [env, { ...options, senderKey: mallory.publicKey }, 'FORGED_SENDER'],
        [decodeEnvelope(mutate(seal().bytes, m => { m.epk = new Uint8Array(32) })), options, 'MALFORMED_FRAME']
      ]
      for (const [e, o, code] of cases) {
        rejects(() => openMessage(e, o), code)
        await assert.rejects(openingSecret(e, o), (err: unknown) => isTokenimError(err, code))
      }
    })

    it('refuses to seal oversized text or bad arguments', () => {
      rejects(() => seal('x'.repeat(70_000)), 'INVALID_MESSAGE_ARGUMENT')
      rejects(() => sealMessage({ from: ALICE, to: ALICE, body: { text: 'x' } }, alice, alice.publicKey), 'INVALID_MESSAGE_ARGUMENT')
      rejects(() => sealMessage({ from: 'alice', to: BOB, body: { text: 'x' } }, alice, bob.publicKey), 'INVALID_MESSAGE_ARGUMENT')
      rejects(() => sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, alice, new Uint8Array(5)), 'INVALID_MESSAGE_ARGUMENT')
    })
  })

  describe('strict decoding', () => {
    it('rejects oversized frames with FRAME_TOO_LARGE', () => {
      rejects(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)), 'FRAME_TOO_LARGE')
      const { bytes } = seal()
      const huge = mutate(bytes, m => { m.ct = new Uint8Array(MAX_FRAME_BYTES) })
      rejects(() => decodeFrame(huge), 'FRAME_TOO_LARGE')
    })

    it('rejects garbage, wrong shapes and non-canonical encodings with MALFORMED_FRAME', () => {
      const { bytes } = seal()
      const cases: Uint8Array[] = [
        new Uint8Array(0),
        Uint8Array.from([0xff]),
        new TextEncoder().encode('{"v":1,"t":"msg"}'),
        dagCbor.encode([1, 2, 3]),
        dagCbor.encode('msg'),
        dagCbor.encode(null),
        dagCbor.encode({}),
        mutate(bytes, m => { m.v = 2 }),
        mutate(bytes, m => { m.t = 'other' }),
        mutate(bytes, m => { m.extra = 1 }),
        mutate(bytes, m => { delete m.spk }),
        mutate(bytes, m => { m.id = 'not-a-uuid' }),
        mutate(bytes, m => { m.id = crypto.randomUUID() }),
        mutate(bytes, m => { m.from = ALICE.toUpperCase() }),
        mutate(bytes, m => { m.to = ALICE }),
        mutate(bytes, m => { m.ts = -1 }),
        mutate(bytes, m => { m.ts = 1.5 }),
        mutate(bytes, m => { m.ts = 2n ** 60n }),
        mutate(bytes, m => { m.epk = new Uint8Array(31) }),
        mutate(bytes, m => { m.spk = 'key' }),
        mutate(bytes, m => { m.ct = new Uint8Array(15) }),
        bytes.subarray(0, bytes.length - 1),
        Uint8Array.from([...bytes, 0])
      ]
      for (const [i, c] of cases.entries()) {
        assert.throws(() => decodeFrame(c), (err: unknown) => isTokenimError(err, 'MALFORMED_FRAME'), `case ${i}`)
      }
      // a receipt where a message is expected and vice versa
      rejects(() => decodeReceipt(bytes), 'MALFORMED_FRAME')
    })

    it('decodes bodies strictly', () => {
      assert.deepEqual(decodeBody(encodeBody({ text: 'x' })), { text: 'x' })
      rejects(() => encodeBody({ text: 'x', attachment: { cid: 'c', key: 'k', name: '', mime: '', size: 1, sha256: 'zz' } }), 'INVALID_MESSAGE_ARGUMENT')
      const bad = [
        dagCbor.encode({ text: 1 }),
        dagCbor.encode({ text: 'x', extra: 1 }),
        dagCbor.encode({ text: 'x', attachment: null }),
        dagCbor.encode({ text: 'x', attachment: { cid: 'c', key: 'k', name: '', mime: '', size: -1, sha256: 'ab'.repeat(32) } }),
        dagCbor.encode([]),
        Uint8Array.from([0xa1])
      ]
      for (const b of bad) rejects(() => decodeBody(b), 'MALFORMED_FRAME')
    })

    it('decodes canonical frames to what the strict path gives, and everything else as it does', function () {
      this.timeout(20_000)
      type Outcome = { frame: Frame } | { code: string, message: string }
      const outcome = (decode: (b: Uint8Array) => Frame, b: Uint8Array): Outcome => {
        try {
          return { frame: decode(b) }
        } catch (err) {
          assert.ok(isTokenimError(err), `untyped error: ${String(err)}`)
          return { code: err.code, message: err.message }
        }
      }
      const same = (b: Uint8Array, label: string): Outcome => {
        const fast = outcome(decodeFrame, b)
        assert.deepEqual(fast, outcome(decodeFrameStrictly, b), label)
        return fast
      }
      // every size of the integer and length heads, ASCII and other texts, both frame types
      const frames: Frame[] = []
      for (const ts of [0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Date.now(), Number.MAX_SAFE_INTEGER]) {
        for (const text of ['', 'x'.repeat(23), 'hi ✓ 🚀 ü'.repeat(30), 'z'.repeat(ts % 2 === 0 ? 1024 : 66_000)]) {
          frames.push(sealMessage({ from: ALICE, to: BOB, body: { text: text.slice(0, 64 * 1024) }, ts }, alice, bob.publicKey).envelope)
        }
        frames.push(createReceipt({ id: newMessageId(), from: ALICE, to: BOB, ts }, { keys: bob, peerKey: alice.publicKey }))
      }
      for (const frame of frames) {
        const bytes = encodeFrame(frame)
        // the bytes @ipld/dag-cbor gives for the frame's map
        assert.deepEqual(Buffer.from(bytes), Buffer.from(dagCbor.encode({ ...frame })))
        assert.deepEqual(same(bytes, 'canonical'), { frame })
        // not canonical: the integer widened, keys in other orders, a key twice, extra or missing keys
        const m = dagCbor.decode(bytes) as Record<string, unknown>
        const variants = [
          cborg.encode(Object.fromEntries(Object.entries(m).sort(([a], [b]) => a < b ? -1 : 1)), { mapSorter: undefined }),
          cborg.encode(Object.fromEntries(Object.entries(m).reverse()), { mapSorter: undefined }),
          Uint8Array.from([...bytes.subarray(0, 1).map(b => b + 1), ...bytes.subarray(1), ...dagCbor.encode('ts'), 0]),
          dagCbor.encode({ ...m, x: 1 }),
          mutate(bytes, x => { delete x.ts }),
          mutate(bytes, x => { x.ts = String(x.ts) }),
          mutate(bytes, x => { x.v = 1.5 }),
          // heads longer than they need: the map's count, a key's length, a byte string's length
          Uint8Array.from([0xb8, bytes[0] & 0x1f, ...bytes.subarray(1)]),
          Uint8Array.from([bytes[0], 0x78, bytes[1] & 0x1f, ...bytes.subarray(2)]),
          widenBytesHead(bytes)
        ]
        const ts = frame.ts
        if (ts < 2 ** 32) {
          // the ts head written in 8 bytes
          const narrow = dagCbor.encode(ts)
          const wide = Uint8Array.from([0x1b, ...Buffer.from(BigInt(ts).toString(16).padStart(16, '0'), 'hex')])
          const at = Buffer.from(bytes).indexOf(Buffer.concat([Buffer.from(dagCbor.encode('ts')), narrow]))
          variants.push(Buffer.concat([bytes.subarray(0, at + 3), wide, bytes.subarray(at + 3 + narrow.length)]))
        }
        for (const [i, v] of variants.entries()) {
          assert.ok('code' in same(v, `variant ${i}`), `variant ${i} must be refused`)
        }
        // random damage: flips, cuts, inserted bytes
        for (let k = 0; k < 30; k++) {
          const b = new Uint8Array(bytes)
          const at = Math.floor(Math.random() * Math.min(b.length, 200))
          if (k % 3 === 0) b[at] ^= 1 << (k % 8)
          else if (k % 3 === 1) b[at] = Math.floor(Math.random() * 256)
          const input = k % 5 === 4 ? b.subarray(0, at) : k % 7 === 6 ? Uint8Array.from([...b.subarray(0, at), 0x00, ...b.subarray(at)]) : b
          if (input.length > 0) same(input, `damage ${k}`)
        }
      }
    })

    it('opens an envelope sealed by an independent implementation of the format, which opens ours', () => {
      // docs: ikm = X25519(e, R) || X25519(s, R); okm = HKDF(ikm, "tokenim/v1/msg", "tokenim/v1/msg/key" || E || S || R, 44)
      const eph = x25519GenerateKeyPair()
      const header = { v: 1, t: 'msg', id: newMessageId(), from: ALICE, to: BOB, ts: 1_700_000_000_000, epk: eph.publicKey, spk: alice.publicKey }
      const keys = (e: Uint8Array, s: Uint8Array): Buffer => {
        const ikm = Buffer.concat([x25519SharedSecret(e, bob.publicKey), x25519SharedSecret(s, bob.publicKey)])
        return Buffer.from(hkdfSync('sha256', ikm, 'tokenim/v1/msg', Buffer.concat([Buffer.from('tokenim/v1/msg/key'), eph.publicKey, alice.publicKey, bob.publicKey]), 44))
      }
      const okm = keys(eph.privateKey, alice.privateKey)
      const cipher = createCipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32), { authTagLength: 16 })
      cipher.setAAD(dagCbor.encode(header))
      const ct = Buffer.concat([cipher.update(dagCbor.encode({ text: 'from elsewhere ✓' })), cipher.final(), cipher.getAuthTag()])
      const theirs = dagCbor.encode({ ...header, ct: new Uint8Array(ct) })
      assert.equal(open(theirs).body.text, 'from elsewhere ✓')
      // ours, opened with dag-cbor and node:crypto only (the AAD is dag-cbor's encoding of the header)
      const ours = dagCbor.decode(seal('from here ✓').bytes) as Record<string, Uint8Array>
      const ikm = Buffer.concat([x25519SharedSecret(bob.privateKey, ours.epk), x25519SharedSecret(bob.privateKey, alice.publicKey)])
      const k = Buffer.from(hkdfSync('sha256', ikm, 'tokenim/v1/msg', Buffer.concat([Buffer.from('tokenim/v1/msg/key'), ours.epk, alice.publicKey, bob.publicKey]), 44))
      const decipher = createDecipheriv('aes-256-gcm', k.subarray(0, 32), k.subarray(32), { authTagLength: 16 })
      const { ct: sealed, ...head } = ours
      decipher.setAAD(dagCbor.encode(head))
      decipher.setAuthTag(sealed.subarray(sealed.length - 16))
      const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()])
      assert.deepEqual(dagCbor.decode(plain), { text: 'from here ✓' })
    })

    it('survives thousands of random inputs with typed errors only', function () {
      this.timeout(20_000)
      const { bytes } = seal()
      for (let i = 0; i < 3000; i++) {
        let input: Uint8Array
        if (i % 3 === 0) {
          input = randomBytes(Math.floor(Math.random() * 600))
        } else {
          input = new Uint8Array(bytes)
          const flips = 1 + Math.floor(Math.random() * 4)
          for (let k = 0; k < flips; k++) input[Math.floor(Math.random() * input.length)] = Math.floor(Math.random() * 256)
        }
        try {
          const frame = decodeFrame(input)
          if (frame.t === 'msg') open(encodeFrame(frame))
        } catch (err) {
          assert.ok(isTokenimError(err), `untyped error: ${String(err)}`)
          assert.ok(['MALFORMED_FRAME', 'FRAME_TOO_LARGE', 'DECRYPT_FAILED', 'FORGED_SENDER', 'WRONG_RECIPIENT'].includes((err as { code: string }).code), (err as Error).message)
        }
      }
    })
  })


  describe('v2 envelopes (sending epochs)', () => {
    let epoch: SendEpoch
    beforeEach(async () => { epoch = await openSendEpoch(alice, bob.publicKey) })

    function seal2 (text = 'hello bob', e = epoch): { envelope: Envelope, bytes: Uint8Array } {
      return sealMessage({ from: ALICE, to: BOB, body: { text } }, alice, bob.publicKey, {}, e)
    }

    it('round-trip, one epoch key for many messages, each under its own number', () => {
      const sealed = Array.from({ length: 50 }, (_, i) => seal2(`message ${i}`))
      sealed.forEach(({ envelope, bytes }, i) => {
        assert.equal(envelope.v, 2)
        assert.equal((envelope as EnvelopeHeaderV2).n, i)
        assert.deepEqual(envelope.epk, epoch.publicKey)
        assert.deepEqual(decodeFrame(bytes), envelope)
        assert.equal(open(bytes).body.text, `message ${i}`)
      })
      assert.equal(epoch.used, 50)
      // the same text twice: other number, other ciphertext
      const a = seal2('same')
      const b = seal2('same')
      assert.notDeepEqual(a.envelope.ct, b.envelope.ct)
    })

    it('opens with the epoch key derived ahead (thread pool), with the same checks and errors as openMessage alone', async () => {
      const options = { self: BOB, keys: bob, senderKey: alice.publicKey }
      const env = decodeEnvelope(seal2('ahead').bytes) as Envelope & EnvelopeHeaderV2
      const key = await receivingEpochKey(env, options)
      assert.deepEqual(openMessage(env, { ...options, epochKey: key }), openMessage(env, options))
      // the key serves the epoch's other messages
      const next = decodeEnvelope(seal2('next').bytes)
      assert.equal(openMessage(next, { ...options, epochKey: key }).body.text, 'next')
      // a key of another epoch does not open it
      const other = await openSendEpoch(alice, bob.publicKey)
      const otherKey = await receivingEpochKey(decodeEnvelope(seal2('x', other).bytes) as Envelope & EnvelopeHeaderV2, options)
      rejects(() => openMessage(next, { ...options, epochKey: otherKey }), 'DECRYPT_FAILED')
      const toCarol = decodeEnvelope(sealMessage({ from: ALICE, to: CAROL, body: { text: 'x' } }, alice, bob.publicKey, {}, await openSendEpoch(alice, bob.publicKey)).bytes) as Envelope & EnvelopeHeaderV2
      const cases: Array<[Envelope & EnvelopeHeaderV2, typeof options, string]> = [
        [toCarol, options, 'WRONG_RECIPIENT'],
        [env, { ...options, senderKey: mallory.publicKey }, 'FORGED_SENDER'],
        [decodeEnvelope(mutate(seal2().bytes, m => { m.epk = new Uint8Array(32) })) as Envelope & EnvelopeHeaderV2, options, 'MALFORMED_FRAME']
      ]
      for (const [e, o, code] of cases) {
        rejects(() => openMessage(e, o), code)
        await assert.rejects(receivingEpochKey(e, o), (err: unknown) => isTokenimError(err, code))
      }
    })

    it('rejects a tampered number, header field or ciphertext with DECRYPT_FAILED, and a forged sender', async () => {
      const { bytes } = seal2()
      seal2() // a second message: its number exists under this epoch key
      rejects(() => open(mutate(bytes, m => { m.n = 1 })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { m.id = newMessageId() })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { m.ts = (m.ts as number) + 1 })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { m.from = CAROL })), 'DECRYPT_FAILED')
      rejects(() => open(mutate(bytes, m => { const ct = new Uint8Array(m.ct as Uint8Array); ct[3] ^= 1; m.ct = ct })), 'DECRYPT_FAILED')
      // Mallory's epoch, claiming Alice: her spk is not Alice's, or (writing Alice's) her static DH differs
      const posing = { privateKey: mallory.privateKey, publicKey: alice.publicKey }
      const hers = sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, posing, bob.publicKey, {}, await openSendEpoch(posing, bob.publicKey))
      rejects(() => open(hers.bytes), 'DECRYPT_FAILED')
      const own = sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, mallory, bob.publicKey, {}, await openSendEpoch(mallory, bob.publicKey))
      rejects(() => open(own.bytes), 'FORGED_SENDER')
    })

    it('refuses an epoch for other keys, and one used up or too old', async () => {
      rejects(() => sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, alice, mallory.publicKey, {}, epoch), 'INVALID_MESSAGE_ARGUMENT')
      rejects(() => sealMessage({ from: ALICE, to: BOB, body: { text: 'x' } }, mallory, bob.publicKey, {}, epoch), 'INVALID_MESSAGE_ARGUMENT')
      const fields = { publicKey: epoch.publicKey, senderKey: alice.publicKey, recipientKey: bob.publicKey, key: createSecretKeyForTest() }
      const old = new SendEpoch({ ...fields, createdAt: Date.now() - EPOCH_MAX_AGE_MS - 1 })
      assert.equal(old.usable(), false)
      rejects(() => seal2('x', old), 'INVALID_MESSAGE_ARGUMENT')
      const full = new SendEpoch(fields)
      for (let i = 0; i < EPOCH_MAX_MESSAGES; i++) full.take()
      assert.equal(full.usable(), false)
      rejects(() => full.take(), 'INVALID_MESSAGE_ARGUMENT')
      // a number is never handed out twice
      const e = await openSendEpoch(alice, bob.publicKey)
      const ns = Array.from({ length: 1000 }, () => e.take().n)
      assert.equal(new Set(ns).size, 1000)
    })

    it('decodes v2 frames strictly (n required, a safe uint below 2^32, no n in v1)', () => {
      const { bytes } = seal2()
      const v1 = seal().bytes
      const cases = [
        mutate(bytes, m => { delete m.n }),
        mutate(bytes, m => { m.n = -1 }),
        mutate(bytes, m => { m.n = 2 ** 32 }),
        mutate(bytes, m => { m.n = 'one' }),
        mutate(bytes, m => { m.v = 3 }),
        mutate(bytes, m => { m.v = 1 }),
        mutate(v1, m => { m.n = 0 }),
        mutate(v1, m => { m.v = 2 })
      ]
      for (const c of cases) rejects(() => decodeFrame(c), 'MALFORMED_FRAME')
      assert.equal((decodeFrame(mutate(bytes, m => { m.n = 2 ** 32 - 1 })) as EnvelopeHeaderV2).n, 2 ** 32 - 1)
    })

    it('opens an envelope sealed by an independent implementation of v2, which opens ours', () => {
      // docs: key = HKDF(X25519(e, R) || X25519(s, R), "tokenim/v2/msg", "tokenim/v2/msg/epoch" || E || S || R, 32); nonce = 0^4 || u64be(n)
      const eph = x25519GenerateKeyPair()
      const epochKeyOf = (e: Uint8Array, s: Uint8Array, epk: Uint8Array): Buffer => {
        const ikm = Buffer.concat([x25519SharedSecret(e, bob.publicKey), x25519SharedSecret(s, bob.publicKey)])
        return Buffer.from(hkdfSync('sha256', ikm, 'tokenim/v2/msg', Buffer.concat([Buffer.from('tokenim/v2/msg/epoch'), epk, alice.publicKey, bob.publicKey]), 32))
      }
      const nonceOf = (n: number): Buffer => { const b = Buffer.alloc(12); b.writeBigUInt64BE(BigInt(n), 4); return b }
      const header = { v: 2, t: 'msg', id: newMessageId(), from: ALICE, to: BOB, ts: 1_700_000_000_000, epk: eph.publicKey, n: 7, spk: alice.publicKey }
      const cipher = createCipheriv('aes-256-gcm', epochKeyOf(eph.privateKey, alice.privateKey, eph.publicKey), nonceOf(7), { authTagLength: 16 })
      cipher.setAAD(dagCbor.encode(header))
      const ct = Buffer.concat([cipher.update(dagCbor.encode({ text: 'from elsewhere ✓' })), cipher.final(), cipher.getAuthTag()])
      assert.equal(open(dagCbor.encode({ ...header, ct: new Uint8Array(ct) })).body.text, 'from elsewhere ✓')
      // ours, opened with dag-cbor and node:crypto only
      seal2()
      const ours = dagCbor.decode(seal2('from here ✓').bytes) as Record<string, Uint8Array> & { n: number }
      assert.equal(ours.n, 1)
      const ikm = Buffer.concat([x25519SharedSecret(bob.privateKey, ours.epk), x25519SharedSecret(bob.privateKey, alice.publicKey)])
      const k = Buffer.from(hkdfSync('sha256', ikm, 'tokenim/v2/msg', Buffer.concat([Buffer.from('tokenim/v2/msg/epoch'), ours.epk, alice.publicKey, bob.publicKey]), 32))
      const decipher = createDecipheriv('aes-256-gcm', k, nonceOf(ours.n), { authTagLength: 16 })
      const { ct: sealed, ...head } = ours
      decipher.setAAD(dagCbor.encode(head))
      decipher.setAuthTag(sealed.subarray(sealed.length - 16))
      const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()])
      assert.deepEqual(dagCbor.decode(plain), { text: 'from here ✓' })
    })

    it('decodes canonical v2 frames as the strict path does, and damaged ones with the same errors', () => {
      for (const n of [0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1]) {
        const e = new SendEpoch({ publicKey: epoch.publicKey, senderKey: alice.publicKey, recipientKey: bob.publicKey, key: createSecretKeyForTest() })
        for (let i = 0; i < Math.min(n, 5); i++) e.take()
        const { envelope } = seal2('t', e)
        const frame = { ...envelope, n } as Frame
        const bytes = encodeFrame(frame)
        assert.deepEqual(Buffer.from(bytes), Buffer.from(dagCbor.encode({ ...frame })))
        assert.deepEqual(decodeFrame(bytes), frame)
        assert.deepEqual(decodeFrameStrictly(bytes), frame)
        for (let k = 0; k < 40; k++) {
          const b = new Uint8Array(bytes)
          b[Math.floor(Math.random() * Math.min(b.length, 200))] ^= 1 << (k % 8)
          let fast: unknown, strict: unknown
          try { fast = decodeFrame(b) } catch (err) { fast = (err as { code: string }).code }
          try { strict = decodeFrameStrictly(b) } catch (err) { strict = (err as { code: string }).code }
          assert.deepEqual(fast, strict)
        }
      }
    })
  })

  describe('receipts', () => {
    function receipt (): { receipt: Receipt, id: string } {
      const { envelope } = seal()
      return { id: envelope.id, receipt: createReceipt({ id: envelope.id, from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey }) }
    }

    it('round-trip and verify', () => {
      const { receipt: r, id } = receipt()
      const decoded = decodeReceipt(encodeFrame(r))
      assert.deepEqual(decoded, r)
      assert.equal(decoded.status, 'delivered')
      verifyReceipt(decoded, { id, from: ALICE, to: BOB }, { keys: alice, peerKey: bob.publicKey })
    })

    it('the MAC is the specified one, with receipt keys cached per peer or derived per receipt', () => {
      const { receipt: r, id } = receipt()
      // docs/ARCHITECTURE.md: HMAC-SHA256 under HKDF(X25519(s,R), "tokenim/v1/rcpt", "tokenim/v1/rcpt/key" ‖ S ‖ R)
      const ss = x25519SharedSecret(alice.privateKey, bob.publicKey)
      const info = Buffer.concat([Buffer.from('tokenim/v1/rcpt/key'), alice.publicKey, bob.publicKey])
      const key = Buffer.from(hkdfSync('sha256', ss, 'tokenim/v1/rcpt', info, 32))
      const body = dagCbor.encode({ v: 1, t: 'rcpt', id, from: ALICE, to: BOB, status: 'delivered', ts: r.ts })
      const mac = createHmac('sha256', key).update('tokenim/v1/rcpt\n').update(body).digest()
      assert.deepEqual(Buffer.from(r.mac), mac)
      // Bob (writer) and Alice (verifier) with cached keys: the same MAC
      const bobSession = { staticSecret: staticSecret(bob, alice.publicKey), receiptKeys: receiptMacKeys(staticSecret(bob, alice.publicKey), bob.publicKey, alice.publicKey) }
      const again = createReceipt({ id, from: ALICE, to: BOB, ts: r.ts }, { keys: bob, peerKey: alice.publicKey, ...bobSession })
      assert.deepEqual(again.mac, r.mac)
      const aliceKeys = receiptMacKeys(ss, alice.publicKey, bob.publicKey)
      verifyReceipt(r, { id, from: ALICE, to: BOB }, { keys: alice, peerKey: bob.publicKey, receiptKeys: aliceKeys })
      // the direction matters: Alice's key for receipts she writes does not verify Bob's
      rejects(() => verifyReceipt(r, { id, from: ALICE, to: BOB }, { keys: alice, peerKey: bob.publicKey, receiptKeys: { sent: aliceKeys.received, received: aliceKeys.sent } }), 'FORGED_RECEIPT')
    })

    it('v2 receipts: one MAC for many ids, as specified; any of its ids verifies; a change to any field does not', () => {
      const ids = Array.from({ length: 40 }, () => newMessageId())
      const r = createReceiptBatch({ ids, from: ALICE, to: BOB, ts: 1_700_000_000_123 }, { keys: bob, peerKey: alice.publicKey })
      assert.equal(r.v, 2)
      assert.deepEqual(receiptIds(r), ids)
      const decoded = decodeReceipt(encodeFrame(r))
      assert.deepEqual(decoded, r)
      const aliceKeys = { keys: alice, peerKey: bob.publicKey }
      verifyReceipt(decoded, { from: ALICE, to: BOB }, aliceKeys)
      verifyReceipt(decoded, { id: ids[17], from: ALICE, to: BOB }, aliceKeys)
      rejects(() => verifyReceipt(decoded, { id: newMessageId(), from: ALICE, to: BOB }, aliceKeys), 'FORGED_RECEIPT')
      // the specified MAC: HMAC(receipt key, "tokenim/v2/rcpt\n" || dag-cbor({ v, t, ids, from, to, status, ts }))
      const ss = x25519SharedSecret(alice.privateKey, bob.publicKey)
      const key = Buffer.from(hkdfSync('sha256', ss, 'tokenim/v1/rcpt', Buffer.concat([Buffer.from('tokenim/v1/rcpt/key'), alice.publicKey, bob.publicKey]), 32))
      const body = dagCbor.encode({ v: 2, t: 'rcpt', ids, from: ALICE, to: BOB, status: 'delivered', ts: r.ts })
      assert.deepEqual(Buffer.from(r.mac), createHmac('sha256', key).update('tokenim/v2/rcpt\n').update(body).digest())
      // any change: FORGED_RECEIPT
      for (const changed of [{ ...r, ids: ids.slice(1) }, { ...r, ids: [...ids.slice(0, 39), newMessageId()] }, { ...r, ts: r.ts + 1 }, { ...r, mac: new Uint8Array(32) }]) {
        rejects(() => verifyReceipt(changed, { from: ALICE, to: BOB }, aliceKeys), 'FORGED_RECEIPT')
      }
      // written by someone without Bob's key, or for another pair
      rejects(() => verifyReceipt(createReceiptBatch({ ids, from: ALICE, to: BOB }, { keys: mallory, peerKey: alice.publicKey }), { from: ALICE, to: BOB }, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => verifyReceipt(r, { from: ALICE, to: CAROL }, aliceKeys), 'FORGED_RECEIPT')
      // a v1 receipt's MAC does not pass for a v2 one of the same id (the label and version differ)
      const one = createReceipt({ id: ids[0], from: ALICE, to: BOB, ts: r.ts }, { keys: bob, peerKey: alice.publicKey })
      rejects(() => verifyReceipt({ ...createReceiptBatch({ ids: [ids[0]], from: ALICE, to: BOB, ts: r.ts }, { keys: bob, peerKey: alice.publicKey }), mac: one.mac }, { from: ALICE, to: BOB }, aliceKeys), 'FORGED_RECEIPT')
    })

    it('v2 receipts decode strictly: 1 to MAX_RECEIPT_IDS message ids, none twice', () => {
      const ids = [newMessageId(), newMessageId()]
      const bytes = encodeFrame(createReceiptBatch({ ids, from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey }))
      const cases = [
        mutate(bytes, m => { m.ids = [] }),
        mutate(bytes, m => { m.ids = [ids[0], ids[0]] }),
        mutate(bytes, m => { m.ids = Array.from({ length: MAX_RECEIPT_IDS + 1 }, () => newMessageId()) }),
        mutate(bytes, m => { m.ids = ['not-an-id'] }),
        mutate(bytes, m => { m.ids = ids[0] }),
        mutate(bytes, m => { m.id = ids[0] }),
        mutate(bytes, m => { delete m.ids; m.id = ids[0] }),
        cborg.encode(Object.fromEntries(Object.entries(dagCbor.decode(bytes) as Record<string, unknown>).reverse()), { mapSorter: undefined })
      ]
      for (const c of cases) rejects(() => decodeReceipt(c), 'MALFORMED_FRAME')
      rejects(() => createReceiptBatch({ ids: [], from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey }), 'INVALID_MESSAGE_ARGUMENT')
      rejects(() => createReceiptBatch({ ids: [ids[0], ids[0]], from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey }), 'INVALID_MESSAGE_ARGUMENT')
      assert.equal(receiptIds(decodeReceipt(mutate(bytes, m => { m.ids = Array.from({ length: MAX_RECEIPT_IDS }, () => newMessageId()) }))).length, MAX_RECEIPT_IDS)
    })

    it('rejects forged or mismatched receipts with FORGED_RECEIPT', () => {
      const { receipt: r, id } = receipt()
      const expected = { id, from: ALICE, to: BOB }
      const aliceKeys = { keys: alice, peerKey: bob.publicKey }
      // made by Mallory, who does not hold Bob's key
      const forged = createReceipt({ id, from: ALICE, to: BOB }, { keys: mallory, peerKey: alice.publicKey })
      rejects(() => verifyReceipt(forged, expected, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => verifyReceipt({ ...r, ts: r.ts + 1 }, expected, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => verifyReceipt({ ...r, mac: new Uint8Array(32) }, expected, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => verifyReceipt(r, { ...expected, id: newMessageId() }, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => verifyReceipt(r, { ...expected, to: CAROL }, aliceKeys), 'FORGED_RECEIPT')
      // a receipt replayed for another message of the same pair
      const other = newMessageId()
      rejects(() => verifyReceipt({ ...r, id: other }, { ...expected, id: other }, aliceKeys), 'FORGED_RECEIPT')
      rejects(() => decodeReceipt(mutate(encodeFrame(r), m => { m.status = 'read' })), 'MALFORMED_FRAME')
      rejects(() => decodeReceipt(mutate(encodeFrame(r), m => { m.mac = new Uint8Array(31) })), 'MALFORMED_FRAME')
    })
  })
})
