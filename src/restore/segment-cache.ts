/**
 * The segments a restore's verify pass has already decrypted and checked, kept for its import so that
 * nothing is decrypted twice — within a byte budget: a segment that does not fit is dropped ("spilled")
 * and the import decrypts it again from its (hash-checked) block.
 */
import type { StoredMessage } from '../store/index.ts'

/** Default budget for kept segments (estimated in-memory bytes). */
export const DEFAULT_SEGMENT_CACHE_BYTES = 64 * 1024 * 1024

/** Rough in-memory size of a message: its strings (UTF-16) plus the object and field overhead. */
const PER_MESSAGE = 380

export function estimateMessagesBytes (msgs: readonly StoredMessage[]): number {
  let n = 0
  for (const m of msgs) n += PER_MESSAGE + 2 * (m.text.length + m.id.length) + (m.attachment !== undefined ? 256 : 0)
  return n
}

export class SegmentCache {
  readonly budget: number
  #used = 0
  #kept = new Map<number, StoredMessage[]>()
  #spilled = 0

  constructor (budget = DEFAULT_SEGMENT_CACHE_BYTES) {
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
    this.#kept.set(index, msgs)
    return true
  }

  /** The kept messages of segment `index` (removed from the cache), or undefined when spilled. */
  take (index: number): StoredMessage[] | undefined {
    const msgs = this.#kept.get(index)
    if (msgs === undefined) return undefined
    this.#kept.delete(index)
    this.#used -= estimateMessagesBytes(msgs)
    return msgs
  }

  get size (): number { return this.#kept.size }
  get usedBytes (): number { return this.#used }
  get spilled (): number { return this.#spilled }

  clear (): void {
    this.#kept.clear()
    this.#used = 0
  }
}
