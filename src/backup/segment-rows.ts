/**
 * A segment's store rows straight from its plaintext bytes, for the common case — the reverse of
 * transcode.ts. A restore read every segment into JS objects (a string for every text, address and id),
 * checked them, made each a StoredMessage, validated that again in the store and encoded it as the store's
 * record: ~4–5 µs a message of the main thread at 100,000 messages, and most of the garbage. Here the
 * segment's dag-cbor is read once, every field checked on its bytes as decodeSegment and
 * checkSegmentMessage check it (and the store's normalizeMessage, whose rules they include), and each
 * message's row is written around the segment's own string bytes: byte for byte what
 * `encodeRecord(normalizeMessage(fromSegmentMessage(conv, m)))` gives (a test holds the two to the same
 * answers and bytes, for generated segments and damaged ones).
 *
 * Only the plain case is taken: a segment map with exactly its four keys and messages with exactly the
 * fields a message without an attachment has (receivedAt optional), every head in its shortest form and
 * every map's keys in dag-cbor's order (what the builder writes), each value of the expected kind, texts
 * ASCII or valid UTF-8 without a leading byte-order mark, the checks passed. Anything else (an attachment,
 * another order or field, a float, a tag, a failed check, a text over MAX_TEXT bytes) returns undefined and
 * the caller decodes the segment as before, which then gives the same messages or the same error.
 */
import { isAscii, isUtf8 } from 'node:buffer'

/** one message as the store keeps it: what its keys are made of, and its record's bytes */
export interface SegmentRow {
  id: string
  /** the segment's conversation (one string for all its rows): a row is a store MessageRecord as it is */
  conversation: string
  ts: number
  /** the store's record of the message (a view into a buffer of the segment's rows) */
  bytes: Uint8Array
}

export interface SegmentRows {
  conv: string
  seq: number
  /** in the segment's (strictly ascending) (ts, id) order */
  rows: SegmentRow[]
}

/** the longest text (bytes) taken here: a text of more may still be ≤ MAX_TEXT UTF-16 units, left to the decoder */
const MAX_TEXT = 1_000_000
const MAX_ID = 128
const ADDRESS = 42

const ascii = (s: string): Uint8Array => Uint8Array.from(s, c => c.charCodeAt(0))
const STATUSES = ['queued', 'sent', 'delivered', 'received', 'failed'].map(ascii)
const IN = ascii('in')
const OUT = ascii('out')
const SEGMENT = ascii('segment')

// dag-cbor's key order: the segment's (seq, conv, msgs, type) and a message's (id, to, ts, from, text,
// status, direction, receivedAt), each key with its head
const K_SEQ = ascii('\x63seq')
const K_CONV = ascii('\x64conv')
const K_MSGS = ascii('\x64msgs')
const K_TYPE = ascii('\x64type')
const K_ID = ascii('\x62id')
const K_TO = ascii('\x62to')
const K_TS = ascii('\x62ts')
const K_FROM = ascii('\x64from')
const K_TEXT = ascii('\x64text')
const K_STATUS = ascii('\x66status')
const K_DIRECTION = ascii('\x69direction')
const K_RECEIVED = ascii('\x6areceivedAt')
// the store's record: its keys in insertion order (normalizeMessage's), each with its head
const R_ID = K_ID
const R_CONVERSATION = ascii('\x6cconversation')
const R_FROM = K_FROM
const R_TO = K_TO
const R_TS = K_TS
const R_TEXT = K_TEXT
const R_DIRECTION = K_DIRECTION
const R_STATUS = K_STATUS
const R_RECEIVED = K_RECEIVED

let b: Uint8Array = new Uint8Array(0)
/** b as a Buffer, for its strings */
let bText: Buffer = Buffer.alloc(0)
let p = 0

/** the argument of the head at b[p] of major type `major`, in its shortest form (below 2^53), or -1 */
function head (major: number): number {
  if (p >= b.length) return -1
  const h = b[p]
  if (h >> 5 !== major) return -1
  const minor = h & 0x1f
  if (minor < 24) {
    p += 1
    return minor
  }
  let v: number
  let size: number
  if (minor === 24) {
    size = 1
    if (p + 2 > b.length) return -1
    v = b[p + 1]
    if (v < 24) return -1
  } else if (minor === 25) {
    size = 2
    if (p + 3 > b.length) return -1
    v = (b[p + 1] << 8) | b[p + 2]
    if (v < 0x100) return -1
  } else if (minor === 26) {
    size = 4
    if (p + 5 > b.length) return -1
    v = ((b[p + 1] << 24) >>> 0) + (b[p + 2] << 16) + (b[p + 3] << 8) + b[p + 4]
    if (v < 0x10000) return -1
  } else if (minor === 27) {
    size = 8
    if (p + 9 > b.length) return -1
    const hi = ((b[p + 1] << 24) >>> 0) + (b[p + 2] << 16) + (b[p + 3] << 8) + b[p + 4]
    if (hi > 0x1fffff || hi === 0) return -1
    v = hi * 0x100000000 + ((b[p + 5] << 24) >>> 0) + (b[p + 6] << 16) + (b[p + 7] << 8) + b[p + 8]
  } else {
    return -1
  }
  p += 1 + size
  return v
}

