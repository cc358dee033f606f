/**
 * The segments a restore's verify pass has already decrypted and checked, kept for its import so that
 * nothing is decrypted twice — within a byte budget: a segment that does not fit is dropped ("spilled")
 * and the import decrypts it again from its (hash-checked) block.
 *
 * The budget is small on purpose: a restore of 1,000,000 messages could keep only a few percent of them in
 * any sane budget, so the cache saves little time there, while every MiB of it is resident memory
 * (measured: a 64 MiB budget put ~80 MB on the peak RSS of a 200,000-message restore). 16 MiB keeps the
 * whole of a history of ~45,000 messages (nothing decrypted twice) and bounds the rest.
 */
import { getHeapStatistics } from 'node:v8'
import type { StoredMessage } from '../store/index.ts'

/** Largest default budget for kept segments (estimated in-memory bytes). */
export const DEFAULT_SEGMENT_CACHE_BYTES = 16 * 1024 * 1024

/**
 * The default budget: {@link DEFAULT_SEGMENT_CACHE_BYTES}, or a 32nd of the V8 heap limit when that is
 * smaller (a process started with a small `--max-old-space-size` keeps room for its work).
 */
export function defaultSegmentCacheBytes (heapLimit = getHeapStatistics().heap_size_limit): number {
  return Math.min(DEFAULT_SEGMENT_CACHE_BYTES, Math.floor(heapLimit / 32))
}

/**
 * Rough in-memory size of a kept message: the object and its fields, plus its id and text (V8 keeps a
 * string of ASCII characters in 1 byte each, others in 2). Its conversation, addresses, direction and
 * status are strings shared by the messages of a segment (the segment decoder reuses the short strings it
 * read before, src/util/cbor.ts). Measured on the bench's history (mean text ~160 characters): ~294 B a
 * message in the V8 heap, estimated ~356 (the estimate before that decoder, ~730, was what they took then).
 */
const PER_MESSAGE = 160

function textBytes (s: string): number {
  // as many UTF-8 bytes as characters: all ASCII (one native call, cheaper than a loop over the text)
  return Buffer.byteLength(s, 'utf8') === s.length ? s.length : 2 * s.length
}

export function estimateMessagesBytes (msgs: readonly StoredMessage[]): number {
  let n = 0
  for (const m of msgs) n += PER_MESSAGE + textBytes(m.id) + textBytes(m.text) + (m.attachment !== undefined ? 256 : 0)
  return n
}

export class SegmentCache {
  readonly budget: number
  #used = 0
  #kept = new Map<number, { msgs: StoredMessage[], bytes: number }>()
  #spilled = 0

  constructor (budget = defaultSegmentCacheBytes()) {
    this.budget = Math.max(0, budget)
  }

  /** Keep a segment's messages if they fit in what is left of the budget; false when spilled. */
  keep (index: number, msgs: StoredMessage[]): boolean {
    const bytes = estimateMessagesBytes(msgs)
    if (this.#used + bytes > this.budget) {
      this.#spilled++
      return false
    }
    this.#used += bytes
    this.#kept.set(index, { msgs, bytes })
    return true
  }

  /** The kept messages of segment `index` (removed from the cache), or undefined when spilled. */
  take (index: number): StoredMessage[] | undefined {
    const kept = this.#kept.get(index)
    if (kept === undefined) return undefined
    this.#kept.delete(index)
    this.#used -= kept.bytes
    return kept.msgs
  }

  get size (): number { return this.#kept.size }
  get usedBytes (): number { return this.#used }
  get spilled (): number { return this.#spilled }

  clear (): void {
    this.#kept.clear()
    this.#used = 0
  }
}
