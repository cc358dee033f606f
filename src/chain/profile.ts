import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { getAddress, isAddress } from 'ethers'
import { z } from 'zod'
import { TokenimError } from '../errors.ts'
import { exists, writeFileAtomic, PRIVATE_FILE_MODE } from '../util/fs.ts'
import { ChainErrorCode } from './errors.ts'

/**
 * Where the registry lives: `{ "rpc": URL, "chainId": N, "registry": "0x…" }`.
 * `startBlock` (optional) is the block the registry was deployed in; history queries start there.
 */
export interface ChainProfile {
  rpc: string
  chainId: number
  registry: string
  startBlock?: number
}

/** The file name of the chain profile inside a data directory. */
export const CHAIN_PROFILE_FILE = 'chain.json'

const profileSchema = z.object({
  rpc: z.string().refine(s => {
    try {
      return ['http:', 'https:'].includes(new URL(s).protocol)
    } catch {
      return false
    }
  }, 'must be an http(s) URL'),
  chainId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  registry: z.string().refine(s => isAddress(s), 'must be a 0x-prefixed 20-byte address (with a valid checksum when mixed case)'),
  startBlock: z.number().int().nonnegative().optional()
})

function invalid (source: string, field: string, reason: string): TokenimError {
  return new TokenimError(ChainErrorCode.INVALID_CHAIN_PROFILE,
    `invalid chain profile ${source}: ${field === '' ? '' : `field "${field}" `}${reason}`, { file: source, field })
}

/** Validate an already parsed profile; `source` names it in errors. Returns a normalised copy. */
export function parseChainProfile (value: unknown, source = 'chain profile'): ChainProfile {
  const result = profileSchema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]
    const field = issue?.path.map(String).join('.') ?? ''
    throw invalid(source, field, issue?.message ?? 'is malformed')
  }
  const { rpc, chainId, registry, startBlock } = result.data
  return { rpc, chainId, registry: getAddress(registry), ...(startBlock !== undefined ? { startBlock } : {}) }
}

/** Read and validate a chain profile file. */
export async function loadChainProfile (path: string): Promise<ChainProfile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TokenimError(ChainErrorCode.CHAIN_PROFILE_NOT_FOUND, `chain profile ${path} does not exist`, { file: path }, { cause: err })
    }
    throw new TokenimError(ChainErrorCode.INVALID_CHAIN_PROFILE, `cannot read chain profile ${path}`, { file: path }, { cause: err })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw invalid(path, '', 'is not valid JSON')
  }
  return parseChainProfile(json, path)
}

/** Write a chain profile atomically (mode 0600). */
export async function writeChainProfile (path: string, profile: ChainProfile): Promise<void> {
  const valid = parseChainProfile(profile, path)
  await writeFileAtomic(path, JSON.stringify(valid, null, 2) + '\n', { mode: PRIVATE_FILE_MODE })
}

export interface ResolveChainProfileOptions {
  /** explicit path (`--chain FILE`), wins over everything */
  chain?: string
  /** the data directory; `<dataDir>/chain.json` is used when it exists */
  dataDir?: string
  /** environment to read TOKENIM_CHAIN from (default process.env) */
  env?: Record<string, string | undefined>
}

/**
 * Which chain profile file applies: explicit path (`--chain`) > env TOKENIM_CHAIN >
 * `<dataDir>/chain.json` if present > none (undefined). Explicit and env paths are returned even
 * when the file is missing, so loading them reports CHAIN_PROFILE_NOT_FOUND instead of silently
 * falling back.
 */
export async function resolveChainProfilePath (options: ResolveChainProfileOptions = {}): Promise<string | undefined> {
  const env = options.env ?? process.env
  if (options.chain !== undefined && options.chain !== '') return resolve(options.chain)
  const fromEnv = env.TOKENIM_CHAIN
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv)
  if (options.dataDir !== undefined) {
    const inDataDir = join(options.dataDir, CHAIN_PROFILE_FILE)
    if (await exists(inDataDir)) return resolve(inDataDir)
  }
  return undefined
}

/** Resolve (see resolveChainProfilePath) and load the chain profile; undefined when none applies. */
export async function resolveChainProfile (options: ResolveChainProfileOptions = {}): Promise<ChainProfile | undefined> {
  const path = await resolveChainProfilePath(options)
  return path === undefined ? undefined : await loadChainProfile(path)
}
