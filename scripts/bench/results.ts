/**
 * The bench's results: every figure beside a reference measured in the same run (as a ratio), the
 * targets of issue 7 checked against it, skipped items with their reason, and the machine it ran on.
 * Written to bench/results.json (atomically) and printed as a table.
 */
import { cpus, totalmem } from 'node:os'
import { z } from 'zod'

export const RESULTS_SCHEMA_ID = 'tokenim-bench/v1'

const Target = z.object({
  /** e.g. "ratio >= 0.5" or "value <= 400 MB" */
  text: z.string(),
  met: z.boolean()
})

const Reference = z.object({
  name: z.string(),
  value: z.number(),
  unit: z.string()
})

export const FigureSchema = z.object({
  section: z.string(),
  name: z.string(),
  value: z.number(),
  unit: z.string(),
  reference: Reference.optional(),
  /** value / reference.value */
  ratio: z.number().optional(),
  targets: z.array(Target),
  note: z.string().optional(),
  /**
   * with --repeat N: each run's value, reference and ratio (value, reference.value and ratio above are then
   * the medians: the ratio the median of the paired runs' ratios, each measured beside its own reference)
   */
  runs: z.array(z.object({ value: z.number(), reference: z.number().optional(), ratio: z.number().optional() })).optional()
})

export const SkipSchema = z.object({
  section: z.string(),
  item: z.string(),
  reason: z.string()
})

export const ResultsSchema = z.object({
  schema: z.literal(RESULTS_SCHEMA_ID),
  scale: z.enum(['tiny', 'small', 'full']),
  startedAt: z.string(),
  durationMs: z.number().nonnegative(),
  /** how many times each section ran (--repeat; 1 when absent) */
  repeat: z.number().int().positive().optional(),
  machine: z.object({
    nproc: z.number().int().positive(),
    cpu: z.string(),
    memoryGiB: z.number(),
    node: z.string(),
    platform: z.string()
  }),
  figures: z.array(FigureSchema),
  skipped: z.array(SkipSchema),
  notes: z.array(z.string()),
  /** sections that threw: the bench goes on with the next one */
  errors: z.array(z.object({ section: z.string(), message: z.string() }))
})

export type Figure = z.infer<typeof FigureSchema>
export type Skip = z.infer<typeof SkipSchema>
export type Results = z.infer<typeof ResultsSchema>

export interface TargetSpec {
  /** what is compared: the ratio to the reference, or the value itself */
  of: 'ratio' | 'value'
  op: '>=' | '<='
  limit: number
}

export interface FigureInput {
  section: string
  name: string
  value: number
  unit: string
  reference?: { name: string, value: number, unit?: string }
  targets?: TargetSpec[]
  note?: string
}

/** Collects figures as the sections run. */
export class Recorder {
  readonly figures: Figure[] = []
  readonly skipped: Skip[] = []
  readonly notes: string[] = []
  readonly errors: Array<{ section: string, message: string }> = []
  /** what each figure was recorded from (its targets' specs are needed again to merge runs) */
  readonly inputs = new Map<Figure, FigureInput>()

  figure (f: FigureInput, merged?: { ratio?: number, runs: NonNullable<Figure['runs']> }): Figure {
    const reference = f.reference === undefined ? undefined : { name: f.reference.name, value: f.reference.value, unit: f.reference.unit ?? f.unit }
    const ratio = merged !== undefined ? merged.ratio : reference !== undefined && reference.value > 0 ? f.value / reference.value : undefined
    const targets = (f.targets ?? []).map(t => {
      const x = t.of === 'ratio' ? ratio : f.value
      const met = x !== undefined && Number.isFinite(x) && (t.op === '>=' ? x >= t.limit : x <= t.limit)
      return { text: `${t.of === 'ratio' ? 'ratio' : 'value'} ${t.op} ${formatNumber(t.limit)}${t.of === 'value' ? ` ${f.unit}` : ''}`, met }
    })
    const figure: Figure = {
      section: f.section,
      name: f.name,
      value: f.value,
      unit: f.unit,
      ...(reference !== undefined ? { reference } : {}),
      ...(ratio !== undefined ? { ratio } : {}),
      targets,
      ...(f.note !== undefined ? { note: f.note } : {}),
      ...(merged !== undefined ? { runs: merged.runs } : {})
    }
    this.figures.push(figure)
    this.inputs.set(figure, f)
    return figure
  }

  skip (section: string, item: string, reason: string): void {
    this.skipped.push({ section, item, reason })
  }

  note (text: string): void {
    this.notes.push(text)
  }
}

/**
 * The runs of a section (--repeat N, one Recorder each) as one set of figures in `into`: each figure's
 * value and reference are the medians of its runs, its ratio the median of the runs' own ratios (each run's
 * figure beside the reference measured with it), its targets checked on those; `runs` lists them. A figure
 * some runs lack is merged from the runs that have it. Skips and notes said alike by several runs are kept
 * once, others with their run's number; errors with their run's number.
 */
