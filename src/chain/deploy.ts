import { ContractFactory, FetchRequest, JsonRpcProvider, Network, Wallet } from 'ethers'
import type { Signer } from 'ethers'
import { TokenimError } from '../errors.ts'
import { DEFAULT_SEND_TIMEOUT_MS } from './client.ts'
import { ChainErrorCode, toChainError } from './errors.ts'
import type { ChainProfile } from './profile.ts'
import { registryArtifact } from './registry-artifact.ts'

export interface DeployRegistryOptions {
  /** RPC URL of the chain */
  rpc: string
  /** hex private key of the account that pays for the deployment */
  privateKey: string
  /** expected chain id; WRONG_CHAIN_ID when the RPC serves another one (default: whatever it serves) */
  chainId?: number
  signal?: AbortSignal
  /** default 120 s */
  timeoutMs?: number
}

/** Deploy BackupRegistry (from the committed artifact) and return the chain profile for it. */
export async function deployRegistry (options: DeployRegistryOptions): Promise<ChainProfile> {
  let wallet: Wallet
  try {
    wallet = new Wallet(options.privateKey)
  } catch {
    throw new TokenimError(ChainErrorCode.INVALID_ARGUMENT, 'the deployer key is not a valid private key')
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_SEND_TIMEOUT_MS
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal !== undefined ? [options.signal] : [])])
  const connect = (chainId: number): JsonRpcProvider => {
    const request = new FetchRequest(options.rpc)
    request.timeout = timeoutMs
    return new JsonRpcProvider(request, Network.from(chainId), { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 })
  }
  // learn the chain id first (the signer needs it), without ethers' endless network detection
  const probe = connect(options.chainId ?? 1)
  let chainId: number
  try {
    chainId = await abortable((async () => {
      try {
        return Number(await probe.send('eth_chainId', []))
      } catch (err) {
        throw toChainError(err, { url: options.rpc, what: 'deploying BackupRegistry' })
      }
    })(), signal, options.rpc)
  } finally {
    probe.destroy()
  }
  if (options.chainId !== undefined && chainId !== options.chainId) {
    throw new TokenimError(ChainErrorCode.WRONG_CHAIN_ID, `chain RPC ${options.rpc} serves chain id ${chainId}, expected ${options.chainId}`,
      { expected: options.chainId, actual: chainId, url: options.rpc })
  }
  const provider = connect(chainId)
  try {
    return await abortable(deployWith(provider, wallet.connect(provider), chainId, options.rpc), signal, options.rpc)
  } finally {
    provider.destroy()
  }
}

/** Deploy with a signer connected to `provider`; checks the chain id when `expectedChainId` is given. */
export async function deployWith (provider: JsonRpcProvider, signer: Signer, expectedChainId: number | undefined, rpc: string): Promise<ChainProfile> {
  try {
    const chainId = Number(await provider.send('eth_chainId', []))
    if (expectedChainId !== undefined && chainId !== expectedChainId) {
      throw new TokenimError(ChainErrorCode.WRONG_CHAIN_ID, `chain RPC ${rpc} serves chain id ${chainId}, expected ${expectedChainId}`,
        { expected: expectedChainId, actual: chainId, url: rpc })
    }
    const factory = new ContractFactory(registryArtifact.abi, registryArtifact.bytecode, signer)
    const contract = await factory.deploy()
    const receipt = await contract.deploymentTransaction()?.wait(1)
    return { rpc, chainId, registry: await contract.getAddress(), startBlock: receipt?.blockNumber ?? 0 }
  } catch (err) {
    throw toChainError(err, { url: rpc, what: 'deploying BackupRegistry' })
  }
}

async function abortable<T> (work: Promise<T>, signal: AbortSignal, rpc: string): Promise<T> {
  work.catch(() => {})
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      const timedOut = (signal.reason as { name?: string } | undefined)?.name === 'TimeoutError'
      reject(timedOut
        ? new TokenimError(ChainErrorCode.TIMEOUT, `deploying BackupRegistry at ${rpc} timed out`, { url: rpc, what: 'deploy' })
        : new TokenimError(ChainErrorCode.ABORTED, 'the deployment was aborted', {}, { cause: signal.reason }))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
