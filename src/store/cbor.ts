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
