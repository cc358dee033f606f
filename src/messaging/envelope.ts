/**
 * Wire format and end-to-end encryption of `/tokenim/msg/1.1.0` (and `/tokenim/msg/1.0.0`, its first version).
 *
 * Every frame is one dag-cbor map, sent with an unsigned-varint length prefix, at most
 * {@link MAX_FRAME_BYTES}. Two frame types:
 *
 * - message envelope, v2 (written by this code to peers that speak `/tokenim/msg/1.1.0`)
 *   `{ v: 2, t: 'msg', id, from, to, ts, epk, n, spk, ct }`, or v1 (to peers that speak only 1.0.0)
 *   `{ v: 1, t: 'msg', id, from, to, ts, epk, spk, ct }`
 *   - `id`: UUIDv7 text; `from`/`to`: lowercase 0x addresses; `ts`: sender's clock (unix ms)
 *   - `epk`: the sender's ephemeral X25519 public key (32 bytes): v1 fresh per message; v2 the key of a
 *     sending epoch, one per recipient key for up to {@link EPOCH_MAX_MESSAGES} messages or
 *     {@link EPOCH_MAX_AGE_MS}, whichever comes first, never written to disk
 *   - `n` (v2): the message's number in its epoch (0, 1, 2, …; never twice under one `epk`)
 *   - `spk`: the sender's static messaging public key (32 bytes; must equal the key in the sender's
 *     wallet-signed device record, else `FORGED_SENDER`)
 *   - `ct`: AES-256-GCM ciphertext || 16-byte tag of the dag-cbor body `{ text, attachment? }`
 * - receipt, v2 (on `/tokenim/msg/1.1.0` streams) `{ v: 2, t: 'rcpt', ids, from, to, status, ts, mac }`
 *   for the messages `ids` (1 to {@link MAX_RECEIPT_IDS}, each once) that the recipient (`to`) stored in one
 *   go, or v1 (on 1.0.0 streams) `{ v: 1, t: 'rcpt', id, from, to, status, ts, mac }` for one message; `mac`
 *   is HMAC-SHA256 under a key only the two parties can derive.
 *
 * Keys of a message (sender S, recipient R, ephemeral E):
 * ```
 * ikm   = X25519(e, R) || X25519(s, R)                       // ephemeral-static || static-static
 * v1: okm   = HKDF-SHA256(ikm, salt = "tokenim/v1/msg", info = "tokenim/v1/msg/key" || E || S || R, 44)
 *     key   = okm[0..32], nonce = okm[32..44]                // fresh E: the key is used once
 * v2: key   = HKDF-SHA256(ikm, salt = "tokenim/v2/msg", info = "tokenim/v2/msg/epoch" || E || S || R, 32)
 *     nonce = 0x00000000 || uint64be(n)                      // one key per epoch, a new n per message
 * aad   = dag-cbor(the header: every field but ct)
 * ```
 * v2 costs no X25519 per message: both ends derive the epoch key once (the receiver keeps it by E) and
 * each message takes the next number, as TLS 1.3 takes its record sequence number. What it gives up is
 * small: the ephemeral key (held in memory only) decrypts its epoch's messages, which the sender's store
 * holds in plaintext anyway; against a stolen recipient key both versions protect nothing.
 *
 * Receipt key: `HKDF-SHA256(X25519(s, R), salt = "tokenim/v1/rcpt", info = "tokenim/v1/rcpt/key" || S || R, 32)`,
 * v1 `mac = HMAC-SHA256(key, "tokenim/v1/rcpt\n" || dag-cbor({ v, t, id, from, to, status, ts }))`,
 * v2 `mac = HMAC-SHA256(key, "tokenim/v2/rcpt\n" || dag-cbor({ v, t, ids, from, to, status, ts }))`: one MAC
 * and one frame for a window of messages instead of one each.
 *
 * All functions here are pure (no I/O); decoders are strict and every rejection is a typed
 * {@link MessagingError}.
 */
import type { KeyObject } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import {
  aeadDecrypt,
  aeadEncrypt,
  constantTimeEqual,
  hkdf,
  hmacSha256,
  secretKey,
  x25519EphemeralKeyPair,
  x25519EphemeralKeyPairAsync,
  x25519SharedSecret,
  x25519SharedSecretAsync
} from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import type { AttachmentRef } from '../store/index.ts'
import { decodeDagCbor, encodeDagCbor, NOT_DECODED } from '../util/cbor.ts'
import { MessagingError, MessagingErrorCode, malformed } from './errors.ts'
import { isMessageId, newMessageId } from './ids.ts'

/**
 * The stream protocol of direct messages: a listener of this version reads v1 and v2 envelopes. Dialers ask
 * for it first and fall back to {@link MSG_PROTOCOL_V1}.
 */
export const MSG_PROTOCOL = '/tokenim/msg/1.1.0'
/** The first version of the protocol: its listeners read v1 envelopes only (a dialer that lands on it sends v1). */
export const MSG_PROTOCOL_V1 = '/tokenim/msg/1.0.0'
/** Both, in the order a dialer asks for them. */
export const MSG_PROTOCOLS = [MSG_PROTOCOL, MSG_PROTOCOL_V1]
/** Version of the envelopes this code writes (to a peer that speaks {@link MSG_PROTOCOL}). */
export const ENVELOPE_VERSION = 2
/** Envelope versions this code reads. */
export const ENVELOPE_VERSIONS: readonly number[] = [1, 2]
/** Receipt versions this code reads (v2 on 1.1.0 streams, v1 on 1.0.0 ones). */
export const RECEIPT_VERSIONS: readonly number[] = [1, 2]
/** Most message ids one v2 receipt acknowledges. */
export const MAX_RECEIPT_IDS = 1024
/** A v2 sending epoch takes at most this many messages ... */
export const EPOCH_MAX_MESSAGES = 65_536
/** ... and no messages after it is this old (ms): then the sender makes a new one. */
export const EPOCH_MAX_AGE_MS = 10 * 60_000
/**
 * Largest frame (after the length prefix) a peer may send or receive: 256 KiB. A text message is
 * well below it; attachments travel by CID, not inside frames.
 */
