/**
 * Message ids: UUIDv7 (RFC 9562) text, lowercase. 48-bit unix-ms timestamp, then a 12-bit counter
 * (method 1 of RFC 9562 §6.2, so ids made by one process in the same millisecond still sort in order),
 * then 62 random bits. Unique (62+ random bits) and time-sortable as plain strings.
 */
import { randomBytes } from 'node:crypto'

export const UUID_V7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

let lastMs = -1
let counter = 0

/**
 * Random bytes for ids, taken from a pool refilled 4 KiB at a time (as node's randomUUID does): a
 * randomBytes call per id cost more than the rest of the id. The bits are not secret, only unique.
 */
let pool = Buffer.alloc(0)
let poolOffset = 0
function random (n: number): Buffer {
  if (poolOffset + n > pool.length) {
    pool = randomBytes(4096)
    poolOffset = 0
  }
  poolOffset += n
  return pool.subarray(poolOffset - n, poolOffset)
}

/** A new UUIDv7 string. `now` (ms) is for tests; ids stay monotonic in this process even if the clock steps back. */
export function newMessageId (now: number = Date.now()): string {
  let ms = Math.max(Math.floor(now), 0)
  if (ms <= lastMs) {
    ms = lastMs
    counter++
    if (counter > 0xfff) {
      // counter exhausted within one millisecond: borrow the next one
      ms = lastMs + 1
      counter = random(2).readUInt16BE(0) & 0x7ff
    }
  } else {
    // seed the counter at random with the top bit clear, leaving room to count up
    counter = random(2).readUInt16BE(0) & 0x7ff
  }
  lastMs = ms
  const b = random(16) // these pool bytes are used once: ours to overwrite
  b.writeUIntBE(ms, 0, 6)
  b[6] = 0x70 | (counter >> 8)
  b[7] = counter & 0xff
  b[8] = 0x80 | (b[8] & 0x3f)
  const hex = b.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function isMessageId (value: unknown): value is string {
  return typeof value === 'string' && UUID_V7_RE.test(value)
}

/** The unix-ms timestamp inside a UUIDv7. */
export function messageIdTime (id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
}
