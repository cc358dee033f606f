/**
 * Per-key token buckets: each key (a peer id) may spend `capacity` tokens at once and earns
 * `refillPerSecond` back. Memory is bounded: the least recently used keys are forgotten first.
 */
export interface TokenBucketInit {
  /** burst size (default 64) */
  capacity?: number
  /** tokens earned per second (default 16) */
  refillPerSecond?: number
  /** at most this many keys are tracked (default 10,000) */
  maxKeys?: number
}

interface Bucket {
  tokens: number
  at: number
}

export class TokenBuckets {
  readonly capacity: number
  readonly refillPerSecond: number
  private readonly maxKeys: number
  private readonly buckets = new Map<string, Bucket>()

  constructor (init: TokenBucketInit = {}) {
    this.capacity = init.capacity ?? 64
    this.refillPerSecond = init.refillPerSecond ?? 16
    this.maxKeys = init.maxKeys ?? 10_000
  }

  /** Spend `cost` tokens of `key`; false (nothing spent) when it has too few. */
  take (key: string, cost = 1, now = Date.now()): boolean {
    let b = this.buckets.get(key)
    if (b === undefined) {
      b = { tokens: this.capacity, at: now }
    } else {
      this.buckets.delete(key) // re-insert below: Map order is our LRU order
      b.tokens = Math.min(this.capacity, b.tokens + Math.max(0, now - b.at) * this.refillPerSecond / 1000)
      b.at = now
    }
    this.buckets.set(key, b)
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value
      if (oldest !== undefined) this.buckets.delete(oldest)
    }
    if (b.tokens < cost) return false
    b.tokens -= cost
    return true
  }

  clear (): void {
    this.buckets.clear()
  }
}
