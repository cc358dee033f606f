/**
 * Seeded mutators for fuzzing decoders: byte-level damage (bit flips, truncation, extension, splices)
 * and structure-aware damage of dag-cbor values (type swaps, dropped and extra keys, length bombs).
 * Every choice comes from one seeded PRNG, so a failing input replays from its seed and index.
 */
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { isTokenimError } from '../../src/errors.ts'
import { prng } from '../backup/helpers.ts'

export { prng }

export type Rnd = () => number

export function int (rnd: Rnd, n: number): number {
  return Math.floor(rnd() * n)
}

export function pick<T> (rnd: Rnd, xs: readonly T[]): T {
  return xs[int(rnd, xs.length)]
}

export function randomBytes (rnd: Rnd, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = int(rnd, 256)
  return out
}

function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

/** CBOR heads that claim far more data than follows: byte/text strings, arrays and maps of 2^32-1 and 2^53 items. */
const BOMBS: Uint8Array[] = [
  Uint8Array.of(0x5a, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x7a, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x9a, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0xba, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x5b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x9b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
  // deep nesting: 10,000 nested one-element arrays
  new Uint8Array(10_000).fill(0x81),
  // indefinite lengths (not allowed in dag-cbor)
  Uint8Array.of(0x9f, 0x01, 0xff),
  Uint8Array.of(0x5f, 0x41, 0x00, 0xff)
]

/** One byte-level mutation of `seed`. */
export function mutateBytes (rnd: Rnd, seed: Uint8Array): Uint8Array {
  const b = Uint8Array.from(seed)
  const at = (): number => int(rnd, Math.max(1, b.length))
  switch (int(rnd, 9)) {
    case 0: { // bit flips
      const n = 1 + int(rnd, 4)
      for (let i = 0; i < n && b.length > 0; i++) b[at()] ^= 1 << int(rnd, 8)
      return b
    }
    case 1: { // random bytes overwritten
      const n = 1 + int(rnd, 8)
      for (let i = 0; i < n && b.length > 0; i++) b[at()] = int(rnd, 256)
      return b
    }
    case 2: return b.subarray(0, at()) // truncation
    case 3: return concat(b, randomBytes(rnd, 1 + int(rnd, 64))) // extension
    case 4: { // insertion in the middle
      const p = at()
      return concat(b.subarray(0, p), randomBytes(rnd, 1 + int(rnd, 16)), b.subarray(p))
    }
    case 5: { // a range deleted
      const p = at()
      return concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + int(rnd, 32))))
    }
    case 6: { // a slice duplicated
      const p = at()
      const q = Math.min(b.length, p + 1 + int(rnd, 32))
      return concat(b.subarray(0, q), b.subarray(p, q), b.subarray(q))
    }
    case 7: { // a length bomb spliced in
      const p = at()
      return concat(b.subarray(0, p), pick(rnd, BOMBS), b.subarray(p))
    }
    default: { // boundary bytes at the start (CBOR heads live there)
      const n = Math.min(b.length, 1 + int(rnd, 6))
      for (let i = 0; i < n; i++) b[i] = pick(rnd, [0x00, 0x17, 0x18, 0x1f, 0x40, 0x5f, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xd8, 0xf6, 0xff])
      return b
    }
  }
}

const SAMPLE_CID = CID.parse('bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')

/** A value of a random type (to swap in where another type is expected). */
function otherValue (rnd: Rnd): unknown {
  switch (int(rnd, 14)) {
    case 0: return null
    case 1: return true
    case 2: return -1
    case 3: return 0
    case 4: return Number.MAX_SAFE_INTEGER
    case 5: return 1.5
    case 6: return ''
    case 7: return 'x'.repeat(int(rnd, 3000))
    case 8: return new Uint8Array(int(rnd, 70))
    case 9: return []
    case 10: return {}
    case 11: return SAMPLE_CID
    case 12: return [SAMPLE_CID, 1, 'a']
    default: return { v: 1, t: 'msg', type: 'segment' }
  }
}

function isMap (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && CID.asCID(v) === null
}

/** Containers (maps and arrays) of a decoded value, with the value itself first. */
function containers (v: unknown, out: unknown[] = [], depth = 0): unknown[] {
  if (depth > 12) return out
  if (Array.isArray(v)) {
    out.push(v)
    for (const x of v) containers(x, out, depth + 1)
  } else if (isMap(v)) {
    out.push(v)
    for (const x of Object.values(v)) containers(x, out, depth + 1)
  }
  return out
}

/** One structure-aware mutation of a dag-cbor value, re-encoded (or byte-mutated when re-encoding fails). */
export function mutateValue (rnd: Rnd, seed: Uint8Array): Uint8Array {
  let value: unknown
  try {
    value = dagCbor.decode(seed)
  } catch {
    return mutateBytes(rnd, seed)
  }
  const all = containers(value)
  if (all.length === 0) return dagCbor.encode(otherValue(rnd))
  const c = pick(rnd, all)
  const op = int(rnd, 6)
  if (Array.isArray(c)) {
    if (c.length > 0 && op < 3) c[int(rnd, c.length)] = otherValue(rnd)
    else if (c.length > 0 && op < 4) c.splice(int(rnd, c.length), 1)
    else if (op < 5) c.push(c.length > 0 ? c[int(rnd, c.length)] : otherValue(rnd))
    else c.reverse()
  } else if (isMap(c)) {
    const keys = Object.keys(c)
    if (keys.length > 0 && op < 3) c[pick(rnd, keys)] = otherValue(rnd)
    else if (keys.length > 0 && op < 4) delete c[pick(rnd, keys)]
    else if (op < 5) c[pick(rnd, ['extra', 'v', 't', '__proto__x', ''])] = otherValue(rnd)
    else if (keys.length > 1) { // swap two fields' values
      const a = pick(rnd, keys)
      const b = pick(rnd, keys)
      const t = c[a]; c[a] = c[b]; c[b] = t
    }
  }
  try {
    return dagCbor.encode(value)
  } catch {
    return mutateBytes(rnd, seed)
  }
}