export const MAX_FRAME_BYTES = 256 * 1024
/** Longest text accepted by {@link sealMessage} (UTF-16 code units); leaves room for the header. */
export const MAX_TEXT_LENGTH = 64 * 1024

export const MSG_SALT = 'tokenim/v1/msg'
export const MSG_KEY_INFO = 'tokenim/v1/msg/key'
export const EPOCH_SALT = 'tokenim/v2/msg'
export const EPOCH_KEY_INFO = 'tokenim/v2/msg/epoch'
export const RECEIPT_SALT = 'tokenim/v1/rcpt'
export const RECEIPT_KEY_INFO = 'tokenim/v1/rcpt/key'
export const RECEIPT_MAC_DOMAIN = 'tokenim/v1/rcpt\n'
export const RECEIPT_V2_MAC_DOMAIN = 'tokenim/v2/rcpt\n'

const KEY_LENGTH = 32
const GCM_TAG_LENGTH = 16
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SHA256_HEX_RE = /^[0-9a-f]{64}$/
const MSG_KEYS = ['ct', 'epk', 'from', 'id', 'spk', 't', 'to', 'ts', 'v']
const MSG_V2_KEYS = ['ct', 'epk', 'from', 'id', 'n', 'spk', 't', 'to', 'ts', 'v']
/** the largest epoch number a v2 envelope may carry (the nonce has room for 2^64; the epochs are far shorter) */
const MAX_EPOCH_NUMBER = 0xffffffff
const RCPT_KEYS = ['from', 'id', 'mac', 'status', 't', 'to', 'ts', 'v']
const RCPT_V2_KEYS = ['from', 'ids', 'mac', 'status', 't', 'to', 'ts', 'v']
const ATTACHMENT_KEYS = ['cid', 'key', 'mime', 'name', 'sha256', 'size']

/** The statuses a receipt can carry (only `delivered` today). */
export const RECEIPT_STATUSES = ['delivered'] as const
export type ReceiptStatus = typeof RECEIPT_STATUSES[number]

/**
 * Reference to an attachment carried inside the encrypted body: the store's AttachmentRef (cid of the
 * encrypted content, content key, name, mime, plaintext size and sha-256), kept as it arrives.
 */
export type MessageAttachment = AttachmentRef

/** The plaintext of a message. */
export interface MessageBody {
  text: string
  attachment?: MessageAttachment
}

interface HeaderFields {
  t: 'msg'
  id: string
  from: string
  to: string
  ts: number
  epk: Uint8Array
  spk: Uint8Array
}

/** v1: a fresh ephemeral key per message */
export interface EnvelopeHeaderV1 extends HeaderFields {
  v: 1
}

/** v2: the ephemeral key of a sending epoch, and the message's number in it */
export interface EnvelopeHeaderV2 extends HeaderFields {
  v: 2
  n: number
}

export type EnvelopeHeader = EnvelopeHeaderV1 | EnvelopeHeaderV2

export type Envelope = EnvelopeHeader & { ct: Uint8Array }

export interface Receipt {
  v: 1
  t: 'rcpt'
  /** id of the acknowledged message */
  id: string
  /** sender of the acknowledged message */
  from: string
  /** recipient of the acknowledged message (who writes the receipt) */
  to: string
  status: ReceiptStatus
  /** recipient's clock when it stored the message (unix ms) */
  ts: number
  mac: Uint8Array
}

/** A v2 receipt: the messages `ids`, stored by the recipient in one go. */
export interface ReceiptBatch {
  v: 2
  t: 'rcpt'
  /** ids of the acknowledged messages (1 to MAX_RECEIPT_IDS, each once) */
  ids: string[]
  /** sender of the acknowledged messages */
  from: string
  /** their recipient (who writes the receipt) */
  to: string
  status: ReceiptStatus
  /** recipient's clock when it stored them (unix ms) */
  ts: number
  mac: Uint8Array
}

export type AnyReceipt = Receipt | ReceiptBatch

export type Frame = Envelope | AnyReceipt

/** Our X25519 messaging key pair (raw 32-byte keys). */
export interface MessagingKeyPair {
  privateKey: Uint8Array
  publicKey: Uint8Array
}

export interface SealInput {
  from: string
  to: string
  body: MessageBody
  /** default: a new UUIDv7 */
  id?: string
  /** default: Date.now() */
  ts?: number
}

/**
 * Precomputed values that make sealing, opening and receipts cheaper. They change nothing on the wire:
 * `staticSecret` is X25519(our static key, their static key), the same value every time, which a caller
 * may cache per peer ({@link staticSecret}); the ephemeral-static DH stays per message.
 */
export interface SessionKeys {
  /** X25519(our private key, the peer's messaging key); never zeroed by these functions */
  staticSecret?: Uint8Array
  /** our private key as a node KeyObject (saves parsing the raw key per operation) */
  privateKeyObject?: KeyObject
  /** the peer's messaging key as a node KeyObject (sealing: the ephemeral DH uses it) */
  peerKeyObject?: KeyObject
  /** the receipt MAC keys with this peer ({@link receiptMacKeys}): no HKDF per receipt */
  receiptKeys?: ReceiptMacKeys
}

/** X25519(our private key, the peer's public key): cacheable per peer (see {@link SessionKeys}). */
export function staticSecret (self: MessagingKeyPair | KeyObject, peerKey: Uint8Array): Uint8Array {
  return x25519SharedSecret('privateKey' in self ? self.privateKey : self, peerKey)
}

/**
 * The receipt MAC keys between our key pair and a peer's messaging key, one per direction. They depend
 * only on the two static keys, so a caller may derive them once per peer (with the cached
 * {@link staticSecret}) instead of once per receipt; the keys and the wire format are the same.
 */
export interface ReceiptMacKeys {
  /** receipts for messages we sent (S = ours, R = the peer's): we verify them */
  sent: KeyObject
  /** receipts for messages we received (S = the peer's, R = ours): we write them */
  received: KeyObject
}

/** Derive both {@link ReceiptMacKeys} from X25519(s, R) (our static secret with `peerKey`). */
export function receiptMacKeys (ss: Uint8Array, ownKey: Uint8Array, peerKey: Uint8Array): ReceiptMacKeys {
  const key = (senderKey: Uint8Array, recipientKey: Uint8Array): KeyObject => {
    const raw = hkdf(ss, RECEIPT_SALT, concat(RECEIPT_KEY_INFO_BYTES, senderKey, recipientKey), KEY_LENGTH)
    const k = secretKey(raw)
    raw.fill(0)
    return k
  }
  return { sent: key(ownKey, peerKey), received: key(peerKey, ownKey) }
}

