/**
 * A store row's segment message straight from its stored bytes, for the common case: a full backup read
 * every row's CBOR into a JS object (strings made for its text, addresses and id), checked it and encoded
 * it again as dag-cbor — ~40% of the build's main-thread CPU at 100,000 messages. Here the row's map is
 * scanned once, every field is checked on its bytes as `checkSegmentMessage(toSegmentMessage(row))`
 * checks it, and the segment message's dag-cbor (keys in dag-cbor's order, minimal heads) is written
 * around the row's own string bytes: byte for byte what `encodeMessage` gives for that row (a test holds
 * the two to the same answers and bytes, for generated rows and damaged ones).
 *
 * Only the plain case is taken: a map with exactly the fields a message row has (id, conversation, from,
 * to, ts, text, direction, status; receivedAt optional, null taken as absent; attachment only as null),
 * each of the expected kind, strings valid UTF-8 without a leading byte-order mark, the checks passed.
 * Anything else (an attachment, another field, a repeated one, a float, a tag, a failed check, a text
 * over MAX_TEXT bytes) returns undefined and the caller reads the row the usual way (decode, check,
 * encode), which then gives the same message or the same error as before.
 */
import { isAscii, isUtf8 } from 'node:buffer'

export interface TranscodedRow {
  /** the row's conversation (`conversation`), id and ts, for the builder's grouping, order and cuts */
  conversation: string
  id: string
  ts: number
  /** the segment message's dag-cbor: a view into a shared append-only chunk (kept only until its segment is made) */
  enc: Uint8Array
}

/** the longest text (UTF-16 units) a segment message holds (schema.ts); a text of more bytes is left to the usual path */
const MAX_TEXT = 1_000_000
const MAX_ID = 128
const ADDRESS = 42

// field names as they are keyed in a row (the store writes them with these names)
const F_ID = 1
const F_CONV = 2
const F_FROM = 3
const F_TO = 4
const F_TS = 5
const F_TEXT = 6
const F_DIRECTION = 7
const F_STATUS = 8
const F_RECEIVED = 9
const F_ATTACHMENT = 10
const REQUIRED = (1 << F_ID) | (1 << F_CONV) | (1 << F_FROM) | (1 << F_TO) | (1 << F_TS) | (1 << F_TEXT) | (1 << F_DIRECTION) | (1 << F_STATUS)

/** the field a key's bytes name, 0 for any other key */
function field (b: Uint8Array, at: number, n: number): number {
  const c0 = b[at]
  switch (n) {
    case 2:
      if (c0 === 0x69 && b[at + 1] === 0x64) return F_ID // id
      if (c0 === 0x74 && b[at + 1] === 0x6f) return F_TO // to
      if (c0 === 0x74 && b[at + 1] === 0x73) return F_TS // ts
      return 0
    case 4:
      if (c0 === 0x66 && b[at + 1] === 0x72 && b[at + 2] === 0x6f && b[at + 3] === 0x6d) return F_FROM // from
      if (c0 === 0x74 && b[at + 1] === 0x65 && b[at + 2] === 0x78 && b[at + 3] === 0x74) return F_TEXT // text
      return 0
    case 6:
      return same(b, at, STATUS_KEY) ? F_STATUS : 0
    case 9:
      return same(b, at, DIRECTION_KEY) ? F_DIRECTION : 0
    case 10:
      return same(b, at, RECEIVED_KEY) ? F_RECEIVED : same(b, at, ATTACHMENT_KEY) ? F_ATTACHMENT : 0
    case 12:
      return same(b, at, CONVERSATION_KEY) ? F_CONV : 0
    default:
      return 0
  }
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, c => c.charCodeAt(0))
const STATUS_KEY = ascii('status')
const DIRECTION_KEY = ascii('direction')
const RECEIVED_KEY = ascii('receivedAt')
const ATTACHMENT_KEY = ascii('attachment')
const CONVERSATION_KEY = ascii('conversation')
const IN = ascii('in')
const OUT = ascii('out')
const STATUSES = ['queued', 'sent', 'delivered', 'received', 'failed'].map(ascii)

