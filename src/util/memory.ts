/**
 * Giving a large V8 heap's pages back between the phases of long work (a backup's build, pin and CAR).
 *
 * V8 keeps the pages of a heap that has grown for the rest of the process: after an ordinary collection
 * the objects are gone (`heapTotal` falls) but the pages stay mapped and in the RSS (measured: 250 MB of
 * objects dropped and collected left the RSS at 276 MB, `heapTotal` 6 MB); only a memory-reducing
 * collection (V8's "last resort" one, as for a low-memory notification) returns them. A backup's build of
 * 1,000,000 messages grows the heap to ~150 MB committed with ~45 MB live after it, and the pin and CAR
 * phases then ran on top of those pages (docs/PERFORMANCE.md, Session 4).
 *
 * Node offers that collection only to a process started with --expose-gc; {@link releaseHeap} takes V8's
 * `gc` once from a new context (the flag set at run time, which affects only contexts made after it). The
 * heap's own figures do not show the kept pages (`total_heap_size` falls with the objects), so callers
 * decide by the size of their work: a full collection costs ~0.1–0.5 s with a large heap.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { log } from './log.ts'

const logger = log('util:memory')

type Gc = (options: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => void
let gcFn: Gc | null | undefined

function gcOf (): Gc | null {
  if (gcFn !== undefined) return gcFn
  try {
    const existing = (globalThis as { gc?: unknown }).gc
    if (typeof existing === 'function') {
      gcFn = existing as Gc
    } else {
      setFlagsFromString('--expose-gc')
      const fn: unknown = runInNewContext('gc')
      gcFn = typeof fn === 'function' ? fn as Gc : null
    }
  } catch (err) {
    logger('no memory-reducing collection: %s', err instanceof Error ? err.message : String(err))
    gcFn = null
  }
  return gcFn
}

/** A memory-reducing collection now (synchronous: between phases, not in a hot loop); whether it ran. */
export function releaseHeap (): boolean {
  const gc = gcOf()
  if (gc === null) return false
  const before = getHeapStatistics().total_heap_size
  const t0 = performance.now()
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  logger('heap %d -> %d MB in %d ms', Math.round(before / 1e6), Math.round(getHeapStatistics().total_heap_size / 1e6), Math.round(performance.now() - t0))
  return true
}