export interface SealedMessage {
  envelope: Envelope
  /** the encoded frame (without the length prefix) */
  bytes: Uint8Array
}

export interface OpenedMessage {
  id: string
  from: string
  to: string
  ts: number
  body: MessageBody
}

// ---------------------------------------------------------------------------------------------
// sealing and opening

/**
 * The ephemeral part of sealing, made ahead by the caller ({@link sealEphemeral}): a fresh key pair's
 * public key and X25519(its private key, the recipient's key). For ONE message: {@link sealMessage} zeroes
 * `sharedSecret` and refuses a zeroed one, since two messages sealed with one ephemeral key would share
 * their AES-GCM key and nonce.
 */
export interface SealEphemeral {
  publicKey: Uint8Array
  sharedSecret: Uint8Array
}

/**
 * A {@link SealEphemeral} for `recipientKey` with both scalar multiplications (the key pair's and the DH)
 * on libuv's thread pool: the same values {@link sealMessage} makes itself, with ~30 µs of the calling
 * thread instead of ~115. `pair`: a fresh key pair made ahead (never used for anything else).
 */
export async function sealEphemeral (recipientKey: Uint8Array | KeyObject, pair?: Promise<{ privateKey: KeyObject, publicKey: Uint8Array }>): Promise<SealEphemeral> {
  const eph = await (pair ?? x25519EphemeralKeyPairAsync())
  return { publicKey: eph.publicKey, sharedSecret: await x25519SharedSecretAsync(eph.privateKey, recipientKey) }
}

/**
 * A v2 sending epoch (see the file comment): the ephemeral key E of our messages to one recipient key, the
 * epoch key both ends derive from it, and the next message number. Made by {@link openSendEpoch}; kept in
 * memory only, so a restart begins a new one and a number is never handed out twice under one E.
 */
export class SendEpoch {
  /** E */
  readonly publicKey: Uint8Array
  /** S: our messaging key */
  readonly senderKey: Uint8Array
  /** R: the recipient's messaging key */
  readonly recipientKey: Uint8Array
  readonly createdAt: number
  readonly #key: KeyObject
  #next = 0

  constructor (fields: { publicKey: Uint8Array, senderKey: Uint8Array, recipientKey: Uint8Array, key: KeyObject, createdAt?: number }) {
    this.publicKey = fields.publicKey
    this.senderKey = fields.senderKey
    this.recipientKey = fields.recipientKey
    this.#key = fields.key
    this.createdAt = fields.createdAt ?? Date.now()
  }

  /** True while it may seal another message: numbers left, and not older than {@link EPOCH_MAX_AGE_MS}. */
  usable (now = Date.now()): boolean {
    return this.#next < EPOCH_MAX_MESSAGES && now - this.createdAt < EPOCH_MAX_AGE_MS && now >= this.createdAt
  }

  /** How many numbers it has handed out. */
  get used (): number {
    return this.#next
  }

  /** The next number and the key (each number once; refused when used up or too old). */
  take (now = Date.now()): { n: number, key: KeyObject } {
    if (!this.usable(now)) throw argError('the sending epoch is used up or too old: open a new one')
    return { n: this.#next++, key: this.#key }
  }
}

/**
 * A new {@link SendEpoch} from `self` to `recipientKey`: a fresh ephemeral key pair and X25519(e, R), both
 * on libuv's thread pool, then the epoch key. The ephemeral private key is dropped once used.
 */
export async function openSendEpoch (self: MessagingKeyPair, recipientKey: Uint8Array, session: SessionKeys = {}): Promise<SendEpoch> {
  checkKey(self.publicKey, 'own public key')
  checkKey(recipientKey, 'recipient key')
  const eph = await x25519EphemeralKeyPairAsync()
  const dhEs = await x25519SharedSecretAsync(eph.privateKey, session.peerKeyObject ?? recipientKey)
  const dhSs = session.staticSecret ?? x25519SharedSecret(session.privateKeyObject ?? self.privateKey, recipientKey)
  const key = epochKey(dhEs, dhSs, eph.publicKey, self.publicKey, recipientKey)
  if (dhSs !== session.staticSecret) dhSs.fill(0)
  return new SendEpoch({ publicKey: eph.publicKey, senderKey: copy(self.publicKey), recipientKey: copy(recipientKey), key })
}

/** HKDF of v2's epoch key (zeroes dhEs), as a KeyObject */
function epochKey (dhEs: Uint8Array, dhSs: Uint8Array, epk: Uint8Array, spk: Uint8Array, rpk: Uint8Array): KeyObject {
  const ikm = concat(dhEs, dhSs)
  const raw = hkdf(ikm, EPOCH_SALT, concat(EPOCH_KEY_INFO_BYTES, epk, spk, rpk), KEY_LENGTH)
  ikm.fill(0)
  dhEs.fill(0)
  const key = secretKey(raw)
  raw.fill(0)
  return key
}

/** v2's nonce of message number n: 4 zero bytes, then n as a 64-bit big-endian integer */
function epochNonce (n: number): Uint8Array {
  // n < 2^32 (MAX_EPOCH_NUMBER), so the 64-bit integer's upper half is zero too
  const nonce = new Uint8Array(12)
  nonce[8] = n >>> 24
  nonce[9] = (n >>> 16) & 0xff
  nonce[10] = (n >>> 8) & 0xff
  nonce[11] = n & 0xff
  return nonce
}

/**
 * Encrypt a message from `input.from` (our key pair `self`) to `input.to` (their messaging key
 * `recipientKey`, from their device record). With a {@link SendEpoch} for that key: a v2 envelope, the
 * epoch's next number; else v1, with `ephemeral` made ahead ({@link SealEphemeral}) or made here.
 */
export function sealMessage (input: SealInput, self: MessagingKeyPair, recipientKey: Uint8Array, session: SessionKeys = {}, ephemeral?: SealEphemeral | SendEpoch): SealedMessage {
  const from = argAddress(input.from, 'from')
  const to = argAddress(input.to, 'to')
  if (from === to) throw argError('cannot send a message to oneself')
  const id = input.id ?? newMessageId()
  if (!isMessageId(id)) throw argError('id must be a UUIDv7 string')
  const ts = input.ts ?? Date.now()
  if (!isTime(ts)) throw argError('ts must be a non-negative integer (ms)')
  checkKey(self.publicKey, 'own public key')
  checkKey(recipientKey, 'recipient key')
  if (ephemeral instanceof SendEpoch) {
    if (!equalKeys(ephemeral.recipientKey, recipientKey) || !equalKeys(ephemeral.senderKey, self.publicKey)) {
      throw argError('the sending epoch is for another sender or recipient key')
    }
  } else if (ephemeral !== undefined && (!isKey(ephemeral.publicKey) || !isKey(ephemeral.sharedSecret) || ephemeral.sharedSecret.every(b => b === 0))) {
    throw argError('the ephemeral key must be fresh (32-byte public key and an unused shared secret)')
  }
  const plaintext = encodeBody(input.body)

  let header: EnvelopeHeader
  let ct: Uint8Array
  if (ephemeral instanceof SendEpoch) {
    const { n, key } = ephemeral.take()
    header = { v: 2, t: 'msg', id, from, to, ts, epk: ephemeral.publicKey, n, spk: self.publicKey }
    ct = aeadEncrypt(key, epochNonce(n), plaintext, headerBytes(header))
  } else {
    let epk: Uint8Array, dhEs: Uint8Array
    if (ephemeral !== undefined) {
      epk = ephemeral.publicKey
      dhEs = ephemeral.sharedSecret
    } else {
      const eph = x25519EphemeralKeyPair()
      epk = eph.publicKey
      dhEs = x25519SharedSecret(eph.privateKey, session.peerKeyObject ?? recipientKey)
    }
    header = { v: 1, t: 'msg', id, from, to, ts, epk, spk: self.publicKey }
    const dhSs = session.staticSecret ?? x25519SharedSecret(session.privateKeyObject ?? self.privateKey, recipientKey)
    const { key, nonce } = messageKey(dhEs, dhSs, epk, self.publicKey, recipientKey)
    if (dhSs !== session.staticSecret) dhSs.fill(0)
    ct = aeadEncrypt(key, nonce, plaintext, headerBytes(header))
    key.fill(0)
  }
  const envelope: Envelope = { ...header, ct }
  const bytes = encodeFrame(envelope)
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new MessagingError(MessagingErrorCode.FRAME_TOO_LARGE, `message is larger than ${MAX_FRAME_BYTES} bytes`, { size: bytes.length })
  }
  return { envelope, bytes }
}