/** the key (its head and bytes, as in `want`) at b[p]; false (and p unspecified) otherwise */
function key (want: Uint8Array): boolean {
  if (p + want.length > b.length) return false
  for (let i = 0; i < want.length; i++) if (b[p + i] !== want[i]) return false
  p += want.length
  return true
}

function same (at: number, want: Uint8Array, n: number): boolean {
  if (n !== want.length) return false
  for (let i = 0; i < n; i++) if (b[at + i] !== want[i]) return false
  return true
}

function sameRange (a: number, c: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[a + i] !== b[c + i]) return false
  return true
}

/** "0x" and 40 lowercase hex digits */
function isLowerAddress (at: number): boolean {
  if (b[at] !== 0x30 || b[at + 1] !== 0x78) return false
  for (let i = at + 2; i < at + ADDRESS; i++) {
    const c = b[i]
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false
  }
  return true
}

/** a text at b[p] of `max` bytes at most: its start, or -1 (its length in textN) */
let textN = 0
function text (max: number): number {
  const n = head(3)
  if (n < 0 || n > max || p + n > b.length) return -1
  const at = p
  p += n
  textN = n
  return at
}

/** (ts, id) order of two messages by their bytes: negative when the first sorts before the second */
function compare (ts1: number, id1: number, n1: number, ts2: number, id2: number, n2: number): number {
  if (ts1 !== ts2) return ts1 - ts2
  const n = Math.min(n1, n2)
  for (let i = 0; i < n; i++) {
    const d = b[id1 + i] - b[id2 + i]
    if (d !== 0) return d
  }
  return n1 - n2
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

// where the message being read has its fields in the segment (set by message(); one message at a time, no
// object per message)
let fIdAt = 0
let fIdN = 0
let fToAt = 0
let fTs = 0
let fFromAt = 0
let fTextAt = 0
let fTextN = 0
let fStatusAt = 0
let fStatusN = 0
let fDirAt = 0
let fDirN = 0
let fReceived = -1

/** one plain message at b[p] of conversation b[convAt..] into the f* fields, or false */
function message (convAt: number): boolean {
  const n = head(5)
  if (n !== 7 && n !== 8) return false
  if (!key(K_ID)) return false
  const idAt = text(MAX_ID)
  const idN = textN
  if (idAt < 0 || idN < 1) return false
  for (let i = idAt; i < idAt + idN; i++) if (b[i] < 0x21 || b[i] > 0x7e) return false
  if (!key(K_TO)) return false
  const toAt = text(ADDRESS)
  if (toAt < 0 || textN !== ADDRESS) return false
  if (!key(K_TS)) return false
  const ts = head(0)
  if (ts < 0) return false
  if (!key(K_FROM)) return false
  const fromAt = text(ADDRESS)
  if (fromAt < 0 || textN !== ADDRESS) return false
  if (!key(K_TEXT)) return false
  const textAt = text(MAX_TEXT)
  const tN = textN
  if (textAt < 0) return false
  if (!key(K_STATUS)) return false
  const statusAt = text(9)
  const statusN = textN
  if (statusAt < 0) return false
  if (!key(K_DIRECTION)) return false
  const dirAt = text(3)
  const dirN = textN
  if (dirAt < 0) return false
  let received = -1
  if (n === 8) {
    if (!key(K_RECEIVED)) return false
    received = head(0)
    if (received < 0) return false
  }
  // the checks of checkSegmentMessage (and normalizeMessage), on the bytes
  let incoming: boolean
  if (same(dirAt, IN, dirN)) incoming = true
  else if (same(dirAt, OUT, dirN)) incoming = false
  else return false
  // the conversation's peer is `from` of an incoming message, `to` of an outgoing one: the same bytes as
  // the segment's conv (checked to be a lowercase address); the other side is checked here
  const peerAt = incoming ? fromAt : toAt
  const otherAt = incoming ? toAt : fromAt
  if (!sameRange(peerAt, convAt, ADDRESS)) return false
  if (lastOtherBuf !== b || !sameRange(otherAt, lastOther, ADDRESS)) {
    if (!isLowerAddress(otherAt)) return false
    lastOther = otherAt
    lastOtherBuf = b
  }
  let statusOk = false
  for (const s of STATUSES) if (same(statusAt, s, statusN)) statusOk = true
  if (!statusOk) return false
  // the text as the decoder reads it: ASCII, or valid UTF-8 without a leading byte-order mark (its string
  // then encodes back to these very bytes)
  const textEnd = textAt + tN
  let plain: boolean
  if (tN < 32) {
    let k = textAt
    while (k < textEnd && b[k] < 0x80) k++
    plain = k === textEnd
  } else {
    plain = isAscii(b.subarray(textAt, textEnd))
  }
  if (!plain) {
    if (tN >= 3 && b[textAt] === 0xef && b[textAt + 1] === 0xbb && b[textAt + 2] === 0xbf) return false
    if (!isUtf8(b.subarray(textAt, textEnd))) return false
  }
  fIdAt = idAt
  fIdN = idN
  fToAt = toAt
  fTs = ts
  fFromAt = fromAt
  fTextAt = textAt
  fTextN = tN
  fStatusAt = statusAt
  fStatusN = statusN
  fDirAt = dirAt
  fDirN = dirN
  fReceived = received
  return true
}

/** the other address last checked (a position in the segment being read): not checked again while it repeats */
let lastOther = 0
let lastOtherBuf: Uint8Array | undefined

/** a message's store record is its segment map plus the conversation: this many bytes longer */
const CONVERSATION_PAIR = R_CONVERSATION.length + 2 + ADDRESS

/** the store's record of the message just read: map { id, conversation, from, to, ts, text, direction, status, receivedAt? } */
function writeRow (o: Uint8Array, at: number, convAt: number): number {
  let w = at
  o[w++] = 0xa0 | (fReceived >= 0 ? 9 : 8)
  w = put(o, w, R_ID, 0, R_ID.length)
  w = writeHead(o, w, 3, fIdN)
  w = put(o, w, b, fIdAt, fIdN)
  w = put(o, w, R_CONVERSATION, 0, R_CONVERSATION.length)
  w = writeHead(o, w, 3, ADDRESS)
  w = put(o, w, b, convAt, ADDRESS)
  w = put(o, w, R_FROM, 0, R_FROM.length)
  w = writeHead(o, w, 3, ADDRESS)
  w = put(o, w, b, fFromAt, ADDRESS)
  w = put(o, w, R_TO, 0, R_TO.length)
  w = writeHead(o, w, 3, ADDRESS)
  w = put(o, w, b, fToAt, ADDRESS)
  w = put(o, w, R_TS, 0, R_TS.length)
  w = writeHead(o, w, 0, fTs)
  w = put(o, w, R_TEXT, 0, R_TEXT.length)
  w = writeHead(o, w, 3, fTextN)
  w = put(o, w, b, fTextAt, fTextN)
  w = put(o, w, R_DIRECTION, 0, R_DIRECTION.length)
  w = writeHead(o, w, 3, fDirN)
  w = put(o, w, b, fDirAt, fDirN)
  w = put(o, w, R_STATUS, 0, R_STATUS.length)
  w = writeHead(o, w, 3, fStatusN)
  w = put(o, w, b, fStatusAt, fStatusN)
  if (fReceived >= 0) {
    w = put(o, w, R_RECEIVED, 0, R_RECEIVED.length)
    w = writeHead(o, w, 0, fReceived)
  }
  return w
}

/** ASCII bytes as a string (through one Buffer over the segment, not a Buffer view per string) */
function latin1 (at: number, n: number): string {
  return bText.toString('latin1', at, at + n)
}

/**
 * The rows of a segment's plaintext when it is the plain case (see the file comment), else undefined.
 * `maxMessages`: the most a segment may hold (the manifest's segmentSize), as decodeSegment takes it.
 */
export function segmentRows (plain: Uint8Array, maxMessages: number): SegmentRows | undefined {
  b = plain
  bText = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength)
  p = 0
  lastOtherBuf = undefined
  try {
    if (head(5) !== 4) return undefined
    if (!key(K_SEQ)) return undefined
    const seq = head(0)
    if (seq < 0) return undefined
    if (!key(K_CONV)) return undefined
    const convAt = text(ADDRESS)
    if (convAt < 0 || textN !== ADDRESS || !isLowerAddress(convAt)) return undefined
    const conv = latin1(convAt, ADDRESS)
    if (!key(K_MSGS)) return undefined
    const count = head(4)
    if (count < 1 || count > maxMessages) return undefined
    // the rows are written as the messages are read, into one buffer of their own (the store copies them into
    // its write batch): a row is its message's map plus the conversation, so the rest of the plaintext and
    // CONVERSATION_PAIR a message bound them
    const out = new Uint8Array(b.length - p + count * CONVERSATION_PAIR)
    const rows: SegmentRow[] = new Array<SegmentRow>(count)
    let w = 0
    let prevTs = -1
    let prevIdAt = 0
    let prevIdN = 0
    for (let i = 0; i < count; i++) {
      if (!message(convAt)) return undefined
      if (i > 0 && compare(prevTs, prevIdAt, prevIdN, fTs, fIdAt, fIdN) >= 0) return undefined
      prevTs = fTs
      prevIdAt = fIdAt
      prevIdN = fIdN
      const start = w
      w = writeRow(out, w, convAt)
      if (w > out.length) throw new Error('segment rows: the records\' size was misjudged') // never: bounded above
      rows[i] = { id: latin1(fIdAt, fIdN), conversation: conv, ts: fTs, bytes: out.subarray(start, w) }
    }
    if (!key(K_TYPE)) return undefined
    const typeAt = text(SEGMENT.length)
    if (typeAt < 0 || !same(typeAt, SEGMENT, textN)) return undefined
    if (p !== b.length) return undefined
    return { conv, seq, rows }
  } finally {
    b = EMPTY
    bText = EMPTY_TEXT
    lastOtherBuf = undefined
  }
}

const EMPTY = new Uint8Array(0)
const EMPTY_TEXT = Buffer.alloc(0)
