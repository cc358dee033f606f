/**
 * The message ids a restore has handed to the store so far, as a Bloom filter (~10 bits per id, ~1% false
 * positives; 1,000,000 ids take ~1.2 MiB where a Set of them would take ~60 MB). A restore into a store
 * that was empty when it began knows that an id the filter has never seen is not in the store, so the
 * store's uniqueness read for it (a LevelDB get per message, ~20–30% of the import's CPU) can be skipped;
 * an id the filter may have seen is read as before. Never a false negative: a skipped read is always right.
 */

const BITS_PER_ID = 10
const HASHES = 7

export class IdFilter {
  readonly #bits: Uint32Array
  readonly #size: number

  /** a filter sized for `expected` ids (more still work, with more false positives) */
  constructor (expected: number) {
    const bits = Math.max(1024, Math.ceil(Math.max(0, expected) * BITS_PER_ID))
    this.#bits = new Uint32Array(Math.ceil(bits / 32))
    this.#size = this.#bits.length * 32
  }

  /** Add `id`; returns what {@link mayHave} said just before (false: it was never added). */
  add (id: string): boolean {
    hash(id)
    let had = true
    for (let i = 0; i < HASHES; i++) {
      const b = ((h1 + Math.imul(i, h2)) >>> 0) % this.#size
      const word = b >>> 5
      const bit = 1 << (b & 31)
      if ((this.#bits[word] & bit) === 0) {
        had = false
        this.#bits[word] |= bit
      }
    }
    return had
  }

  /** false: `id` was never added; true: it may have been */
  mayHave (id: string): boolean {
    hash(id)
    for (let i = 0; i < HASHES; i++) {
      const b = ((h1 + Math.imul(i, h2)) >>> 0) % this.#size
      if ((this.#bits[b >>> 5] & (1 << (b & 31))) === 0) return false
    }
    return true
  }
}

let h1 = 0
let h2 = 0

/** two 32-bit FNV-1a-style hashes of the UTF-16 code units into h1, h2 (double hashing: h1 + i·h2) */
function hash (s: string): void {
  let a = 0x811c9dc5
  let b = 0x2545f491
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  a ^= a >>> 13
  a = Math.imul(a, 0xc2b2ae35)
  a ^= a >>> 16
  h1 = a >>> 0
  h2 = (b | 1) >>> 0
}