export interface OpenOptions extends SessionKeys {
  /** our address: the envelope must be addressed to it (`WRONG_RECIPIENT`) */
  self: string
  /** our messaging key pair */
  keys: MessagingKeyPair
  /** the messaging key in the claimed sender's verified device record */
  senderKey: Uint8Array
  /** v1: X25519(our private key, envelope.epk), made ahead ({@link openingSecret}); zeroed here */
  ephemeralSecret?: Uint8Array
  /** v2: the epoch key of envelope.epk and senderKey, made ahead ({@link receivingEpochKey}) or kept from an earlier envelope */
  epochKey?: KeyObject
}

/**
 * X25519(our private key, envelope.epk) for {@link openMessage}'s `ephemeralSecret`, the scalar
 * multiplication on libuv's thread pool: the same checks as openMessage, in the same order, with the same
 * errors (WRONG_RECIPIENT, FORGED_SENDER, MALFORMED_FRAME for a bad epk).
 */
export async function openingSecret (envelope: Envelope, options: OpenOptions): Promise<Uint8Array> {
  checkRecipient(envelope, options.self)
  checkSender(envelope, options.senderKey)
  try {
    return await x25519SharedSecretAsync(options.privateKeyObject ?? options.keys.privateKey, envelope.epk)
  } catch (err) {
    if (isTokenimError(err)) throw malformed('invalid X25519 public key', { id: envelope.id })
    throw err
  }
}

/**
 * The epoch key of a v2 envelope for {@link openMessage}'s `epochKey`, its X25519(r, E) on libuv's thread
 * pool: the same checks as openMessage first (WRONG_RECIPIENT, FORGED_SENDER, MALFORMED_FRAME for a bad
 * epk). It depends only on (E, the sender's key, ours), so a receiver may keep it for the epoch's other
 * messages.
 */
export async function receivingEpochKey (envelope: EnvelopeHeaderV2, options: OpenOptions): Promise<KeyObject> {
  const dhEs = await openingSecret(envelope as Envelope, options)
  return receivingKey(envelope, options, dhEs)
}

function receivingKey (envelope: EnvelopeHeaderV2, options: OpenOptions, dhEs: Uint8Array): KeyObject {
  let dhSs: Uint8Array
  try {
    dhSs = options.staticSecret ?? x25519SharedSecret(options.privateKeyObject ?? options.keys.privateKey, options.senderKey)
  } catch (err) {
    dhEs.fill(0)
    if (isTokenimError(err)) throw malformed('invalid X25519 public key', { id: envelope.id })
    throw err
  }
  const key = epochKey(dhEs, dhSs, envelope.epk, options.senderKey, options.keys.publicKey)
  if (dhSs !== options.staticSecret) dhSs.fill(0)
  return key
}

/**
 * Authenticate and decrypt an envelope (v1 or v2). Throws `WRONG_RECIPIENT` (not for us), `FORGED_SENDER`
 * (sealed with a key that is not the sender's published one), `DECRYPT_FAILED` (tampered, or the
 * sender does not hold the static key it claims), `MALFORMED_FRAME` (bad body).
 */
