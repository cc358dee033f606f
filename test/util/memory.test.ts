import assert from 'node:assert/strict'
import { getHeapStatistics } from 'node:v8'
import { releaseHeap } from '../../src/util/memory.ts'

describe('releaseHeap', function () {
  this.timeout(60_000)

  it('gives a grown heap\'s pages back (without --expose-gc, and without exposing gc)', () => {
    // ~60 MB of objects, then dropped: an ordinary collection would leave the heap's pages committed
    let garbage: Array<{ i: number, s: string }> | null = []
    for (let i = 0; i < 600_000; i++) garbage.push({ i, s: `x${i}` })
    const grown = getHeapStatistics().total_heap_size
    const rss = process.memoryUsage().rss
    garbage = null
    assert.equal(releaseHeap(), true)
    const after = getHeapStatistics().total_heap_size
    assert.ok(after < grown / 2, `heap ${Math.round(grown / 1e6)} -> ${Math.round(after / 1e6)} MB`)
    // the pages left the process (an ordinary collection leaves them in the RSS)
    const freed = rss - process.memoryUsage().rss
    assert.ok(freed > (grown - after) / 3, `RSS ${Math.round(freed / 1e6)} MB less for ${Math.round((grown - after) / 1e6)} MB of heap`)
    assert.equal((globalThis as { gc?: unknown }).gc === undefined || process.execArgv.some(a => a.includes('expose')), true, 'gc not made global')
  })
})
