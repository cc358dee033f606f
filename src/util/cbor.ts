import { isUtf8 } from 'node:buffer'

/**
 * A fast path for CBOR of plain data, written straight into one reused buffer: minimal lengths and
 * integers, for values made only of plain objects, arrays, strings, safe integers, booleans, null and
 * Uint8Arrays. Anything else (a float, -0, undefined, a bigint, a Map, a CID or another class instance)
 * makes it return undefined and the caller encodes with its library as before. Two orders of map keys:
 * - {@link encodeRecord}: insertion order, the bytes `cborg.encode(v, { mapSorter: undefined })` gives
 *   (the store's records; cborg's generic encoder — tokens, a chunk list, options merged per call — was
 *   half of a message import's CPU);
 * - {@link encodeDagCbor}: dag-cbor's order (length first, then bytewise), the bytes `@ipld/dag-cbor`'s
 *   encode gives (a backup's segment messages and other plain blocks); maps with a non-ASCII key are left
 *   to dag-cbor.
 * Tests compare both with their library byte for byte.
 */
/** the output, a plain Uint8Array (a Buffer's element writes and slices cost more) */
let out = new Uint8Array(64 * 1024)
let pos = 0
const utf8 = new TextEncoder()

function ensure (n: number): void {
  if (pos + n <= out.length) return
  const next = new Uint8Array(Math.max(out.length * 2, pos + n))
  next.set(out.subarray(0, pos))
  out = next
}

/** a major type with its argument, minimal as CBOR (and cborg) wants; n < 2^53 */
function head (major: number, n: number): void {
  ensure(9)
  const o = out
  const m = major << 5
  if (n < 24) {
    o[pos++] = m | n
  } else if (n < 0x100) {
    o[pos++] = m | 24
    o[pos++] = n
  } else if (n < 0x10000) {
    o[pos++] = m | 25
    o[pos++] = n >>> 8
    o[pos++] = n & 0xff
  } else if (n < 0x100000000) {
    o[pos++] = m | 26
    o[pos++] = n >>> 24
    o[pos++] = (n >>> 16) & 0xff
    o[pos++] = (n >>> 8) & 0xff
    o[pos++] = n & 0xff
  } else {
    o[pos++] = m | 27
    const hi = Math.floor(n / 0x100000000)
    const lo = n >>> 0
    o[pos++] = hi >>> 24
    o[pos++] = (hi >>> 16) & 0xff
    o[pos++] = (hi >>> 8) & 0xff
    o[pos++] = hi & 0xff
    o[pos++] = lo >>> 24
    o[pos++] = (lo >>> 16) & 0xff
    o[pos++] = (lo >>> 8) & 0xff
    o[pos++] = lo & 0xff
  }
}

function string (s: string): boolean {
  const len = s.length
  if (len <= 512) {
    // ASCII (ids, addresses, keys, most text) byte by byte, checked as written (a non-ASCII character
    // rewinds to the UTF-8 path below): cheaper than a call into Buffer per string
    const start = pos
    head(3, len)
    ensure(len)
    const o = out
    const p = pos
    let k = 0
    for (; k < len; k++) {
      const c = s.charCodeAt(k)
      if (c >= 0x80) break
      o[p + k] = c
    }
    if (k === len) {
      pos = p + len
      return true
    }
    pos = start
  }
  if (!s.isWellFormed()) return false // lone surrogates: left to cborg
  const n = Buffer.byteLength(s, 'utf8')
  head(3, n)
  ensure(n)
  utf8.encodeInto(s, out.subarray(pos, pos + n))
  pos += n
  return true
}

/** dag-cbor's key order for ASCII keys: shorter first, then bytewise (code units are the bytes) */
function dagKeyOrder (a: string, b: string): number {
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0
}

function isAscii (s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false
  return true
}

/**
 * A map shape met before: its keys (in insertion order), the order they are written in, and each written
 * key's encoding. Records of one kind share a shape, and checking, sorting and encoding the same keys
 * again for every record was about a third of a segment message's encoding.
 */
