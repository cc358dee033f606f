import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { TokenimError } from '../errors.ts'
import { writeFileAtomic } from '../util/fs.ts'

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'a 0x-prefixed 20-byte hex wallet address')
const multiaddr = z.string().startsWith('/', 'a multiaddr such as /ip4/127.0.0.1/tcp/4001')
const duration = z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30s, 15m, 24h')

/**
 * DATA_DIR/config.json: defaults for a node. Flags override the environment, the environment
 * overrides this file, and the file overrides built-in defaults.
 */
export const ConfigSchema = z.object({
  listen: z.array(multiaddr).optional(),
  bootstrap: z.array(multiaddr).optional(),
  mdns: z.boolean().optional(),
  chain: z.string().min(1).optional(),
  replicas: z.array(address).optional(),
  replicaFor: z.array(address).optional(),
  replicaKeep: z.number().int().min(1).max(1000).optional(),
  replicaQuotaBytes: z.number().int().min(0).optional(),
  backupEvery: duration.optional(),
  keepLast: z.number().int().min(1).optional(),
  attachmentMaxBytes: z.number().int().min(1).optional()
}).strict()

export type Config = z.infer<typeof ConfigSchema>

export const CONFIG_FILE = 'config.json'

/** Read and validate DATA_DIR/config.json; a missing file is an empty config. */
export async function loadConfig (dataDir: string): Promise<Config> {
  const path = join(dataDir, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new TokenimError('INVALID_CONFIG', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { path })
  }
  return parseConfig(text, path)
}

export function parseConfig (text: string, path = CONFIG_FILE): Config {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    throw new TokenimError('INVALID_CONFIG', `${path} is not valid JSON`, { path })
  }
  const parsed = ConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = issue.path.join('.') || '(top level)'
    throw new TokenimError('INVALID_CONFIG', `${path}: ${field}: ${issue.message}`, { path, field })
  }
  return parsed.data
}

export async function saveConfig (dataDir: string, config: Config): Promise<void> {
  const valid = ConfigSchema.parse(config)
  await writeFileAtomic(join(dataDir, CONFIG_FILE), JSON.stringify(valid, null, 2) + '\n', { mode: 0o600 })
}

/** Parse "24h", "15m", "30s", "500ms", "2d" into milliseconds. */
export function parseDuration (text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim())
  if (m === null) throw new TokenimError('USAGE', `not a duration: ${JSON.stringify(text)} (use e.g. 30s, 15m, 24h)`)
  const n = Number(m[1])
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd']
  return n * unit
}

/** flag > environment variable > config file > default */
export function pick<T> (flag: T | undefined, env: T | undefined, file: T | undefined, fallback: T): T {
  if (flag !== undefined && !(Array.isArray(flag) && flag.length === 0)) return flag
  if (env !== undefined) return env
  if (file !== undefined) return file
  return fallback
}