export function openMessage (envelope: Envelope, options: OpenOptions): OpenedMessage {
  checkRecipient(envelope, options.self)
  checkSender(envelope, options.senderKey)
  const own = options.privateKeyObject ?? options.keys.privateKey
  let key: Uint8Array | KeyObject
  let nonce: Uint8Array
  if (envelope.v === 2) {
    if (options.epochKey !== undefined) {
      key = options.epochKey
    } else {
      let dhEs: Uint8Array
      try {
        dhEs = x25519SharedSecret(own, envelope.epk)
      } catch (err) {
        if (isTokenimError(err)) throw malformed('invalid X25519 public key', { id: envelope.id })
        throw err
      }
      key = receivingKey(envelope, options, dhEs)
    }
    nonce = epochNonce(envelope.n)
  } else {
    let dhEs: Uint8Array, dhSs: Uint8Array
    try {
      dhEs = options.ephemeralSecret ?? x25519SharedSecret(own, envelope.epk)
      dhSs = options.staticSecret ?? x25519SharedSecret(own, options.senderKey)
    } catch (err) {
      if (isTokenimError(err)) throw malformed('invalid X25519 public key', { id: envelope.id })
      throw err
    }
    ({ key, nonce } = messageKey(dhEs, dhSs, envelope.epk, options.senderKey, options.keys.publicKey))
    if (dhSs !== options.staticSecret) dhSs.fill(0)
  }
  let plaintext: Uint8Array
  try {
    plaintext = aeadDecrypt(key, nonce, envelope.ct, headerBytes(envelope))
  } catch (err) {
    if (isTokenimError(err, 'DECRYPT_FAILED')) {
      throw new MessagingError(MessagingErrorCode.DECRYPT_FAILED, 'the envelope does not authenticate (tampered, or not from its claimed sender)', { id: envelope.id, from: envelope.from })
    }
    throw err
  } finally {
    if (key instanceof Uint8Array) key.fill(0)
  }
  return { id: envelope.id, from: envelope.from, to: envelope.to, ts: envelope.ts, body: decodeBody(plaintext) }
}

/** `FORGED_SENDER` unless the envelope was sealed with `senderKey` (the key in the sender's device record). */
export function checkSender (envelope: Envelope, senderKey: Uint8Array): void {
  checkKey(senderKey, 'sender key')
  if (!constantTimeEqual(envelope.spk, senderKey)) {
    throw new MessagingError(MessagingErrorCode.FORGED_SENDER, 'the envelope was not sealed with the sender\'s published messaging key', { id: envelope.id, from: envelope.from })
  }
}

/** `WRONG_RECIPIENT` unless the envelope is addressed to `self`. */
export function checkRecipient (envelope: Envelope, self: string): void {
  if (envelope.to !== self.toLowerCase()) {
    throw new MessagingError(MessagingErrorCode.WRONG_RECIPIENT, 'the envelope is addressed to someone else', { id: envelope.id, to: envelope.to })
  }
}

function messageKey (dhEs: Uint8Array, dhSs: Uint8Array, epk: Uint8Array, spk: Uint8Array, rpk: Uint8Array): { key: Uint8Array, nonce: Uint8Array } {
  const ikm = concat(dhEs, dhSs)
  const okm = hkdf(ikm, MSG_SALT, concat(MSG_KEY_INFO_BYTES, epk, spk, rpk), KEY_LENGTH + 12)
  ikm.fill(0)
  dhEs.fill(0)
  return { key: okm.subarray(0, KEY_LENGTH), nonce: okm.subarray(KEY_LENGTH) }
}

function headerBytes (h: EnvelopeHeader): Uint8Array {
  if (h.v === 2) return dagEncode({ v: h.v, t: h.t, id: h.id, from: h.from, to: h.to, ts: h.ts, epk: h.epk, n: h.n, spk: h.spk })
  return dagEncode({ v: h.v, t: h.t, id: h.id, from: h.from, to: h.to, ts: h.ts, epk: h.epk, spk: h.spk })
}

// ---------------------------------------------------------------------------------------------
// receipts

export interface ReceiptKeys extends SessionKeys {
  /** our messaging key pair */
  keys: MessagingKeyPair
  /** the other party's messaging key (from its verified device record) */
  peerKey: Uint8Array
}

/**
 * Make the receipt for message `id` from `from` to `to` (we are `to`, the recipient).
 * `peerKey` is the sender's messaging key.
 */
export function createReceipt (fields: { id: string, from: string, to: string, ts?: number, status?: ReceiptStatus }, keys: ReceiptKeys): Receipt {
  const receipt: Omit<Receipt, 'mac'> = {
    v: 1,
    t: 'rcpt',
    id: fields.id,
    from: argAddress(fields.from, 'from'),
    to: argAddress(fields.to, 'to'),
    status: fields.status ?? 'delivered',
    ts: fields.ts ?? Date.now()
  }
  if (!isMessageId(receipt.id)) throw argError('id must be a UUIDv7 string')
  if (!isTime(receipt.ts)) throw argError('ts must be a non-negative integer (ms)')
  // we are the message's recipient: S = their key, R = ours
  const mac = receiptMac(receipt, keys, 'received')
  return { ...receipt, mac }
}

/**
 * Make the v2 receipt for the messages `ids` from `from` to `to` that we (`to`, the recipient) stored.
 * `peerKey` is the sender's messaging key.
 */
export function createReceiptBatch (fields: { ids: string[], from: string, to: string, ts?: number, status?: ReceiptStatus }, keys: ReceiptKeys): ReceiptBatch {
  if (!Array.isArray(fields.ids) || fields.ids.length < 1 || fields.ids.length > MAX_RECEIPT_IDS) throw argError(`ids must list 1 to ${MAX_RECEIPT_IDS} message ids`)
  if (!fields.ids.every(isMessageId)) throw argError('ids must be UUIDv7 strings')
  if (new Set(fields.ids).size !== fields.ids.length) throw argError('ids must not repeat')
  const receipt: Omit<ReceiptBatch, 'mac'> = {
    v: 2,
    t: 'rcpt',
    ids: [...fields.ids],
    from: argAddress(fields.from, 'from'),
    to: argAddress(fields.to, 'to'),
    status: fields.status ?? 'delivered',
    ts: fields.ts ?? Date.now()
  }
  if (!isTime(receipt.ts)) throw argError('ts must be a non-negative integer (ms)')
  return { ...receipt, mac: receiptMac(receipt, keys, 'received') }
}

/** The ids a receipt acknowledges. */
export function receiptIds (receipt: AnyReceipt): string[] {
  return receipt.v === 2 ? receipt.ids : [receipt.id]
}