interface Shape { keys: string[], order: string[], encoded: Uint8Array[] }
/** shapes by key count, up to MAX_SHAPES of each; [0]: insertion order, [1]: dag-cbor's order */
const shapes: Array<Map<number, Shape[]>> = [new Map(), new Map()]
const MAX_SHAPES = 16

function sameKeys (a: string[], b: string[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** the shape of a map with these keys, or undefined when a key is not ASCII (not cached) */
function shapeOf (keys: string[], sorted: boolean): Shape | undefined {
  const byCount = shapes[sorted ? 1 : 0]
  let list = byCount.get(keys.length)
  if (list !== undefined) for (const sh of list) if (sameKeys(sh.keys, keys)) return sh
  for (const k of keys) if (!isAscii(k)) return undefined
  const order = sorted ? [...keys].sort(dagKeyOrder) : keys
  const encoded = order.map(k => {
    const n = k.length
    const h = n < 24 ? [0x60 | n] : n < 0x100 ? [0x78, n] : [0x79, n >>> 8, n & 0xff] // ASCII keys < 2^16 (else not cached, below)
    const e = new Uint8Array(h.length + n)
    e.set(h)
    for (let i = 0; i < n; i++) e[h.length + i] = k.charCodeAt(i)
    return e
  })
  const sh = { keys, order, encoded }
  if (keys.every(k => k.length < 0x10000)) {
    if (list === undefined) byCount.set(keys.length, list = [])
    if (list.length < MAX_SHAPES) list.push(sh)
    return sh
  }
  return undefined
}

/** false: not a value of the fast path; `sorted`: map keys in dag-cbor's order (ASCII keys only) */
function value (v: unknown, depth: number, sorted: boolean): boolean {
  if (depth > 32) return false
  switch (typeof v) {
    case 'string':
      return string(v)
    case 'number':
      if (!Number.isSafeInteger(v) || Object.is(v, -0)) return false
      if (v >= 0) head(0, v)
      else head(1, -1 - v)
      return true
    case 'boolean':
      ensure(1)
      out[pos++] = v ? 0xf5 : 0xf4
      return true
    case 'object': {
      if (v === null) {
        ensure(1)
        out[pos++] = 0xf6
        return true
      }
      if (v instanceof Uint8Array) {
        head(2, v.length)
        ensure(v.length)
        out.set(v, pos)
        pos += v.length
        return true
      }
      if (Array.isArray(v)) {
        head(4, v.length)
        for (const item of v) if (!value(item, depth + 1, sorted)) return false
        return true
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false
      const keys = Object.keys(v)
      const sh = shapeOf(keys, sorted)
      head(5, keys.length)
      if (sh !== undefined) {
        const { order, encoded } = sh
        for (let i = 0; i < order.length; i++) {
          const e = encoded[i]
          ensure(e.length)
          const o = out
          for (let j = 0; j < e.length; j++) o[pos + j] = e[j]
          pos += e.length
          if (!value((v as Record<string, unknown>)[order[i]], depth + 1, sorted)) return false
        }
        return true
      }
      if (sorted) return false // a non-ASCII key: dag-cbor's order is then over UTF-8 bytes, left to dag-cbor
      for (const k of keys) {
        if (!string(k) || !value((v as Record<string, unknown>)[k], depth + 1, sorted)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** The record's CBOR (cborg's bytes), or undefined when it holds something the fast path leaves to cborg. */
export function encodeRecord (v: unknown): Uint8Array | undefined {
  return encodeWith(v, false)
}

/**
 * The value's dag-cbor (the bytes `@ipld/dag-cbor`'s encode gives), or undefined when it holds something
 * the fast path leaves to dag-cbor (a CID, a float, undefined, a non-ASCII map key, ...).
 */
export function encodeDagCbor (v: unknown): Uint8Array | undefined {
  return encodeWith(v, true)
}

function encodeWith (v: unknown, sorted: boolean): Uint8Array | undefined {
  pos = 0
  if (!value(v, 0, sorted)) return undefined
  // a copy of its own (the buffer is reused; level keeps the value until the batch is written)
  return out.slice(0, pos)
}

/** the chunk {@link encodeDagCborView} writes into, and where its free part starts */
let chunk = new Uint8Array(0)
let chunkAt = 0
const CHUNK_BYTES = 64 * 1024

/**
 * {@link encodeDagCbor}, as a view into a shared chunk of memory that is only ever appended to (never
 * overwritten), not a copy of its own: no allocation per value. For encodings kept briefly (a segment's
 * messages until the segment is assembled): a view keeps its whole 64 KiB chunk alive.
 */
export function encodeDagCborView (v: unknown): Uint8Array | undefined {
  const whole = out
  const wholeAt = pos
  out = chunk
  pos = chunkAt
  try {
    if (!value(v, 0, true)) return undefined
    if (out !== chunk) {
      // the chunk was full (ensure() wrote into a grown copy): the value goes to the start of a new chunk
      const n = pos - chunkAt
      chunk = new Uint8Array(Math.max(CHUNK_BYTES, n))
      chunk.set(out.subarray(chunkAt, pos))
      chunkAt = 0
      pos = n
    }
    const view = chunk.subarray(chunkAt, pos)
    chunkAt = pos
    return view
  } finally {
    out = whole
    pos = wholeAt
  }
}

/** what {@link decodeRecord} returns for bytes it leaves to cborg */
export const NOT_DECODED: unique symbol = Symbol('not decoded')

class Fallback extends Error {}
const FALLBACK = new Fallback()

let data: Buffer = Buffer.alloc(0)
let at = 0
/**
 * dag-cbor's strict reading (its decode options `strict` and `rejectDuplicateMapKeys`): a non-minimal
 * integer or length, or a repeated map key, is left to @ipld/dag-cbor (which refuses it)
 */
let strict = false

function need (n: number): void {
  if (at + n > data.length) throw FALLBACK
}

/** the argument of a head whose major type was read at data[at - 1] (definite lengths only) */
function argument (minor: number): number {
  if (minor < 24) return minor
  let v: number
  if (minor === 24) {
    need(1)
    v = data[at++]
    if (strict && v < 24) throw FALLBACK
  } else if (minor === 25) {
    need(2)
    v = data.readUInt16BE(at)
    at += 2
    if (strict && v < 0x100) throw FALLBACK
  } else if (minor === 26) {
    need(4)
    v = data.readUInt32BE(at)
    at += 4
    if (strict && v < 0x10000) throw FALLBACK
  } else if (minor === 27) {
    need(8)
    const hi = data.readUInt32BE(at)
    if (hi > 0x1fffff) throw FALLBACK // beyond 2^53: cborg's error or BigInt
    v = hi * 0x100000000 + data.readUInt32BE(at + 4)
    at += 8
    if (strict && v < 0x100000000) throw FALLBACK
  } else {
    throw FALLBACK // indefinite lengths, reserved minors
  }
  return v
}

/**
 * Short ASCII strings read before, by a hash of their length and a few bytes: map keys, addresses,
 * statuses repeat in every record, and a hit (compared byte by byte) costs less than making the string
 * again (a call into Buffer, ~150 ns).
 */
const SHORT = 64
const recent: string[] = new Array<string>(1024).fill('')

function text (n: number): string {
  need(n)
  const end = at + n
  const d = data
  let slot = -1
  if (n > 0 && n <= SHORT) {
    slot = (n * 31 + d[at] * 7 + d[at + (n >> 1)] * 17 + d[end - 1] * 131) & 1023
    const hit = recent[slot]
    if (hit.length === n) {
      let i = 0
      while (i < n && hit.charCodeAt(i) === d[at + i]) i++
      if (i === n) {
        at = end
        return hit
      }
    }
  }
  // one call decodes and tells ASCII apart: a valid multi-byte sequence gives fewer UTF-16 units than it
  // has bytes, an invalid byte gives U+FFFD, so n units and no U+FFFD means n ASCII bytes
  const s = d.toString('utf8', at, end)
  if (s.length === n && !s.includes('\ufffd')) {
    if (slot >= 0) recent[slot] = s
  } else {
    // invalid UTF-8 or a leading BOM: left to cborg, whose handling of both is its own
    if (d[at] === 0xef && d[at + 1] === 0xbb && d[at + 2] === 0xbf) throw FALLBACK
    if (s.includes('\ufffd') && !isUtf8(d.subarray(at, end))) throw FALLBACK
  }
  at = end
  return s
}

function item (depth: number): unknown {
  if (depth > 64) throw FALLBACK
  need(1)
  const b = data[at++]
  const major = b >> 5
  const minor = b & 0x1f
  switch (major) {
    case 0: return argument(minor)
    case 1: {
      const n = argument(minor)
      if (n > Number.MAX_SAFE_INTEGER - 1) throw FALLBACK // -2^53: a BigInt from cborg
      return -1 - n
    }
    case 2: {
      // a store record's bytes (an outbox entry's envelope) as cborg gives them: a copy of its own; dag-cbor's
      // reading leaves them to @ipld/dag-cbor as before
      if (strict) throw FALLBACK
      const n = argument(minor)
      need(n)
      const bytes = new Uint8Array(data.subarray(at, at + n))
      at += n
      return bytes
    }
    case 3: return text(argument(minor))
    case 4: {
      const n = argument(minor)
      const out: unknown[] = []
      for (let i = 0; i < n; i++) out.push(item(depth + 1))
      return out
    }
    case 5: {
      const n = argument(minor)
      const out: Record<string, unknown> = {}
      for (let i = 0; i < n; i++) {
        need(1)
        if (data[at] >> 5 !== 3) throw FALLBACK // a non-string key: cborg's error
        at++
        const key = text(argument(data[at - 1] & 0x1f))
        if (key === '__proto__' || (strict && Object.hasOwn(out, key))) throw FALLBACK
        out[key] = item(depth + 1)
      }
      return out
    }
    case 7:
      if (b === 0xf4) return false
      if (b === 0xf5) return true
      if (b === 0xf6) return null
      throw FALLBACK // undefined, floats, other simple values
    default:
      throw FALLBACK // tags
  }
}

/**
 * The value of a store record, as `cborg.decode` gives it, for records of the subset {@link encodeRecord}
 * writes (maps with string keys, arrays, strings, byte strings — each a Uint8Array copy of its own, as
 * cborg's — safe integers, booleans, null); anything else — floats, tags, indefinite lengths, invalid
 * UTF-8, trailing bytes — is {@link NOT_DECODED}, for cborg to decode (or refuse) as before.
 */
export function decodeRecord (bytes: Uint8Array): unknown {
  return decodeWith(bytes, false)
}

/**
 * The value `@ipld/dag-cbor`'s decode gives, for the plain data {@link encodeDagCbor} writes without byte
 * strings (a segment, its messages): minimal integers and lengths, no repeated map key, as dag-cbor's
 * strict decoding wants. Anything else (bytes, CIDs, floats, non-minimal or repeated, invalid UTF-8,
 * trailing bytes) is {@link NOT_DECODED}, for dag-cbor to decode or refuse as before.
 */
export function decodeDagCbor (bytes: Uint8Array): unknown {
  return decodeWith(bytes, true)
}

function decodeWith (bytes: Uint8Array, strictly: boolean): unknown {
  data = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  at = 0
  strict = strictly
  try {
    const v = item(0)
    return at === data.length ? v : NOT_DECODED
  } catch (err) {
    if (err === FALLBACK) return NOT_DECODED
    throw err
  } finally {
    data = EMPTY
  }
}

const EMPTY = Buffer.alloc(0)