function same (b: Uint8Array, at: number, want: Uint8Array): boolean {
  for (let i = 0; i < want.length; i++) if (b[at + i] !== want[i]) return false
  return true
}

function sameRange (b: Uint8Array, a: number, c: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[a + i] !== b[c + i]) return false
  return true
}

/** "0x" and 40 lowercase hex digits */
function isLowerAddress (b: Uint8Array, at: number, n: number): boolean {
  if (n !== ADDRESS || b[at] !== 0x30 || b[at + 1] !== 0x78) return false
  for (let i = at + 2; i < at + ADDRESS; i++) {
    const c = b[i]
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false
  }
  return true
}

// the head being read: its value (a length or an integer), or -1 for anything this path leaves alone
let pos = 0
/**
 * the last addresses checked on a row's two sides (its conversation's peer, and the owner's): not checked
 * again while they stay the same (they start as a valid address, so an unchecked one never matches)
 */
const lastPeer = Uint8Array.from('0x' + '0'.repeat(40), c => c.charCodeAt(0))
const lastOther = Uint8Array.from(lastPeer)

/** the argument of the head at b[pos] of major type `major` (definite, below 2^53), or -1 */
function head (b: Uint8Array, major: number): number {
  if (pos >= b.length) return -1
  const h = b[pos]
  if (h >> 5 !== major) return -1
  const minor = h & 0x1f
  if (minor < 24) {
    pos += 1
    return minor
  }
  if (minor === 24) {
    if (pos + 2 > b.length) return -1
    const v = b[pos + 1]
    pos += 2
    return v
  }
  if (minor === 25) {
    if (pos + 3 > b.length) return -1
    const v = (b[pos + 1] << 8) | b[pos + 2]
    pos += 3
    return v
  }
  if (minor === 26) {
    if (pos + 5 > b.length) return -1
    const v = ((b[pos + 1] << 24) >>> 0) + (b[pos + 2] << 16) + (b[pos + 3] << 8) + b[pos + 4]
    pos += 5
    return v
  }
  if (minor === 27) {
    if (pos + 9 > b.length) return -1
    const hi = ((b[pos + 1] << 24) >>> 0) + (b[pos + 2] << 16) + (b[pos + 3] << 8) + b[pos + 4]
    if (hi > 0x1fffff) return -1
    const lo = ((b[pos + 5] << 24) >>> 0) + (b[pos + 6] << 16) + (b[pos + 7] << 8) + b[pos + 8]
    pos += 9
    return hi * 0x100000000 + lo
  }
  return -1
}

/** the chunk the encodings are written into (append-only, like util/cbor's views), and its free part */
let chunk = new Uint8Array(0)
let chunkAt = 0
const CHUNK_BYTES = 64 * 1024