export function mergeRuns (runs: Recorder[], into: Recorder): void {
  if (runs.length === 1) {
    const [only] = runs
    for (const f of only.figures) into.figure(only.inputs.get(f) as FigureInput)
    into.skipped.push(...only.skipped)
    into.notes.push(...only.notes)
    into.errors.push(...only.errors)
    return
  }
  const order: string[] = []
  const byKey = new Map<string, Array<{ figure: Figure, input: FigureInput }>>()
  for (const rec of runs) {
    for (const figure of rec.figures) {
      const key = `${figure.section}\0${figure.name}`
      if (!byKey.has(key)) {
        byKey.set(key, [])
        order.push(key)
      }
      byKey.get(key)?.push({ figure, input: rec.inputs.get(figure) as FigureInput })
    }
  }
  for (const key of order) {
    const got = byKey.get(key) as Array<{ figure: Figure, input: FigureInput }>
    const first = got[0].input
    const refs = got.flatMap(g => g.input.reference !== undefined ? [g.input.reference.value] : [])
    const ratios = got.flatMap(g => g.figure.ratio !== undefined ? [g.figure.ratio] : [])
    into.figure({
      ...first,
      value: median(got.map(g => g.input.value)),
      ...(first.reference !== undefined && refs.length > 0 ? { reference: { ...first.reference, value: median(refs) } } : { reference: undefined })
    }, {
      ...(ratios.length > 0 ? { ratio: median(ratios) } : {}),
      runs: got.map(g => ({ value: g.input.value, ...(g.input.reference !== undefined ? { reference: g.input.reference.value } : {}), ...(g.figure.ratio !== undefined ? { ratio: g.figure.ratio } : {}) }))
    })
  }
  const once = <T>(items: Array<{ run: number, item: T }>, text: (t: T) => string, tagged: (t: T, run: number) => T): T[] => {
    // how many runs said each (a run says a thing once)
    const said = new Map<string, number>()
    for (const { item } of items) said.set(text(item), (said.get(text(item)) ?? 0) + 1)
    const out: T[] = []
    const seen = new Set<string>()
    for (const { run, item } of items) {
      const k = text(item)
      if (said.get(k) === runs.length) {
        if (!seen.has(k)) out.push(item)
        seen.add(k)
      } else {
        out.push(tagged(item, run))
      }
    }
    return out
  }
  const tag = (run: number): string => `run ${run + 1}/${runs.length}: `
  into.skipped.push(...once(runs.flatMap((r, run) => r.skipped.map(item => ({ run, item }))), s => `${s.section}\0${s.item}\0${s.reason}`, (s, run) => ({ ...s, reason: tag(run) + s.reason })))
  into.notes.push(...once(runs.flatMap((r, run) => r.notes.map(item => ({ run, item }))), n => n, (n, run) => tag(run) + n))
  into.errors.push(...runs.flatMap((r, run) => r.errors.map(e => ({ ...e, message: tag(run) + e.message }))))
}

/** the median (the mean of the middle two for an even count) */
export function median (values: number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export function machineInfo (): Results['machine'] {
  const list = cpus()
  return {
    nproc: Math.max(1, list.length),
    cpu: list[0]?.model?.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`
  }
}

export function formatNumber (n: number): string {
  if (!Number.isFinite(n)) return String(n)
  const abs = Math.abs(n)
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US')
  if (abs >= 100) return n.toFixed(0)
  if (abs >= 10) return n.toFixed(1)
  if (abs >= 1) return n.toFixed(2)
  if (abs === 0) return '0'
  return n.toPrecision(2)
}

/** A plain-text table of every figure, then the skipped items. */
export function formatTable (r: Results): string {
  const rows: string[][] = [['section', 'measure', 'value', 'reference (same run)', 'ratio', 'target']]
  for (const f of r.figures) {
    rows.push([
      f.section,
      f.name,
      `${formatNumber(f.value)} ${f.unit}`,
      f.reference !== undefined ? `${f.reference.name}: ${formatNumber(f.reference.value)} ${f.reference.unit}` : '—',
      f.ratio !== undefined ? `${f.ratio.toFixed(2)}x${f.runs !== undefined && f.runs.length > 1 ? ` (${f.runs.map(x => x.ratio !== undefined ? x.ratio.toFixed(2) : '—').join('/')})` : ''}` : '—',
      f.targets.length === 0 ? '' : f.targets.map(t => `${t.met ? 'ok' : 'MISSED'} (${t.text})`).join('; ')
    ])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map(row => row[i].length)))
  const line = (row: string[]): string => row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  const out = [line(rows[0]), widths.map(w => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)]
  if (r.skipped.length > 0) {
    out.push('', 'skipped:')
    for (const s of r.skipped) out.push(`  ${s.section} / ${s.item}: ${s.reason}`)
  }
  if (r.errors.length > 0) {
    out.push('', 'errors:')
    for (const e of r.errors) out.push(`  ${e.section}: ${e.message}`)
  }
  if (r.notes.length > 0) {
    out.push('', 'notes:')
    for (const n of r.notes) out.push(`  - ${n}`)
  }
  return out.join('\n')
}

/** The q-quantile (0..1) of a list of numbers (nearest rank). */
export function quantile (values: number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]
}
