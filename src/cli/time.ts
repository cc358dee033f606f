import { TokenimError } from '../errors.ts'

/**
 * Parse a point in time given on the command line (`--since`, `--until`, …) into ms since the epoch.
 * Shared by the commands that take time bounds (export, messages).
 *
 * Accepted forms:
 * - ms since the epoch: `1700000000000` (digits only)
 * - relative, meaning that long before `now`: `90s`, `15m`, `2h`, `7d`, `2w` (also `500ms`, `1.5h`)
 * - an ISO 8601 date or date-time: `2024-03-01`, `2024-03-01T12:30`, `2024-03-01 12:30:05Z`,
 *   `2024-03-01T12:30:05.123+02:00`. Without a zone (`Z` / `±hh:mm`) it is the local time.
 *   A date alone is local midnight at the start of that day, or, with `end: true` (for an inclusive
 *   upper bound such as `--until 2024-03-01`), the last millisecond of that day.
 *
 * Anything else is a USAGE error naming the flag.
 */
export interface ParseTimeOptions {
  /** the flag, for error messages (default `time`) */
  flag?: string
  /** a date without a time means the end of that day (inclusive upper bounds) */
  end?: boolean
  /** the reference for relative times (default Date.now()) */
  now?: number
}

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000
}

const RELATIVE_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/
const DATE_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:?\d{2})?$/i

export function parseTime (value: string, opts: ParseTimeOptions = {}): number {
  const flag = opts.flag ?? 'time'
  const text = value.trim()
  const bad = (why: string): TokenimError => new TokenimError('USAGE',
    `${flag} ${why}: ${JSON.stringify(value)} (use ms since the epoch, an ISO date like 2024-03-01 or 2024-03-01T12:30Z, or a duration ago like 2h or 7d)`,
    { flag })

  if (/^\d+$/.test(text)) {
    const n = Number(text)
    if (!Number.isSafeInteger(n)) throw bad('is out of range')
    return n
  }

  const rel = RELATIVE_RE.exec(text)
  if (rel !== null) {
    const now = opts.now ?? Date.now()
    const ago = Math.round(Number(rel[1]) * UNIT_MS[rel[2]])
    if (!Number.isSafeInteger(ago)) throw bad('is out of range')
    return Math.max(0, now - ago)
  }

  const date = DATE_RE.exec(text)
  if (date !== null) {
    const [y, mo, d] = [Number(date[1]), Number(date[2]), Number(date[3])]
    const start = localTime(y, mo, d, 0, 0, 0, 0)
    if (start === undefined) throw bad('is not a valid date')
    if (opts.end !== true) return start
    const next = new Date(y, mo - 1, d + 1).getTime()
    return next - 1
  }

  const dt = DATE_TIME_RE.exec(text)
  if (dt !== null) {
    const [y, mo, d, h, mi] = [1, 2, 3, 4, 5].map(i => Number(dt[i]))
    const s = dt[6] === undefined ? 0 : Number(dt[6])
    const ms = dt[7] === undefined ? 0 : Number(dt[7].padEnd(3, '0'))
    const zone = dt[8]
    if (zone === undefined) {
      const t = localTime(y, mo, d, h, mi, s, ms)
      if (t === undefined) throw bad('is not a valid date and time')
      return t
    }
    if (!validFields(y, mo, d, h, mi, s)) throw bad('is not a valid date and time')
    const utc = Date.UTC(y, mo - 1, d, h, mi, s, ms)
    let offset = 0
    if (zone.toUpperCase() !== 'Z') {
      const sign = zone[0] === '-' ? -1 : 1
      const digits = zone.slice(1).replace(':', '')
      const oh = Number(digits.slice(0, 2))
      const om = Number(digits.slice(2))
      if (oh > 23 || om > 59) throw bad('has an invalid time zone offset')
      offset = sign * (oh * 60 + om) * 60_000
    }
    const t = utc - offset
    if (t < 0) throw bad('is before 1970')
    return t
  }

  throw bad('is not a time')
}

/** Local time, or undefined when a field is out of range (e.g. 2024-02-30, 25:00) or before 1970. */
function localTime (y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number | undefined {
  if (!validFields(y, mo, d, h, mi, s)) return undefined
  // a local time inside a daylight-saving gap moves forward, as Date does
  const t = new Date(y, mo - 1, d, h, mi, s, ms).getTime()
  return t < 0 ? undefined : t
}

function validFields (y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  const day = new Date(Date.UTC(y, mo - 1, d))
  return day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d &&
    h <= 23 && mi <= 59 && s <= 59
}

/**
 * Parse optional `--since` / `--until` values into an inclusive range; a date alone as `--until`
 * covers that whole day. USAGE error when since is after until.
 */
export function parseTimeRange (since: string | undefined, until: string | undefined, now = Date.now()): { since?: number, until?: number } {
  const range: { since?: number, until?: number } = {}
  if (since !== undefined) range.since = parseTime(since, { flag: '--since', now })
  if (until !== undefined) range.until = parseTime(until, { flag: '--until', now, end: true })
  if (range.since !== undefined && range.until !== undefined && range.since > range.until) {
    throw new TokenimError('USAGE', `--since (${since}) is after --until (${until})`, { flag: '--since' })
  }
  return range
}
