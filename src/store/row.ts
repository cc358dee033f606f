/**
 * A message row's direction and status read from its stored bytes, and the row with another status
 * written on them: a delivery receipt changes one field of a row of ~1.2 KB (a 1 KiB text), which decoding
 * the whole record into an object and encoding it again cost ~5 µs of the sender's ~90 per message.
 *
 * The row is a CBOR map with text keys (the store's records: cborg's bytes in insertion order). The
 * bytes with the new status are those of the same map with only that value changed — the same keys in the
 * same order, every other value's bytes as they were — which is what encoding `{ ...row, status }` gives for
 * a row the store wrote. Anything this reader does not take (another type, an indefinite length, a status
 * or direction that is not a short ASCII text, a key twice, trailing bytes) gives undefined, and the caller
 * decodes the row as before.
 */

export interface RowStatus {
  direction: string
  status: string
  /** where the status value (its head and text) begins and ends in the row */
  at: number
  end: number
}

/** the longest status or direction text taken here (the valid ones are at most 9 bytes) */
const MAX_FIELD = 23
const MAX_DEPTH = 16

let b: Uint8Array = new Uint8Array(0)
let p = 0

/** the argument of the head at b[p] of major type `major` (definite, below 2^53), or -1 */
function arg (): number {
  if (p >= b.length) return -1
  const minor = b[p++] & 0x1f
  if (minor < 24) return minor
  const size = minor === 24 ? 1 : minor === 25 ? 2 : minor === 26 ? 4 : minor === 27 ? 8 : 0
  if (size === 0 || p + size > b.length) return -1
  let v = 0
  for (let i = 0; i < size; i++) v = v * 256 + b[p + i]
  p += size
  return v <= Number.MAX_SAFE_INTEGER ? v : -1
}

/** skips one item at b[p]; false for what is not taken here */
function skip (depth: number): boolean {
  if (depth > MAX_DEPTH || p >= b.length) return false
  const major = b[p] >> 5
  if (major === 7) {
    const minor = b[p] & 0x1f
    const size = minor < 24 ? 0 : minor === 24 ? 1 : minor === 25 ? 2 : minor === 26 ? 4 : minor === 27 ? 8 : -1
    if (size < 0) return false // break, reserved
    p += 1 + size
    return p <= b.length
  }
  const n = arg()
  if (n < 0) return false
  switch (major) {
    case 0: case 1: return true
    case 2: case 3:
      p += n
      return p <= b.length
    case 4:
      for (let i = 0; i < n; i++) if (!skip(depth + 1)) return false
      return true
    case 5:
      for (let i = 0; i < 2 * n; i++) if (!skip(depth + 1)) return false
      return true
    default: // tags
      return skip(depth + 1)
  }
}

/** a short ASCII text item at b[p], or undefined */
function shortText (): string | undefined {
  if (p >= b.length || b[p] >> 5 !== 3) return undefined
  const n = arg()
  if (n < 0 || n > MAX_FIELD || p + n > b.length) return undefined
  let s = ''
  for (let i = 0; i < n; i++) {
    const c = b[p + i]
    if (c >= 0x80) return undefined
    s += String.fromCharCode(c)
  }
  p += n
  return s
}

function isKey (at: number, n: number, key: string): boolean {
  if (n !== key.length) return false
  for (let i = 0; i < n; i++) if (b[at + i] !== key.charCodeAt(i)) return false
  return true
}

/** The row's direction and status, and where the status is, or undefined (see the file comment). */
export function rowStatus (row: Uint8Array): RowStatus | undefined {
  b = row
  p = 0
  try {
    if (b.length === 0 || b[0] >> 5 !== 5) return undefined
    const count = arg()
    if (count < 0) return undefined
    let direction: string | undefined
    let status: string | undefined
    let at = 0
    let end = 0
    for (let i = 0; i < count; i++) {
      if (p >= b.length || b[p] >> 5 !== 3) return undefined
      const kn = arg()
      if (kn < 0 || p + kn > b.length) return undefined
      const kAt = p
      p += kn
      if (isKey(kAt, kn, 'status')) {
        if (status !== undefined) return undefined
        at = p
        status = shortText()
        if (status === undefined) return undefined
        end = p
      } else if (isKey(kAt, kn, 'direction')) {
        if (direction !== undefined) return undefined
        direction = shortText()
        if (direction === undefined) return undefined
      } else if (!skip(0)) {
        return undefined
      }
    }
    if (p !== b.length || direction === undefined || status === undefined) return undefined
    return { direction, status, at, end }
  } finally {
    b = EMPTY
  }
}

const EMPTY = new Uint8Array(0)

/** `row` with its status (found by {@link rowStatus}) replaced by `status` (short ASCII), in a new buffer. */
export function withStatus (row: Uint8Array, where: RowStatus, status: string): Uint8Array {
  if (status.length > MAX_FIELD) throw new RangeError('status is too long')
  const out = new Uint8Array(where.at + 1 + status.length + row.length - where.end)
  out.set(row.subarray(0, where.at), 0)
  let o = where.at
  out[o++] = 0x60 | status.length
  for (let i = 0; i < status.length; i++) out[o++] = status.charCodeAt(i)
  out.set(row.subarray(where.end), o)
  return out
}

/**
 * Whether the row has an attachment (a top-level `attachment` that is not null): false or true when its
 * bytes tell, undefined when this reader does not take them (the caller decodes the row to know).
 */
export function rowHasAttachment (row: Uint8Array): boolean | undefined {
  b = row
  p = 0
  try {
    if (b.length === 0 || b[0] >> 5 !== 5) return undefined
    const count = arg()
    if (count < 0) return undefined
    let found = false
    for (let i = 0; i < count; i++) {
      if (p >= b.length || b[p] >> 5 !== 3) return undefined
      const kn = arg()
      if (kn < 0 || p + kn > b.length) return undefined
      const kAt = p
      p += kn
      if (isKey(kAt, kn, 'attachment') && b[p] !== 0xf6) found = true
      if (!skip(0)) return undefined
    }
    return p === b.length ? found : undefined
  } finally {
    b = EMPTY
  }
}
