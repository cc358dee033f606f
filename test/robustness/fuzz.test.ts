/**
 * Fuzzing the decoders that take bytes from other machines: message frames, backup blocks (root header,
 * manifest node, sealed manifest, segments), CAR files, device records and the replica pin protocol.
 * Inputs are real encodings damaged by a seeded PRNG (bit flips, truncation, extension, splices, length
 * bombs, type swaps, dropped and extra fields): no crash, no hang (a bound per input), no unbounded
 * allocation (live heap growth bounded), every rejection a TokenimError with a code.
 * A failure names the label and input index: rerun with the same seed to replay it.
 */
import assert from 'node:assert/strict'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { buildBackup, checkSegment, openManifest, readCar, readHeader, readManifestNode, segmentPlaces, verifyBackup, writeCar } from '../../src/backup/index.ts'
import type { Manifest, ManifestNode } from '../../src/backup/index.ts'
import type { BackupHeader } from '../../src/backup/schema.ts'
import { readBlock } from '../../src/backup/blocks.ts'
import { decodeHeader, decodeManifestNode, decodeSegment } from '../../src/backup/schema.ts'
import { open as openBox, seal as sealBox } from '../../src/backup/seal.ts'
import { decodePinRequest, decodeReceipt as decodePinReceipt, encodePinRequest, encodeReceipt as encodePinReceipt } from '../../src/backup/replica/index.ts'
import { x25519GenerateKeyPair } from '../../src/crypto/index.ts'
import { decodeDeviceRecord, deriveKeys, devicePeerId, encodeDeviceRecord, generateMnemonic, signDeviceRecord, verifyDeviceRecord } from '../../src/identity/index.ts'
import {
  createReceipt, createReceiptBatch, decodeBody, decodeEnvelope, decodeFrame, decodeReceipt, encodeBody, encodeFrame, newMessageId, openMessage, openSendEpoch, sealMessage, verifyReceipt
} from '../../src/messaging/index.ts'
import { KEY, makeEnv, makeHistory, OWNER } from '../backup/helpers.ts'
import type { Env } from '../backup/helpers.ts'
import { fuzz, inputs, int, mutateBytes, prng } from './mutate.ts'
import type { FuzzStats } from './mutate.ts'

const SEED = Number(process.env.TOKENIM_FUZZ_SEED ?? 20240607)

function summary (s: FuzzStats): string {
  return `${s.inputs} inputs, ${s.accepted} accepted, codes ${[...s.codes].map(([c, n]) => `${c}×${n}`).join(' ')}, slowest ${s.slowestMs.toFixed(1)} ms, heap +${(s.heapGrowth / 1048576).toFixed(1)} MiB`
}