/**
 * Check a receipt (v1 or v2) for messages that we (`expected.from`) sent to `expected.to`: same from and
 * to, acknowledging `expected.id` when one is given, and a MAC only the recipient (or we) could make.
 * Throws `FORGED_RECEIPT`.
 */
export function verifyReceipt<R extends AnyReceipt> (receipt: R, expected: { id?: string, from: string, to: string }, keys: ReceiptKeys): R {
  const id = expected.id ?? receiptIds(receipt)[0]
  if ((expected.id !== undefined && !receiptIds(receipt).includes(expected.id)) || receipt.from !== expected.from.toLowerCase() || receipt.to !== expected.to.toLowerCase()) {
    throw new MessagingError(MessagingErrorCode.FORGED_RECEIPT, 'the receipt is for another message', { id, receiptId: receiptIds(receipt)[0] })
  }
  let mac: Uint8Array
  try {
    // we sent the message: S = ours, R = theirs
    mac = receiptMac(receipt, keys, 'sent')
  } catch (err) {
    if (isTokenimError(err)) throw new MessagingError(MessagingErrorCode.FORGED_RECEIPT, 'the receipt cannot be checked with the recipient\'s key', { id })
    throw err
  }
  if (!constantTimeEqual(mac, receipt.mac)) {
    throw new MessagingError(MessagingErrorCode.FORGED_RECEIPT, 'the receipt does not authenticate', { id })
  }
  return receipt
}

/** The MAC of a receipt for messages we `sent` (we verify it) or `received` (we write it). */
function receiptMac (r: Omit<Receipt, 'mac'> | Omit<ReceiptBatch, 'mac'>, keys: ReceiptKeys, direction: keyof ReceiptMacKeys): Uint8Array {
  let key = keys.receiptKeys?.[direction]
  if (key === undefined) {
    const ss = keys.staticSecret ?? x25519SharedSecret(keys.privateKeyObject ?? keys.keys.privateKey, keys.peerKey)
    key = receiptMacKeys(ss, keys.keys.publicKey, keys.peerKey)[direction]
    if (ss !== keys.staticSecret) ss.fill(0)
  }
  if (r.v === 2) {
    const body = dagEncode({ v: r.v, t: r.t, ids: r.ids, from: r.from, to: r.to, status: r.status, ts: r.ts })
    return hmacSha256(key, concat(RECEIPT_V2_MAC_DOMAIN_BYTES, body))
  }
  const body = dagEncode({ v: r.v, t: r.t, id: r.id, from: r.from, to: r.to, status: r.status, ts: r.ts })
  return hmacSha256(key, concat(RECEIPT_MAC_DOMAIN_BYTES, body))
}

// ---------------------------------------------------------------------------------------------
// encoding

/**
 * dag-cbor's bytes for a value: the shared fast path (src/util/cbor.ts, the bytes @ipld/dag-cbor's encode
 * gives, tested byte for byte; ~3 µs for a header where dag-cbor's generic encoder took ~20), or
 * @ipld/dag-cbor itself for what the fast path leaves to it (a lone surrogate in a text).
 */
function dagEncode (v: unknown): Uint8Array {
  return encodeDagCbor(v) ?? dagCbor.encode(v)
}

/** Encode a frame (dag-cbor, canonical). Does not add the length prefix. */
export function encodeFrame (frame: Frame): Uint8Array {
  if (frame.t === 'msg') {
    if (frame.v === 2) return dagEncode({ v: frame.v, t: frame.t, id: frame.id, from: frame.from, to: frame.to, ts: frame.ts, epk: frame.epk, n: frame.n, spk: frame.spk, ct: frame.ct })
    return dagEncode({ v: frame.v, t: frame.t, id: frame.id, from: frame.from, to: frame.to, ts: frame.ts, epk: frame.epk, spk: frame.spk, ct: frame.ct })
  }
  if (frame.v === 2) return dagEncode({ v: frame.v, t: frame.t, ids: frame.ids, from: frame.from, to: frame.to, status: frame.status, ts: frame.ts, mac: frame.mac })
  return dagEncode({ v: frame.v, t: frame.t, id: frame.id, from: frame.from, to: frame.to, status: frame.status, ts: frame.ts, mac: frame.mac })
}

/**
 * Decode one frame, strictly: at most {@link MAX_FRAME_BYTES} (`FRAME_TOO_LARGE`), canonical dag-cbor,
 * exactly the fields of its type with the right types and lengths (`MALFORMED_FRAME`). Never throws
 * anything but a MessagingError.
 */
export function decodeFrame (bytes: Uint8Array): Frame {
  checkFrameBytes(bytes)
  return canonicalFrame(bytes) ?? decodeFrameStrictly(bytes)
}

function checkFrameBytes (bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array)) throw malformed('frame must be bytes')
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new MessagingError(MessagingErrorCode.FRAME_TOO_LARGE, `frame is larger than ${MAX_FRAME_BYTES} bytes`, { size: bytes.length })
  }
  if (bytes.length === 0) throw malformed('empty frame')
}

/**
 * The frame in `bytes` when they are exactly its canonical encoding, read without dag-cbor's generic
 * decoder; else undefined. The same checks as {@link decodeFrameStrictly} (fields, types, lengths), and
 * canonical form proved while reading instead of by encoding the frame again: every head minimal, the
 * keys in dag-cbor's order (shorter first, then bytewise) with none twice, nothing after the map, values
 * only unsigned integers and byte or text strings (every text a frame carries is then checked to be
 * ASCII: a key by name, the others by their patterns, so invalid UTF-8 never passes). A map read so is the
 * unique canonical encoding of its frame — byte for byte what encodeFrame gives it, which dag-cbor decodes
 * to the same map and the strict path accepts as the same frame — so this only saves work; anything it does
 * not accept goes to the strict path, which decides and reports as before.
 */
function canonicalFrame (bytes: Uint8Array): Frame | undefined {
  const m = readFlatMap(bytes)
  if (m === undefined) return undefined
  let frame: Frame
  try {
    if (m.t === 'msg' && (m.v === 1 || m.v === 2)) frame = checkEnvelope(m)
    else if (m.t === 'rcpt' && m.v === 1) frame = checkReceipt(m)
    else return undefined
  } catch {
    return undefined
  }
  return frame
}