function headSize (n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

function writeHead (o: Uint8Array, at: number, major: number, n: number): number {
  const m = major << 5
  if (n < 24) {
    o[at] = m | n
    return at + 1
  }
  if (n < 0x100) {
    o[at] = m | 24
    o[at + 1] = n
    return at + 2
  }
  if (n < 0x10000) {
    o[at] = m | 25
    o[at + 1] = n >>> 8
    o[at + 2] = n & 0xff
    return at + 3
  }
  if (n < 0x100000000) {
    o[at] = m | 26
    o[at + 1] = n >>> 24
    o[at + 2] = (n >>> 16) & 0xff
    o[at + 3] = (n >>> 8) & 0xff
    o[at + 4] = n & 0xff
    return at + 5
  }
  const hi = Math.floor(n / 0x100000000)
  const lo = n >>> 0
  o[at] = m | 27
  o[at + 1] = hi >>> 24
  o[at + 2] = (hi >>> 16) & 0xff
  o[at + 3] = (hi >>> 8) & 0xff
  o[at + 4] = hi & 0xff
  o[at + 5] = lo >>> 24
  o[at + 6] = (lo >>> 16) & 0xff
  o[at + 7] = (lo >>> 8) & 0xff
  o[at + 8] = lo & 0xff
  return at + 9
}

function put (o: Uint8Array, at: number, src: Uint8Array, from: number, n: number): number {
  if (n < 64) {
    for (let i = 0; i < n; i++) o[at + i] = src[from + i]
  } else {
    o.set(src.subarray(from, from + n), at)
  }
  return at + n
}

// dag-cbor's key order for a segment message: id, to, ts, from, text, status, direction, receivedAt
const K_ID = ascii('\x62id')
const K_TO = ascii('\x62to')
const K_TS = ascii('\x62ts')
const K_FROM = ascii('\x64from')
const K_TEXT = ascii('\x64text')
const K_STATUS = ascii('\x66status')
const K_DIRECTION = ascii('\x69direction')
const K_RECEIVED = ascii('\x6areceivedAt')

/**
 * The segment message of a stored row (its bytes), when the row is the plain case (see the file comment),
 * else undefined. `conversation`: the conversation of the row before, whose string is then reused when
 * this row's is the same.
 */
export function transcodeRow (b: Uint8Array, conversation?: string): TranscodedRow | undefined {
  pos = 0
  if (b.length === 0) return undefined
  const n = head(b, 5)
  if (n < 8 || n > 10) return undefined
  let seen = 0
  let idAt = 0; let idN = 0
  let convAt = 0; let convN = 0
  let fromAt = 0; let fromN = 0
  let toAt = 0; let toN = 0
  let textAt = 0; let textN = 0
  let dirAt = 0; let dirN = 0
  let statusAt = 0; let statusN = 0
  let ts = 0
  let received = -1
  for (let i = 0; i < n; i++) {
    const kn = head(b, 3)
    if (kn < 0 || pos + kn > b.length) return undefined
    const f = field(b, pos, kn)
    pos += kn
    if (f === 0 || (seen & (1 << f)) !== 0) return undefined
    seen |= 1 << f
    if (f === F_TS) {
      ts = head(b, 0)
      if (ts < 0) return undefined
      continue
    }
    if (f === F_RECEIVED || f === F_ATTACHMENT) {
      if (b[pos] === 0xf6) { // null: absent, as toSegmentMessage takes it
        pos++
        continue
      }
      if (f === F_ATTACHMENT) return undefined
      received = head(b, 0)
      if (received < 0) return undefined
      continue
    }
    const sn = head(b, 3)
    if (sn < 0 || pos + sn > b.length) return undefined
    const at = pos
    pos += sn
    switch (f) {
      case F_ID: idAt = at; idN = sn; break
      case F_CONV: convAt = at; convN = sn; break
      case F_FROM: fromAt = at; fromN = sn; break
      case F_TO: toAt = at; toN = sn; break
      case F_TEXT: textAt = at; textN = sn; break
      case F_DIRECTION: dirAt = at; dirN = sn; break
      default: statusAt = at; statusN = sn
    }
  }
  if (pos !== b.length || (seen & REQUIRED) !== REQUIRED) return undefined
  // the checks of checkSegmentMessage, on the bytes
  if (idN < 1 || idN > MAX_ID) return undefined
  for (let i = idAt; i < idAt + idN; i++) if (b[i] < 0x21 || b[i] > 0x7e) return undefined
  let incoming: boolean
  if (dirN === 2 && same(b, dirAt, IN)) incoming = true
  else if (dirN === 3 && same(b, dirAt, OUT)) incoming = false
  else return undefined
  // the row's conversation is the peer: `from` of an incoming message, `to` of an outgoing one; the other
  // address is (in a store) the owner's, the same in every row: checked once while it stays the same
  const peerAt = incoming ? fromAt : toAt
  const otherAt = incoming ? toAt : fromAt
  if (fromN !== ADDRESS || toN !== ADDRESS || convN !== ADDRESS || !sameRange(b, convAt, peerAt, ADDRESS)) return undefined
  if (!same(b, peerAt, lastPeer)) {
    if (!isLowerAddress(b, peerAt, ADDRESS)) return undefined
    lastPeer.set(b.subarray(peerAt, peerAt + ADDRESS))
  }
  if (!same(b, otherAt, lastOther)) {
    if (!isLowerAddress(b, otherAt, ADDRESS)) return undefined
    lastOther.set(b.subarray(otherAt, otherAt + ADDRESS))
  }
  let statusOk = false
  for (const s of STATUSES) if (statusN === s.length && same(b, statusAt, s)) statusOk = true
  if (!statusOk) return undefined
  if (textN > MAX_TEXT) return undefined
  // the text as the store's decoder reads it: ASCII, or valid UTF-8 without a leading byte-order mark
  // (its string then encodes back to these very bytes)
  const textEnd = textAt + textN
  let plain: boolean
  if (textN < 32) {
    let k = textAt
    while (k < textEnd && b[k] < 0x80) k++
    plain = k === textEnd
  } else {
    plain = isAscii(b.subarray(textAt, textEnd))
  }
  if (!plain) {
    if (textN >= 3 && b[textAt] === 0xef && b[textAt + 1] === 0xbb && b[textAt + 2] === 0xbf) return undefined
    if (!isUtf8(b.subarray(textAt, textEnd))) return undefined
  }

  const size = 1 + K_ID.length + headSize(idN) + idN + K_TO.length + headSize(ADDRESS) + ADDRESS + K_TS.length + headSize(ts) +
    K_FROM.length + headSize(ADDRESS) + ADDRESS + K_TEXT.length + headSize(textN) + textN + K_STATUS.length + headSize(statusN) + statusN +
    K_DIRECTION.length + headSize(dirN) + dirN + (received >= 0 ? K_RECEIVED.length + headSize(received) : 0)
  if (chunkAt + size > chunk.length) {
    chunk = new Uint8Array(Math.max(CHUNK_BYTES, size))
    chunkAt = 0
  }
  const o = chunk
  const start = chunkAt
  let w = start
  o[w++] = 0xa0 | (received >= 0 ? 8 : 7)
  w = put(o, w, K_ID, 0, K_ID.length)
  w = writeHead(o, w, 3, idN)
  w = put(o, w, b, idAt, idN)
  w = put(o, w, K_TO, 0, K_TO.length)
  w = writeHead(o, w, 3, ADDRESS)
  w = put(o, w, b, toAt, ADDRESS)
  w = put(o, w, K_TS, 0, K_TS.length)
  w = writeHead(o, w, 0, ts)
  w = put(o, w, K_FROM, 0, K_FROM.length)
  w = writeHead(o, w, 3, ADDRESS)
  w = put(o, w, b, fromAt, ADDRESS)
  w = put(o, w, K_TEXT, 0, K_TEXT.length)
  w = writeHead(o, w, 3, textN)
  w = put(o, w, b, textAt, textN)
  w = put(o, w, K_STATUS, 0, K_STATUS.length)
  w = writeHead(o, w, 3, statusN)
  w = put(o, w, b, statusAt, statusN)
  w = put(o, w, K_DIRECTION, 0, K_DIRECTION.length)
  w = writeHead(o, w, 3, dirN)
  w = put(o, w, b, dirAt, dirN)
  if (received >= 0) {
    w = put(o, w, K_RECEIVED, 0, K_RECEIVED.length)
    w = writeHead(o, w, 0, received)
  }
  if (w !== start + size) throw new Error('transcode: the encoding\'s size was misjudged') // never: sized above
  chunkAt = w
  const conv = conversation !== undefined && conversation.length === ADDRESS && sameAscii(b, convAt, conversation)
    ? conversation
    : latin1(b, convAt, ADDRESS)
  return { conversation: conv, id: latin1(b, idAt, idN), ts, enc: o.subarray(start, w) }
}

function sameAscii (b: Uint8Array, at: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false
  return true
}

/** ASCII bytes (checked above) as a string; a row read from the store is a Buffer already (no view made for it) */
function latin1 (b: Uint8Array, at: number, n: number): string {
  return (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toString('latin1', at, at + n)
}
