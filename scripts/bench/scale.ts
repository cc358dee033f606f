/** Bench sizes: `tiny` (the test, seconds), `small` (default, under a minute), `full` (issue 7). */
export type ScaleName = 'tiny' | 'small' | 'full'

export interface Scale {
  name: ScaleName
  /**
   * messaging: warm-up sends, pipelined sends, sends in flight (64 at small/full: a sender with a queue
   * pipelines up to its channel's window of 64; the raw references use the same window), sequential round trips
   */
  warmup: number
  throughputMessages: number
  inFlight: number
  latencySamples: number
  /** backup: generated history */
  messages: number
  conversations: number
  /** share of messages added for the incremental backup, and of conversations they go to */
  incrementShare: number
  incrementConversationShare: number
  /** restic steps are skipped when one takes longer than this */
  resticTimeoutMs: number
  /** peak RSS runs (child processes); 0 = skipped */
  rssMessages: number
  /** start-up samples */
  startSamples: number
}

export const SCALES: Record<ScaleName, Scale> = {
  tiny: {
    name: 'tiny',
    warmup: 10,
    throughputMessages: 100,
    inFlight: 8,
    latencySamples: 20,
    messages: 300,
    conversations: 6,
    incrementShare: 0.01,
    incrementConversationShare: 0.34,
    resticTimeoutMs: 15_000,
    rssMessages: 0,
    startSamples: 1
  },
  small: {
    name: 'small',
    warmup: 50,
    throughputMessages: 800,
    inFlight: 64,
    latencySamples: 100,
    messages: 10_000,
    conversations: 100,
    incrementShare: 0.01,
    incrementConversationShare: 0.1,
    resticTimeoutMs: 120_000,
    rssMessages: 0,
    startSamples: 1
  },
  full: {
    name: 'full',
    warmup: 200,
    throughputMessages: 20_000,
    inFlight: 64,
    latencySamples: 1_000,
    messages: 100_000,
    conversations: 1_000,
    incrementShare: 0.01,
    incrementConversationShare: 0.1,
    resticTimeoutMs: 600_000,
    rssMessages: 1_000_000,
    startSamples: 5
  }
}

export function parseScale (argv: string[]): ScaleName {
  let scale: string = 'small'
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--scale') scale = argv[++i] ?? ''
    else if (a.startsWith('--scale=')) scale = a.slice('--scale='.length)
    else if (a === '--help' || a === '-h') throw new UsageError('usage: npm run bench [-- --scale tiny|small|full] [--repeat N] [--out FILE] [--only SECTION,…] [--rss-messages N]')
  }
  if (scale !== 'tiny' && scale !== 'small' && scale !== 'full') throw new UsageError(`--scale must be tiny, small or full (got "${scale}")`)
  return scale
}

/** the longest --repeat taken (a full-scale run of every section takes ~3 min) */
export const MAX_REPEAT = 20

/** `--repeat N` (or `--repeat=N`): how many times each section runs, 1 to MAX_REPEAT; 1 when absent */
export function parseRepeat (argv: string[]): number {
  let text: string | undefined
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--repeat') text = argv[++i] ?? ''
    else if (argv[i].startsWith('--repeat=')) text = argv[i].slice('--repeat='.length)
  }
  if (text === undefined) return 1
  const n = Number(text)
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > MAX_REPEAT) throw new UsageError(`--repeat must be a whole number from 1 to ${MAX_REPEAT} (got "${text}")`)
  return n
}

export function parseOut (argv: string[], fallback: string): string {
  const i = argv.indexOf('--out')
  if (i >= 0 && argv[i + 1] !== undefined) return argv[i + 1]
  const eq = argv.find(a => a.startsWith('--out='))
  return eq !== undefined ? eq.slice('--out='.length) : fallback
}

export class UsageError extends Error {
  override name = 'UsageError'
}
