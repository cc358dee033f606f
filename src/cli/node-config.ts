/**
 * The node settings a command runs with. Precedence: flags > environment > DATA_DIR/config.json >
 * built-in defaults (src/config `pick`). Everything is validated before the identity is unlocked.
 */
import { loadConfig, parseDuration, pick } from '../config/index.ts'
import { parseAddress } from '../api/index.ts'
import { TokenimError } from '../errors.ts'

/**
 * Loopback only by default: a node nobody else on the network can reach until its owner opts in.
 * Listen on the LAN with `--listen /ip4/0.0.0.0/tcp/4001` (or TOKENIM_LISTEN, or "listen" in config.json).
 */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']

export interface NodeFlags {
  listen?: string[]
  bootstrap?: string[]
  mdns?: boolean
  replica?: string[]
  replicaFor?: string[]
  backupEvery?: string
}

export interface NodeSettings {
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /** wallet addresses asked to keep our backups (used by the backup feature) */
  replicas: string[]
  /** owners whose backups we keep (used by the replica feature) */
  replicaFor: string[]
  /** automatic backup interval in ms (used by the backup scheduler), undefined = off */
  backupEveryMs?: number
}

/** A comma-separated list from an environment variable (undefined when unset or empty). */
export function envList (name: string, env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const v = env[name]
  if (v === undefined || v.trim() === '') return undefined
  return v.split(',').map(s => s.trim()).filter(s => s !== '')
}

export async function resolveNodeSettings (dataDir: string, flags: NodeFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<NodeSettings> {
  const file = await loadConfig(dataDir)
  const listen = pick(flags.listen, envList('TOKENIM_LISTEN', env), file.listen, DEFAULT_LISTEN)
  const bootstrap = pick(flags.bootstrap, envList('TOKENIM_BOOTSTRAP', env), file.bootstrap, [])
  // loaded on demand: commands that never start a node should not pay for it
  const { multiaddr } = await import('@multiformats/multiaddr')
  listen.forEach(a => { checkMultiaddr(multiaddr, a, '--listen') })
  bootstrap.forEach(a => { checkMultiaddr(multiaddr, a, '--bootstrap', true) })
  if (listen.length === 0) throw new TokenimError('USAGE', 'at least one --listen address is needed')
  const mdns = pick(flags.mdns === true ? true : undefined, envBool('TOKENIM_MDNS', env), file.mdns, false)
  const replicas = pick(flags.replica, undefined, file.replicas, []).map(a => parseAddress(a, '--replica'))
  const replicaFor = pick(flags.replicaFor, undefined, file.replicaFor, []).map(a => parseAddress(a, '--replica-for'))
  const every = pick(flags.backupEvery, undefined, file.backupEvery, undefined)
  const backupEveryMs = every === undefined ? undefined : parseDuration(every)
  if (backupEveryMs !== undefined && backupEveryMs < 60_000) throw new TokenimError('USAGE', '--backup-every must be at least 1m')
  return { listen, bootstrap, mdns, replicas, replicaFor, ...(backupEveryMs !== undefined ? { backupEveryMs } : {}) }
}

function checkMultiaddr (multiaddr: (text: string) => { toString: () => string }, text: string, flag: string, needPeer = false): void {
  let ok = text.startsWith('/')
  if (ok) {
    try {
      const ma = multiaddr(text)
      if (needPeer && !ma.toString().includes('/p2p/')) ok = false
    } catch {
      ok = false
    }
  }
  if (!ok) {
    const example = needPeer ? '/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo…' : '/ip4/127.0.0.1/tcp/4001'
    throw new TokenimError('USAGE', `${flag}: not a valid multiaddr${needPeer ? ' with a /p2p/ peer id' : ''}: ${JSON.stringify(text)} (e.g. ${example})`)
  }
}

function envBool (name: string, env: NodeJS.ProcessEnv): boolean | undefined {
  const v = env[name]
  if (v === undefined || v === '') return undefined
  return v === '1' || v.toLowerCase() === 'true'
}