/** a frame's possible keys (anything else: not read here) */
const FRAME_KEYS = new Set([...MSG_V2_KEYS, ...RCPT_KEYS])
let rb: Buffer = Buffer.alloc(0)
let rat = 0

/** the argument of the head just read (minor < 28, at most 2^53 - 1, in its shortest form), or -1 */
function readArgument (minor: number): number {
  if (minor < 24) return minor
  const size = minor === 24 ? 1 : minor === 25 ? 2 : minor === 26 ? 4 : minor === 27 ? 8 : 0
  if (size === 0 || rat + size > rb.length) return -1
  let v: number
  if (size === 8) {
    const hi = rb.readUInt32BE(rat)
    if (hi > 0x1fffff || hi === 0) return -1
    v = hi * 0x100000000 + rb.readUInt32BE(rat + 4)
  } else {
    v = rb.readUIntBE(rat, size)
    // a longer head than the value needs is not canonical
    if (v < (size === 1 ? 24 : size === 2 ? 0x100 : 0x10000)) return -1
  }
  rat += size
  return v
}

/** a text or byte string of `n` bytes at the read position, or undefined when the input ends first */
function readString (major: number, n: number): string | Uint8Array | undefined {
  if (n < 0 || rat + n > rb.length) return undefined
  const start = rat
  rat += n
  return major === 2 ? rb.subarray(start, rat) : rb.toString('utf8', start, rat)
}

/**
 * A map of a frame's keys to unsigned integers, text or byte strings (views into `bytes`), in canonical
 * form only (see canonicalFrame). Undefined for anything else (other types, unknown or non-text keys, a
 * head longer than it needs, keys out of order or repeated, truncated input, trailing bytes).
 */
function readFlatMap (bytes: Uint8Array): Record<string, unknown> | undefined {
  rb = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  rat = 0
  try {
    const first = rb[rat++]
    if (first >> 5 !== 5) return undefined
    const count = readArgument(first & 0x1f)
    if (count < 0 || count > FRAME_KEYS.size) return undefined
    const m: Record<string, unknown> = {}
    let prev = ''
    for (let i = 0; i < count; i++) {
      if (rat >= rb.length) return undefined
      const kh = rb[rat++]
      if (kh >> 5 !== 3) return undefined
      const key = readString(3, readArgument(kh & 0x1f))
      if (typeof key !== 'string' || !FRAME_KEYS.has(key)) return undefined
      // dag-cbor's key order (shorter first, then bytewise: these keys are ASCII), each key once
      if (i > 0 && !(prev.length < key.length || (prev.length === key.length && prev < key))) return undefined
      prev = key
      if (rat >= rb.length) return undefined
      const vh = rb[rat++]
      const major = vh >> 5
      const arg = readArgument(vh & 0x1f)
      if (arg < 0) return undefined
      if (major === 0) m[key] = arg
      else if (major === 2 || major === 3) {
        const v = readString(major, arg)
        if (v === undefined) return undefined
        m[key] = v
      } else return undefined
    }
    return rat === rb.length ? m : undefined
  } finally {
    rb = EMPTY_BUFFER
  }
}

const EMPTY_BUFFER = Buffer.alloc(0)

/**
 * {@link decodeFrame} through @ipld/dag-cbor's strict decoder and a canonical re-encoding check: the
 * reference for every decision and error (decodeFrame gives the same frame or error, faster).
 */
export function decodeFrameStrictly (bytes: Uint8Array): Frame {
  checkFrameBytes(bytes)
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    throw malformed('not dag-cbor')
  }
  if (!isPlainMap(value)) throw malformed('not a map')
  let frame: Frame
  if (value.t === 'msg') {
    if (!ENVELOPE_VERSIONS.includes(value.v as number)) throw malformed('unsupported version', { v: typeof value.v === 'number' ? value.v : undefined })
    frame = checkEnvelope(value)
  } else if (value.t === 'rcpt') {
    if (!RECEIPT_VERSIONS.includes(value.v as number)) throw malformed('unsupported version', { v: typeof value.v === 'number' ? value.v : undefined })
    frame = value.v === 2 ? checkReceiptBatch(value) : checkReceipt(value)
  } else {
    throw malformed('unknown frame type')
  }
  const again = encodeFrame(frame)
  if (!sameBytes(again, bytes)) throw malformed('not canonically encoded')
  return frame
}

/** Decode a frame that must be a message envelope. */
export function decodeEnvelope (bytes: Uint8Array): Envelope {
  const frame = decodeFrame(bytes)
  if (frame.t !== 'msg') throw malformed('expected a message envelope')
  return frame
}

/** Decode a frame that must be a receipt (v1 or v2). */
export function decodeReceipt (bytes: Uint8Array): AnyReceipt {
  const frame = decodeFrame(bytes)
  if (frame.t !== 'rcpt') throw malformed('expected a receipt')
  return frame
}

function checkEnvelope (m: Record<string, unknown>): Envelope {
  const v2 = m.v === 2
  exactKeys(m, v2 ? MSG_V2_KEYS : MSG_KEYS)
  const id = field(m.id, isMessageId, 'id')
  const from = field(m.from, isAddress, 'from')
  const to = field(m.to, isAddress, 'to')
  if (from === to) throw malformed('from and to are the same address')
  const ts = field(m.ts, isTime, 'ts')
  const epk = field(m.epk, isKey, 'epk')
  const spk = field(m.spk, isKey, 'spk')
  const ct = field(m.ct, (x): x is Uint8Array => x instanceof Uint8Array && x.length >= GCM_TAG_LENGTH, 'ct')
  if (v2) {
    const n = field(m.n, (x): x is number => isTime(x) && x <= MAX_EPOCH_NUMBER, 'n')
    return { v: 2, t: 'msg', id, from, to, ts, epk: copy(epk), n, spk: copy(spk), ct: copy(ct) }
  }
  return { v: 1, t: 'msg', id, from, to, ts, epk: copy(epk), spk: copy(spk), ct: copy(ct) }
}