/** A fuzz input from one of `seeds`: pure random bytes, byte damage or structural damage. */
export function fuzzInput (rnd: Rnd, seeds: readonly Uint8Array[]): Uint8Array {
  const r = rnd()
  if (r < 0.1) return randomBytes(rnd, int(rnd, 400))
  const seed = pick(rnd, seeds)
  let out = r < 0.6 ? mutateBytes(rnd, seed) : mutateValue(rnd, seed)
  // sometimes stack a second mutation
  if (rnd() < 0.2) out = mutateBytes(rnd, out)
  return out
}

// -------------------------------------------------------------------------------------------------------
// bounds

const CODE_RE = /^[A-Z][A-Z0-9_]+$/

let gcFn: (() => void) | undefined
/** A real gc() (exposed at run time), so heap measurements compare live data, not garbage. */
export function gc (): void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc')
    gcFn = runInNewContext('gc') as () => void
  }
  gcFn()
}

export function liveHeap (): number {
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

export interface FuzzStats {
  inputs: number
  accepted: number
  /** rejections by error code */
  codes: Map<string, number>
  slowestMs: number
  /** largest live-heap growth over the run, bytes */
  heapGrowth: number
}

export interface FuzzOptions {
  /** upper bound for one input (ms) */
  maxMsPerInput?: number
  /** upper bound for the live heap growth over the run (bytes) */
  maxHeapGrowth?: number
  /** codes a rejection may carry (default: any upper-snake code) */
  codes?: readonly string[]
  /** how often (inputs) the heap is sampled */
  heapEvery?: number
}

/**
 * Run `check` on every input; every rejection must be a TokenimError with an upper-snake code (from
 * `codes` when given), every input must finish within `maxMsPerInput`, and the live heap must not grow
 * by more than `maxHeapGrowth` over the run. The time bound catches hangs, not slowness: inputs take well
 * under a millisecond, but on a shared 2-core machine one major GC pause can take hundreds, so the
 * default leaves room for that (seen once failing at 500 ms after a heavy suite in the same process).
 */
export async function fuzz (label: string, inputs: Iterable<Uint8Array>, check: (input: Uint8Array, i: number) => unknown, o: FuzzOptions = {}): Promise<FuzzStats> {
  const maxMs = o.maxMsPerInput ?? 2000
  const maxGrowth = o.maxHeapGrowth ?? 64 * 1024 * 1024
  const every = o.heapEvery ?? 1000
  const stats: FuzzStats = { inputs: 0, accepted: 0, codes: new Map(), slowestMs: 0, heapGrowth: 0 }
  const base = liveHeap()
  let i = 0
  for (const input of inputs) {
    const t0 = performance.now()
    try {
      await check(input, i)
      stats.accepted++
    } catch (err) {
      const where = (): string => `${label} input #${i} (${input.length} bytes): ${Buffer.from(input.subarray(0, 96)).toString('hex')}`
      if (!isTokenimError(err)) assert.fail(`untyped error for ${where()}: ${(err as Error)?.stack ?? String(err)}`)
      if (!CODE_RE.test(err.code)) assert.fail(`bad code ${err.code} for ${where()}`)
      if (o.codes !== undefined && !o.codes.includes(err.code)) assert.fail(`unexpected code ${err.code} for ${where()}: ${err.message}`)
      stats.codes.set(err.code, (stats.codes.get(err.code) ?? 0) + 1)
    }
    const ms = performance.now() - t0
    if (ms > stats.slowestMs) stats.slowestMs = ms
    if (ms >= maxMs) assert.fail(`${label} input #${i} took ${ms.toFixed(0)} ms (bound ${maxMs} ms)`)
    stats.inputs++
    if (++i % every === 0) stats.heapGrowth = Math.max(stats.heapGrowth, liveHeap() - base)
  }
  stats.heapGrowth = Math.max(stats.heapGrowth, liveHeap() - base)
  assert.ok(stats.heapGrowth < maxGrowth, `${label}: live heap grew by ${(stats.heapGrowth / 1048576).toFixed(1)} MiB (bound ${maxGrowth / 1048576} MiB)`)
  return stats
}

/**
 * `n` inputs derived from `seeds` with a PRNG seeded by `seed`. A mutation can give back a seed unchanged
 * (a byte overwritten with its own value, the same bit flipped twice); such an input is drawn again, so
 * "accepted" always means damaged input got through. The seeds themselves often differ between runs (they
 * hold creation times), which is why this showed up only now and then.
 */
export function * inputs (seed: number, n: number, seeds: readonly Uint8Array[]): Generator<Uint8Array> {
  const rnd = prng(seed)
  const unchanged = (x: Uint8Array): boolean => seeds.some(s => s.length === x.length && Buffer.compare(s, x) === 0)
  for (let i = 0; i < n; i++) {
    let input = fuzzInput(rnd, seeds)
    while (unchanged(input)) input = fuzzInput(rnd, seeds)
    yield input
  }
}
