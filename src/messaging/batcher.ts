/**
 * Group commit: calls that arrive while a write is running (or in the same turn of the event loop) are
 * written together by the next one, in one store batch. Each caller awaits its own item's result, so
 * "stored before the receipt is sent" still holds per message, and a lone call waits one turn at most.
 *
 * If a batch of several items fails, each item is retried alone, so one bad item fails only its caller.
 *
 * @example
 * ```ts
 * const delivered = new GroupCommit<string, boolean>(async (ids) => await store.markDeliveredMany(ids))
 * await delivered.submit(id)
 * ```
 */

export interface GroupCommitInit {
  /** most items in one batch (default 256) */
  maxBatch?: number
}

interface Item<T, R> {
  value: T
  resolve: (r: R) => void
  reject: (err: unknown) => void
}

export class GroupCommit<T, R> {
  private readonly write: (items: T[]) => Promise<R[]>
  private readonly maxBatch: number
  private queue: Array<Item<T, R>> = []
  private running?: Promise<void>

  /** `write(items)` must resolve with one result per item, in order. */
  constructor (write: (items: T[]) => Promise<R[]>, init: GroupCommitInit = {}) {
    this.write = write
    this.maxBatch = init.maxBatch ?? 256
  }

  /** Queue one item; resolves with its result once the batch holding it is written. */
  async submit (value: T): Promise<R> {
    const { promise, resolve, reject } = Promise.withResolvers<R>()
    this.queue.push({ value, resolve, reject })
    this.running ??= new Promise<void>(resolve => { setImmediate(resolve) }).then(async () => { await this.drain() })
    return await promise
  }

  /** Resolves when nothing is queued or being written. */
  async idle (): Promise<void> {
    while (this.running != null) await this.running
  }

  private async drain (): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch)
        await this.flush(batch)
      }
    } finally {
      this.running = undefined
    }
  }

  private async flush (batch: Array<Item<T, R>>): Promise<void> {
    let results: R[]
    try {
      results = await this.write(batch.map(i => i.value))
      if (results.length !== batch.length) throw new Error(`group commit: ${results.length} results for ${batch.length} items`)
    } catch (err) {
      if (batch.length === 1) {
        batch[0].reject(err)
        return
      }
      for (const item of batch) await this.flush([item])
      return
    }
    batch.forEach((item, i) => { item.resolve(results[i]) })
  }
}

/**
 * Jobs started in one turn of the event loop (thread-pool crypto) are handed back together, once all of
 * them have settled, each with its own result. The work after them (sealing or opening, the store's group
 * commit, the coalesced stream write) then stays batched as it was when this crypto ran synchronously:
 * results coming back one by one from the pool had cut the group commits from ~62 items to ~14.
 */
export class TurnBatch {
  private jobs?: Array<Promise<unknown>>
  private gate: Promise<void> = Promise.resolve()

  async join<T> (job: Promise<T>): Promise<T> {
    job.catch(() => {}) // its caller sees the rejection below
    if (this.jobs === undefined) {
      const jobs: Array<Promise<unknown>> = this.jobs = []
      this.gate = new Promise<void>(resolve => { setImmediate(resolve) }).then(async () => {
        this.jobs = undefined
        await Promise.allSettled(jobs)
      })
    }
    this.jobs.push(job)
    await this.gate
    return await job
  }
}
