import { homedir } from 'node:os'
import { resolve, join } from 'node:path'
import type { Command } from 'commander'

/** Options every command takes (DESIGN.md, command-line contract). */
export interface GlobalOptions {
  dataDir: string
  json: boolean
  passwordFile?: string
  chain?: string
}

/** The data dir: --data-dir, else $TOKENIM_HOME, else ~/.tokenim. */
export function resolveDataDir (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return resolve(flag)
  if (env.TOKENIM_HOME !== undefined && env.TOKENIM_HOME !== '') return resolve(env.TOKENIM_HOME)
  return join(homedir(), '.tokenim')
}

export function globalOptions (cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ dataDir?: string, json?: boolean, passwordFile?: string, chain?: string }>()
  return {
    dataDir: resolveDataDir(o.dataDir),
    json: o.json === true,
    passwordFile: o.passwordFile,
    chain: o.chain ?? (process.env.TOKENIM_CHAIN !== '' ? process.env.TOKENIM_CHAIN : undefined)
  }
}
