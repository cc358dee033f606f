import { dirname, join } from 'node:path'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { JsonRpcProvider, Network } from 'ethers'
import { TokenimError } from '../errors.ts'
import { log } from '../util/log.ts'
import { DEV_CHAIN_ID } from './client.ts'
import { ChainErrorCode } from './errors.ts'
import type { ChainProfile } from './profile.ts'
import { deployWith } from './deploy.ts'

const debug = log('chain:devnet')

/** The package root (where Hardhat keeps its cache), resolved from this file, not from the cwd. */
const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface DevnetOptions {
  /** TCP port; 0 or undefined picks a free one */
  port?: number
  /** interface to bind; loopback only by default */
  host?: string
  /**
   * chain id (default 31337). Any other id makes a chain where nodes do not fund themselves
   * (`ensureFunds` tops up only on 31337): what a real chain looks like to an unfunded wallet.
   */
  chainId?: number
}

export interface Devnet {
  /** the chain profile of this devnet: `{ rpc, chainId (31337 by default), registry, startBlock }` */
  profile: ChainProfile
  rpc: string
  chainId: number
  registry: string
  /** stop the chain and close its sockets (idempotent) */
  stop: () => Promise<void>
}

/**
 * Start a real local EVM (Hardhat 3's in-process EDR chain behind its JSON-RPC server, chain id
 * 31337, automining, 20 funded dev accounts) and deploy BackupRegistry from the committed
 * artifact with the first dev account. Everything lives in this process; `stop()` releases it.
 */
export async function startDevnet (options: DevnetOptions = {}): Promise<Devnet> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 0
  const chainId = options.chainId ?? DEV_CHAIN_ID
  // Hardhat's server crashes the process on EADDRINUSE (an unhandled 'error' event of its
  // websocket server), so a fixed port is probed first
  if (port !== 0) await assertPortFree(host, port)
  // Hardhat is loaded only when a devnet is started (it is heavy); the inline config uses no
  // plugins, so neither a config file nor Hardhat's dev plugins are needed at runtime.
  const { createHardhatRuntimeEnvironment } = await import('hardhat/hre')
  const hre = await createHardhatRuntimeEnvironment({
    networks: { default: { type: 'edr-simulated', chainId } }
  }, {}, PROJECT_ROOT)
  const server = await hre.network.createServer('default', host, port)
  let listening: { address: string, port: number }
  try {
    listening = await server.listen()
  } catch (err) {
    await server.close().catch(() => {})
    throw listenError(err, host, port)
  }
  const rpc = `http://${host.includes(':') ? `[${host}]` : host}:${listening.port}`
  const provider = new JsonRpcProvider(rpc, Network.from(chainId), { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 })
  let stopped: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopped ??= (async () => {
      provider.destroy()
      await server.close()
      debug('devnet on %s stopped', rpc)
    })()
    await stopped
  }
  try {
    // the first of Hardhat's funded dev accounts, unlocked on the node (eth_sendTransaction)
    const profile = await deployWith(provider, await provider.getSigner(0), chainId, rpc)
    const { registry } = profile
    debug('devnet on %s (chain id %d), registry %s', rpc, chainId, registry)
    return { profile, rpc, chainId, registry, stop }
  } catch (err) {
    await stop().catch(() => {})
    throw new TokenimError(ChainErrorCode.ERROR, 'cannot deploy BackupRegistry on the devnet', { rpc }, { cause: err })
  }
}

function listenError (err: unknown, host: string, port: number): TokenimError {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'EADDRINUSE') {
    return new TokenimError('PORT_IN_USE', `cannot start the devnet: ${host}:${port} is already in use`, { host, port }, { cause: err })
  }
  return new TokenimError(ChainErrorCode.ERROR, `cannot start the devnet on ${host}:${port}${code !== undefined ? ` (${code})` : ''}`, { host, port }, { cause: err })
}

async function assertPortFree (host: string, port: number): Promise<void> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject)
    probe.listen({ host, port, exclusive: true }, () => { probe.close(() => resolve()) })
  }).catch((err: unknown) => { throw listenError(err, host, port) })
}