function checkReceipt (m: Record<string, unknown>): Receipt {
  exactKeys(m, RCPT_KEYS)
  const id = field(m.id, isMessageId, 'id')
  const from = field(m.from, isAddress, 'from')
  const to = field(m.to, isAddress, 'to')
  if (from === to) throw malformed('from and to are the same address')
  const status = field(m.status, (x): x is ReceiptStatus => typeof x === 'string' && (RECEIPT_STATUSES as readonly string[]).includes(x), 'status')
  const ts = field(m.ts, isTime, 'ts')
  const mac = field(m.mac, (x): x is Uint8Array => x instanceof Uint8Array && x.length === 32, 'mac')
  return { v: 1, t: 'rcpt', id, from, to, status, ts, mac: copy(mac) }
}

function checkReceiptBatch (m: Record<string, unknown>): ReceiptBatch {
  exactKeys(m, RCPT_V2_KEYS)
  const ids = field(m.ids, (x): x is string[] => Array.isArray(x) && x.length >= 1 && x.length <= MAX_RECEIPT_IDS && x.every(isMessageId), 'ids')
  if (new Set(ids).size !== ids.length) throw malformed('an id is acknowledged twice', { field: 'ids' })
  const from = field(m.from, isAddress, 'from')
  const to = field(m.to, isAddress, 'to')
  if (from === to) throw malformed('from and to are the same address')
  const status = field(m.status, (x): x is ReceiptStatus => typeof x === 'string' && (RECEIPT_STATUSES as readonly string[]).includes(x), 'status')
  const ts = field(m.ts, isTime, 'ts')
  const mac = field(m.mac, (x): x is Uint8Array => x instanceof Uint8Array && x.length === 32, 'mac')
  return { v: 2, t: 'rcpt', ids: [...ids], from, to, status, ts, mac: copy(mac) }
}

/** Encode a plaintext body `{ text, attachment? }` (validated). */
export function encodeBody (body: MessageBody): Uint8Array {
  if (typeof body !== 'object' || body === null) throw argError('body must be an object')
  if (typeof body.text !== 'string') throw argError('text must be a string')
  if (body.text.length > MAX_TEXT_LENGTH) throw argError(`text is longer than ${MAX_TEXT_LENGTH} characters`)
  if (body.attachment === undefined) return dagEncode({ text: body.text })
  const a = body.attachment
  try {
    checkAttachment(a as unknown as Record<string, unknown>)
  } catch (err) {
    throw argError(`attachment is invalid: ${(err as Error).message}`)
  }
  return dagEncode({ text: body.text, attachment: { cid: a.cid, key: a.key, name: a.name, mime: a.mime, size: a.size, sha256: a.sha256 } })
}

/** Decode a plaintext body strictly (`MALFORMED_FRAME`). */
export function decodeBody (bytes: Uint8Array): MessageBody {
  // the shared fast path gives dag-cbor's value for the plain data a body is (tested against it), and
  // leaves anything else (invalid, non-minimal, repeated keys, ...) to dag-cbor, which decides as before
  let value = decodeDagCbor(bytes)
  if (value === NOT_DECODED) {
    try {
      value = dagCbor.decode(bytes)
    } catch {
      throw malformed('body is not dag-cbor')
    }
  }
  if (!isPlainMap(value)) throw malformed('body is not a map')
  const keys = Object.keys(value).sort()
  if (!(keys.length === 1 && keys[0] === 'text') && !(keys.length === 2 && keys[0] === 'attachment' && keys[1] === 'text')) {
    throw malformed('body has unexpected fields')
  }
  const text = field(value.text, (x): x is string => typeof x === 'string', 'text')
  if (value.attachment === undefined) return { text }
  if (!isPlainMap(value.attachment)) throw malformed('attachment is not a map')
  return { text, attachment: checkAttachment(value.attachment) }
}

function checkAttachment (a: Record<string, unknown>): MessageAttachment {
  if (!isPlainMap(a)) throw malformed('attachment is not a map')
  exactKeys(a, ATTACHMENT_KEYS)
  const text = (max: number, min = 0) => (x: unknown): x is string => typeof x === 'string' && x.length >= min && x.length <= max
  return {
    cid: field(a.cid, text(512, 1), 'attachment.cid'),
    key: field(a.key, text(512, 1), 'attachment.key'),
    name: field(a.name, text(1024), 'attachment.name'),
    mime: field(a.mime, text(255), 'attachment.mime'),
    size: field(a.size, isTime, 'attachment.size'),
    sha256: field(a.sha256, (x): x is string => typeof x === 'string' && SHA256_HEX_RE.test(x), 'attachment.sha256')
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function isPlainMap (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) &&
    (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)
}

function exactKeys (m: Record<string, unknown>, expected: string[]): void {
  const keys = Object.keys(m).sort()
  if (keys.length !== expected.length || keys.some((k, i) => k !== expected[i])) throw malformed('unexpected fields')
}

function field<T> (value: unknown, check: (v: unknown) => v is T, name: string): T {
  if (!check(value)) throw malformed(`bad ${name}`, { field: name })
  return value
}

export function isAddress (v: unknown): v is string {
  return typeof v === 'string' && ADDRESS_RE.test(v)
}

function isTime (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function isKey (v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === KEY_LENGTH
}

function checkKey (v: unknown, name: string): void {
  if (!isKey(v)) throw argError(`${name} must be 32 bytes`)
}

function argAddress (v: unknown, name: string): string {
  if (typeof v !== 'string' || !ADDRESS_RE.test(v.toLowerCase())) throw argError(`${name} must be a 0x address`)
  return v.toLowerCase()
}

function argError (message: string): MessagingError {
  return new MessagingError(MessagingErrorCode.INVALID_MESSAGE_ARGUMENT, message)
}

function equalKeys (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && sameBytes(a, b)
}

function copy (b: Uint8Array): Uint8Array {
  return new Uint8Array(b)
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}

function concat (...parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

const encoder = new TextEncoder()

function utf8 (s: string): Uint8Array {
  return encoder.encode(s)
}

const MSG_KEY_INFO_BYTES = utf8(MSG_KEY_INFO)
const EPOCH_KEY_INFO_BYTES = utf8(EPOCH_KEY_INFO)
const RECEIPT_KEY_INFO_BYTES = utf8(RECEIPT_KEY_INFO)
const RECEIPT_MAC_DOMAIN_BYTES = utf8(RECEIPT_MAC_DOMAIN)
const RECEIPT_V2_MAC_DOMAIN_BYTES = utf8(RECEIPT_V2_MAC_DOMAIN)
