import { isUtf8 } from 'node:buffer'

/**
 * A fast path for the store's CBOR records: the bytes `cborg.encode(v, { mapSorter: undefined })` gives
 * (maps in insertion order, minimal lengths and integers), written straight into one buffer for values
 * made only of plain objects, arrays, strings, safe integers, booleans, null and Uint8Arrays: every
 * record the store writes. Anything else (a float, -0, undefined, a bigint, a Map, a class instance)
 * makes it return undefined and the caller encodes with cborg. cborg's generic encoder (tokens, a chunk
 * list, options merged per call) was half of a message import's CPU. A test compares both byte for byte.
 */

let buf = Buffer.allocUnsafe(64 * 1024)
let pos = 0

function ensure (n: number): void {
  if (pos + n <= buf.length) return
  const next = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + n))
  buf.copy(next, 0, 0, pos)
  buf = next
}

/** a major type with its argument, minimal as CBOR (and cborg) wants; n < 2^53 */
function head (major: number, n: number): void {
  ensure(9)
  const m = major << 5
  if (n < 24) {
    buf[pos++] = m | n
  } else if (n < 0x100) {
    buf[pos++] = m | 24
    buf[pos++] = n
  } else if (n < 0x10000) {
    buf[pos++] = m | 25
    buf.writeUInt16BE(n, pos)
    pos += 2
  } else if (n < 0x100000000) {
    buf[pos++] = m | 26
    buf.writeUInt32BE(n, pos)
    pos += 4
  } else {
    buf[pos++] = m | 27
    buf.writeUInt32BE(Math.floor(n / 0x100000000), pos)
    buf.writeUInt32BE(n >>> 0, pos + 4)
    pos += 8
  }
}

function string (s: string): boolean {
  const len = s.length
  if (len <= 512) {
    // ASCII (ids, addresses, keys, most text) byte by byte: cheaper than a call into Buffer per string
    let i = 0
    while (i < len && s.charCodeAt(i) < 0x80) i++
    if (i === len) {
      head(3, len)
      ensure(len)
      for (let k = 0; k < len; k++) buf[pos + k] = s.charCodeAt(k)
      pos += len
      return true
    }
  }
  if (!s.isWellFormed()) return false // lone surrogates: left to cborg
  const n = Buffer.byteLength(s, 'utf8')
  head(3, n)
  ensure(n)
  pos += buf.write(s, pos, n, 'utf8')
  return true
}

/** false: not a value of the fast path */
function value (v: unknown, depth: number): boolean {
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
      buf[pos++] = v ? 0xf5 : 0xf4
      return true
    case 'object': {
      if (v === null) {
        ensure(1)
        buf[pos++] = 0xf6
        return true
      }
      if (v instanceof Uint8Array) {
        head(2, v.length)
        ensure(v.length)
        buf.set(v, pos)
        pos += v.length
        return true
      }
      if (Array.isArray(v)) {
        head(4, v.length)
        for (const item of v) if (!value(item, depth + 1)) return false
        return true
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false
      const keys = Object.keys(v)
      head(5, keys.length)
      for (const k of keys) {
        if (!string(k) || !value((v as Record<string, unknown>)[k], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** The record's CBOR (cborg's bytes), or undefined when it holds something the fast path leaves to cborg. */
export function encodeRecord (v: unknown): Uint8Array | undefined {
  pos = 0
  if (!value(v, 0)) return undefined
  // a copy of its own (the buffer is reused): level keeps the value until the batch is written
  const out = new Uint8Array(pos)
  out.set(buf.subarray(0, pos))
  return out
}

/** what {@link decodeRecord} returns for bytes it leaves to cborg */
export const NOT_DECODED: unique symbol = Symbol('not decoded')

class Fallback extends Error {}
const FALLBACK = new Fallback()

let data: Buffer = Buffer.alloc(0)
let at = 0

function need (n: number): void {
  if (at + n > data.length) throw FALLBACK
}

/** the argument of a head whose major type was read at data[at - 1] (definite lengths only) */
function argument (minor: number): number {
  if (minor < 24) return minor
  if (minor === 24) { need(1); return data[at++] }
  if (minor === 25) { need(2); const v = data.readUInt16BE(at); at += 2; return v }
  if (minor === 26) { need(4); const v = data.readUInt32BE(at); at += 4; return v }
  if (minor === 27) {
    need(8)
    const hi = data.readUInt32BE(at)
    if (hi > 0x1fffff) throw FALLBACK // beyond 2^53: cborg's error or BigInt
    const v = hi * 0x100000000 + data.readUInt32BE(at + 4)
    at += 8
    return v
  }
  throw FALLBACK // indefinite lengths, reserved minors
}

function text (n: number): string {
  need(n)
  const end = at + n
  let ascii = true
  for (let i = at; i < end; i++) if (data[i] >= 0x80) { ascii = false; break }
  let s: string
  if (ascii) {
    s = data.toString('latin1', at, end)
  } else {
    const bytes = data.subarray(at, end)
    // invalid UTF-8 or a leading BOM: left to cborg, whose handling of both is its own
    if (!isUtf8(bytes) || (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)) throw FALLBACK
    s = data.toString('utf8', at, end)
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
    case 1: return -1 - argument(minor)
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
        if (key === '__proto__') throw FALLBACK
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
      throw FALLBACK // byte strings, tags
  }
}

/**
 * The value of a store record, as `cborg.decode` gives it, for records of the subset {@link encodeRecord}
 * writes without byte strings (maps with string keys, arrays, strings, safe integers, booleans, null);
 * anything else — bytes, floats, tags, indefinite lengths, invalid UTF-8, trailing bytes — is
 * {@link NOT_DECODED}, for cborg to decode (or refuse) as before.
 */
export function decodeRecord (bytes: Uint8Array): unknown {
  data = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  at = 0
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
