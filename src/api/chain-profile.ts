import { resolve as resolvePath } from 'node:path'
import { loadChainProfile, resolveChainProfilePath } from '../chain/index.ts'
import type { ChainProfile } from '../chain/index.ts'
import { loadConfig } from '../config/index.ts'
import { TokenimError } from '../errors.ts'

/**
 * The chain profile file that applies to a data dir: `--chain` (chainPath) > TOKENIM_CHAIN >
 * `"chain"` in DATA_DIR/config.json > DATA_DIR/chain.json; undefined when none does.
 */
export async function chainProfilePath (dataDir: string, chainPath?: string): Promise<string | undefined> {
  if (chainPath !== undefined && chainPath !== '') return resolvePath(chainPath)
  const fromEnv = process.env.TOKENIM_CHAIN
  if (fromEnv !== undefined && fromEnv !== '') return resolvePath(fromEnv)
  const config = await loadConfig(dataDir)
  if (config.chain !== undefined) return resolvePath(dataDir, config.chain)
  return await resolveChainProfilePath({ dataDir, env: {} })
}

/** The chain profile of a data dir (see chainProfilePath); NO_CHAIN_PROFILE when none applies. */
export async function requireChainProfile (dataDir: string, chainPath?: string): Promise<ChainProfile> {
  const path = await chainProfilePath(dataDir, chainPath)
  if (path === undefined) {
    throw new TokenimError('NO_CHAIN_PROFILE', 'no chain profile: give --chain FILE, set TOKENIM_CHAIN, put "chain" in config.json or chain.json in the data dir')
  }
  return await loadChainProfile(path)
}
