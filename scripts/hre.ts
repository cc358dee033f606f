// Creates the Hardhat runtime environment of this repository from any working directory (the
// config path is resolved relative to this file), for the scripts in this folder.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHardhatRuntimeEnvironment, importUserConfig } from 'hardhat/hre'
import type { HardhatRuntimeEnvironment } from 'hardhat/types/hre'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
export const hardhatConfigPath = join(repoRoot, 'hardhat.config.ts')

export async function createRepoHre (): Promise<HardhatRuntimeEnvironment> {
  const config = await importUserConfig(hardhatConfigPath)
  return await createHardhatRuntimeEnvironment(config, { config: hardhatConfigPath }, repoRoot)
}

/** Compile the contracts (offline, npm solc) quietly. */
export async function buildContracts (hre: HardhatRuntimeEnvironment): Promise<void> {
  await hre.tasks.getTask('build').run({ quiet: true, noTests: true })
}