describe('robustness: decoder fuzzing', function () {
  this.timeout(120_000)

  describe('message frames (decodeFrame / decodeEnvelope / decodeReceipt / decodeBody)', () => {
    const ALICE = '0x' + 'a1'.repeat(20)
    const BOB = '0x' + 'b2'.repeat(20)
    const alice = x25519GenerateKeyPair()
    const bob = x25519GenerateKeyPair()

    it('structure-aware mutations of envelopes and receipts give typed errors only', async () => {
      // v1 envelopes (a fresh ephemeral key each) and v2 (one sending epoch)
      const epoch = await openSendEpoch(alice, bob.publicKey)
      const envelopes = ['', 'hi', 'x'.repeat(3000), '✓ unicode 🚀'].flatMap(text => [
        sealMessage({ from: ALICE, to: BOB, body: { text } }, alice, bob.publicKey).bytes,
        sealMessage({ from: ALICE, to: BOB, body: { text } }, alice, bob.publicKey, {}, epoch).bytes
      ])
      const attach = sealMessage({ from: ALICE, to: BOB, body: { text: 'file', attachment: { cid: 'bafkreidummy', key: 'k'.repeat(43), name: 'a.png', mime: 'image/png', size: 12, sha256: 'ab'.repeat(32) } } }, alice, bob.publicKey)
      const receipts = envelopes.map(b => encodeFrame(createReceipt({ id: decodeEnvelope(b).id, from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey })))
      // v2 receipts: one id, and several
      receipts.push(...[1, 3, 40].map(n => encodeFrame(createReceiptBatch({ ids: envelopes.slice(0, n).map(b => decodeEnvelope(b).id).concat(Array.from({ length: Math.max(0, n - envelopes.length) }, () => newMessageId())), from: ALICE, to: BOB }, { keys: bob, peerKey: alice.publicKey }))))
      const seeds = [...envelopes, attach.bytes, ...receipts]
      const codes = ['MALFORMED_FRAME', 'FRAME_TOO_LARGE', 'DECRYPT_FAILED', 'FORGED_SENDER', 'WRONG_RECIPIENT', 'FORGED_RECEIPT']
      const stats = await fuzz('frames', inputs(SEED, 3000, seeds), (input) => {
        const frame = decodeFrame(input)
        if (frame.t === 'msg') {
          const env = decodeEnvelope(input)
          openMessage(env, { self: BOB, keys: bob, senderKey: alice.publicKey })
        } else {
          const r = decodeReceipt(input)
          verifyReceipt(r, { from: ALICE, to: BOB }, { keys: alice, peerKey: bob.publicKey })
        }
      }, { codes, maxMsPerInput: 1000 })
      assert.ok(stats.codes.get('MALFORMED_FRAME')! > 800, summary(stats))
      // the structural mutations reach past the decoder into the crypto checks too
      assert.ok((stats.codes.get('DECRYPT_FAILED') ?? 0) + (stats.codes.get('FORGED_RECEIPT') ?? 0) + (stats.codes.get('FORGED_SENDER') ?? 0) > 0, summary(stats))

      const bodies = [encodeBody({ text: 'hello' }), encodeBody({ text: '', attachment: { cid: 'bafkreidummy', key: 'k'.repeat(43), name: 'n', mime: 'text/plain', size: 1, sha256: 'cd'.repeat(32) } })]
      await fuzz('bodies', inputs(SEED + 1, 1000, bodies), (input) => decodeBody(input), { codes: ['MALFORMED_FRAME', 'MESSAGE_TOO_LARGE'], maxMsPerInput: 1000 })
    })
  })

  for (const formatVersion of [1, 2] as const) describe(`backup format v${formatVersion}: blocks, sealed manifest, segments and CAR files`, () => {
    const manifestKind = formatVersion === 1 ? 'manifest' : 'index'
    /** the node with its sealed manifest (v1) or sealed index (v2, in the top node) replaced */
    const withSealed = (n: ManifestNode, sealed: Uint8Array): ManifestNode => n.sharded === undefined
      ? { ...n, sealed }
      : { ...n, sharded: { ...n.sharded, top: { ...n.sharded.top, sealed } } }
    const sealedOf = (n: ManifestNode): Uint8Array => n.sharded?.top.sealed ?? n.sealed
    let env: Env
    let root: CID
    let header: BackupHeader
    let headerBytes: Uint8Array
    let node: ManifestNode
    let nodeBytes: Uint8Array
    let manifest: Manifest
    let manifestPlain: Uint8Array
    let segmentPlain: Uint8Array[]
    let segmentBoxes: Uint8Array[]
    let carBytes: Uint8Array
    let dir: string

    before(async () => {
      env = await makeEnv()
      dir = env.dir
      await env.store.addMessages(makeHistory({ conversations: 4, messages: 240, seed: 77 }))
      const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 3, backupKey: KEY, segmentSize: 32, formatVersion })
      root = res.root
      header = await readHeader({ root, blockstore: env.blockstore })
      headerBytes = await readBlock(env.blockstore, root, 1 << 26)
      node = await readManifestNode(env.blockstore, header)
      nodeBytes = await readBlock(env.blockstore, header.manifest, 1 << 26)
      manifest = openManifest(KEY, header, node)
      manifestPlain = openBox(KEY, manifestKind, sealedOf(node), 1 << 26)
      segmentBoxes = await Promise.all(node.segments.map(async c => await readBlock(env.blockstore, c, 1 << 26)))
      segmentPlain = segmentBoxes.map(b => openBox(KEY, 'segment', b, 1 << 24))
      const carFile = join(dir, 'good.car')
      await writeCar(root, env.blockstore, carFile)
      carBytes = new Uint8Array(await readFile(carFile))
      assert.ok(node.segments.length >= 8, `${node.segments.length} segments`)
    })
    after(async () => { await env?.cleanup() })

    const BACKUP_CODES = ['BACKUP_MALFORMED', 'BACKUP_FORMAT_UNSUPPORTED', 'BACKUP_TAMPERED', 'COUNT_MISMATCH', 'DECRYPT_FAILED', 'WRONG_PASSPHRASE', 'INVALID_ARGUMENT']

    it('root header and manifest node decoders', async () => {
      const h = await fuzz('header', inputs(SEED + 2, 1500, [headerBytes]), (input) => decodeHeader(input, { block: 'root' }), { codes: BACKUP_CODES })
      const n = await fuzz('manifest node', inputs(SEED + 3, 1500, [nodeBytes]), (input) => decodeManifestNode(input, { block: 'manifest' }), { codes: BACKUP_CODES })
      assert.ok(h.codes.size > 0 && n.codes.size > 0, `${summary(h)} / ${summary(n)}`)
    })

    it('sealed manifest: damaged boxes and damaged plaintext sealed under the right key', async () => {
      // the box itself damaged: never opens, typed
      const boxes = await fuzz('sealed manifest box', inputs(SEED + 4, 600, [sealedOf(node)]), (input) => openManifest(KEY, header, withSealed(node, input)), { codes: BACKUP_CODES })
      assert.equal(boxes.accepted, 0, summary(boxes))
      // a manifest made by someone holding the key, with damaged content: the checks past the AEAD
      const plain = await fuzz(`v${formatVersion} ${manifestKind} plaintext`, inputs(SEED + 5, 600, [manifestPlain]), (input) => {
        openManifest(KEY, header, withSealed(node, sealBox(KEY, manifestKind, input)))
      }, { codes: BACKUP_CODES })
      assert.ok((plain.codes.get('BACKUP_MALFORMED') ?? 0) > 200, summary(plain))
    })

    it('segments: damaged boxes and damaged plaintext sealed under the right key', async () => {
      const places = segmentPlaces(manifest)
      const rnd = prng(SEED + 6)
      await fuzz('segment box', inputs(SEED + 7, 400, segmentBoxes), (input) => {
        const i = int(rnd, places.length)
        checkSegment(KEY, manifest, places[i], node.segments[i], input)
      }, { codes: BACKUP_CODES })
      const stats = await fuzz('segment plaintext', inputs(SEED + 8, 600, segmentPlain), (input) => {
        decodeSegment(input, { block: 'segment' }, manifest.segmentSize)
        const i = int(rnd, places.length)
        checkSegment(KEY, manifest, places[i], node.segments[i], sealBox(KEY, 'segment', input))
      }, { codes: BACKUP_CODES })
      assert.ok((stats.codes.get('BACKUP_MALFORMED') ?? 0) > 200, summary(stats))
    })

    it('CAR reader (readCar) and verify on what it opens', async () => {
      const rnd = prng(SEED + 9)
      // the CAR header is a varint length then dag-cbor: damage it more often than the blocks
      let headerEnd = 0
      let shift = 0
      let len = 0
      for (;;) { const b = carBytes[headerEnd++]; len |= (b & 0x7f) << shift; shift += 7; if (b < 0x80) break }
      headerEnd += len
      function * cars (): Generator<Uint8Array> {
        for (let i = 0; i < 300; i++) {
          const r = rnd()
          if (r < 0.35) {
            const head = mutateBytes(rnd, carBytes.subarray(0, headerEnd))
            yield Buffer.concat([head, carBytes.subarray(headerEnd)])
          } else if (r < 0.45) {
            // keep the header, random bytes after it
            yield Buffer.concat([carBytes.subarray(0, headerEnd), Buffer.from(Array.from({ length: int(rnd, 300) }, () => int(rnd, 256)))])
          } else {
            yield mutateBytes(rnd, carBytes)
          }
        }
      }
      const file = join(dir, 'fuzz.car')
      const problemCodes = new Set<string>()
      const stats = await fuzz('car', cars(), async (input) => {
        await writeFile(file, input)
        const car = await readCar(file)
        try {
          const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, backupKey: KEY })
          for (const p of report.problems) {
            assert.match(p.code, /^[A-Z][A-Z0-9_]+$/)
            problemCodes.add(p.code)
          }
          if (car.tampered.length > 0) assert.ok(report.problems.length > 0, 'a tampered block in the walk is a problem')
        } finally {
          await car.blockstore.close()
        }
      }, { codes: ['CAR_INVALID', ...BACKUP_CODES, 'MISSING_BLOCK'], maxMsPerInput: 4000, heapEvery: 100 })
      assert.ok((stats.codes.get('CAR_INVALID') ?? 0) > 50, summary(stats))
      assert.ok(problemCodes.has('BACKUP_TAMPERED'), [...problemCodes].join(','))
      await rm(file, { force: true })
    })
  })

  describe('device records and the replica pin protocol', () => {
    it('decodeDeviceRecord: typed INVALID_DEVICE_RECORD, and what decodes still has to verify', async () => {
      const keys = deriveKeys(generateMnemonic(12))
      const seeds: Uint8Array[] = []
      for (const multiaddrs of [[], ['/ip4/127.0.0.1/tcp/4001'], Array.from({ length: 8 }, (_, i) => `/ip4/10.0.0.${i}/tcp/${4000 + i}`)]) {
        const rec = await signDeviceRecord(keys.wallet, {
          address: keys.address, peerId: devicePeerId(await generateKeyPair('Ed25519')), messagingKey: keys.messaging.publicKey, multiaddrs, seq: 7, time: Date.now()
        })
        seeds.push(encodeDeviceRecord(rec))
      }
      const stats = await fuzz('device record', inputs(SEED + 10, 2000, seeds), (input) => {
        verifyDeviceRecord(decodeDeviceRecord(input))
      }, { codes: ['INVALID_DEVICE_RECORD', 'FORGED_DEVICE_RECORD', 'DEVICE_RECORD_FROM_FUTURE'] })
      assert.ok((stats.codes.get('INVALID_DEVICE_RECORD') ?? 0) > 1200, summary(stats))
    })

    it('pin requests and pin receipts', async () => {
      const cid = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
      const req = encodePinRequest({ owner: OWNER, version: 4, cid })
      const receipts = [
        encodePinReceipt({ owner: OWNER, version: 4, cid, ok: true, peerId: '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo' }),
        encodePinReceipt({ owner: OWNER, version: 4, cid, ok: false, peerId: '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', code: 'NOT_ANCHORED', message: 'no anchor' })
      ]
      const a = await fuzz('pin request', inputs(SEED + 11, 1500, [req]), (input) => decodePinRequest(input), { codes: ['BAD_REQUEST'] })
      const b = await fuzz('pin receipt', inputs(SEED + 12, 1500, receipts), (input) => decodePinReceipt(input), { codes: ['BAD_REQUEST'] })
      assert.ok(a.codes.get('BAD_REQUEST')! > 1000 && b.codes.get('BAD_REQUEST')! > 1000, `${summary(a)} / ${summary(b)}`)
    })
  })
})
