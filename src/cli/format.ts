/** Small helpers for human-readable output: tables and relative times. */

export function table (rows: Array<Record<string, string | number | undefined>>, columns: string[]): string {
  if (rows.length === 0) return ''
  const cells = rows.map(r => columns.map(c => String(r[c] ?? '')))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map(row => row[i].length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd()
  return [line(columns.map(c => c.toUpperCase())), ...cells.map(line)].join('\n')
}

export function relativeTime (ts: number, now = Date.now()): string {
  const s = Math.round((now - ts) / 1000)
  const future = s < 0
  const a = Math.abs(s)
  let text: string
  if (a < 45) text = `${a}s`
  else if (a < 45 * 60) text = `${Math.round(a / 60)}m`
  else if (a < 36 * 3600) text = `${Math.round(a / 3600)}h`
  else text = `${Math.round(a / 86400)}d`
  return future ? `in ${text}` : `${text} ago`
}

export { formatBytes as bytes, shortAddress } from '../util/format.ts'
