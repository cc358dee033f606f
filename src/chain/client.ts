import {
  Contract, FetchRequest, JsonRpcProvider, Network, getAddress, getBytes, hexlify, isAddress, isError,
  parseEther, toQuantity
} from 'ethers'
import type { ContractTransactionResponse, EventLog, Interface, Signer, TransactionReceipt, TypedDataDomain } from 'ethers'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { TokenimError } from '../errors.ts'
import { log } from '../util/log.ts'
import { ChainErrorCode, isTransient, toChainError } from './errors.ts'
import type { ChainProfile } from './profile.ts'
import { registryArtifact } from './registry-artifact.ts'

const debug = log('chain')

/** Root block codec of a backup (dag-cbor) and its multihash (sha2-256): the CID is derived from the digest. */
export const ROOT_CODEC = 0x71
export const ROOT_HASH_CODE = 0x12
/** Chain id of Hardhat / local dev chains, where the client may mint itself ether. */
export const DEV_CHAIN_ID = 31337

export const DEFAULT_READ_TIMEOUT_MS = 15_000
export const DEFAULT_SEND_TIMEOUT_MS = 120_000
const READ_ATTEMPTS = 3
const RETRY_BASE_MS = 200

/** Options every chain call takes. */
export interface ChainCallOptions {
  signal?: AbortSignal
  /** overrides the default timeout of this call */
  timeoutMs?: number
}

export interface AnchorInfo {
  /** 0 when the owner never anchored */
  version: number
  /** 0x-prefixed 32-byte hex; all zero when version is 0 */
  digest: string
  /** unix seconds of the anchoring block; 0 when version is 0 */
  timestamp: number
}

export interface AnchorEvent {
  version: number
  digest: string
  timestamp: number
  txHash: string
  blockNumber: number
}

export interface AnchorResult {
  owner: string
  version: number
  digest: string
  timestamp: number
  txHash: string
  blockNumber: number
  gasUsed: bigint
}

export interface RegistryClientOptions {
  readTimeoutMs?: number
  sendTimeoutMs?: number
}

export interface EnsureFundsOptions extends ChainCallOptions {
  /** top up when the balance is below this (default 1 ether) */
  min?: bigint
  /** balance to set when topping up (default 100 ether) */
  target?: bigint
}

export interface EnsureFundsResult {
  balance: bigint
  toppedUp: boolean
}

/** Something that can sign EIP-712 typed data (an ethers Wallet / HDNodeWallet / Signer). */
export interface TypedDataSigner {
  signTypedData: Signer['signTypedData']
}

const ANCHOR_TYPES = {
  Anchor: [
    { name: 'owner', type: 'address' },
    { name: 'version', type: 'uint64' },
    { name: 'digest', type: 'bytes32' },
    { name: 'deadline', type: 'uint256' }
  ]
}

/** The EIP-712 domain of a registry deployment. */
export function anchorDomain (profile: Pick<ChainProfile, 'chainId' | 'registry'>): TypedDataDomain {
  return { name: 'tokenim BackupRegistry', version: '1', chainId: profile.chainId, verifyingContract: profile.registry }
}

/** The EIP-712 typed data an owner signs to let a relayer anchor `version` for them. */
export function anchorTypedData (profile: Pick<ChainProfile, 'chainId' | 'registry'>, owner: string, version: number, digest: string | Uint8Array, deadline: number): {
  domain: TypedDataDomain
  types: typeof ANCHOR_TYPES
  value: { owner: string, version: bigint, digest: string, deadline: bigint }
} {
  return {
    domain: anchorDomain(profile),
    types: ANCHOR_TYPES,
    value: { owner: checkAddress(owner, 'owner'), version: BigInt(checkVersion(version, 1)), digest: checkDigest(digest), deadline: BigInt(checkDeadline(deadline)) }
  }
}

/** The root CID (CIDv1, dag-cbor, sha2-256) of a backup whose root block has this digest. */
export function cidFromDigest (digest: string | Uint8Array): string {
  return CID.createV1(ROOT_CODEC, Digest.create(ROOT_HASH_CODE, getBytes(checkDigest(digest)))).toString()
}

const ZERO_DIGEST = '0x' + '00'.repeat(32)

/**
 * Client of one BackupRegistry deployment (a chain profile). Reads work without a signer; sends
 * (`anchor`, `anchorWithSig`) use the signer given at construction (for anchorWithSig: the relayer,
 * who pays the gas). Reads are retried a little when the RPC is unreachable; sends never are.
 * Call `close()` when done.
 */
export class RegistryClient {
  readonly profile: ChainProfile
  readonly provider: JsonRpcProvider
  readonly signer: Signer | undefined
  readonly #contract: Contract
  readonly #iface: Interface
  readonly #readTimeoutMs: number
  readonly #sendTimeoutMs: number
  #chainChecked: Promise<void> | undefined
  #registryChecked: Promise<void> | undefined

  constructor (profile: ChainProfile, signer?: Signer, options: RegistryClientOptions = {}) {
    this.profile = { ...profile, registry: checkAddress(profile.registry, 'registry') }
    this.#readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS
    this.#sendTimeoutMs = options.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS
    const request = new FetchRequest(profile.rpc)
    request.timeout = Math.max(this.#readTimeoutMs, this.#sendTimeoutMs)
    // staticNetwork: no network detection (which retries forever when the RPC is down); the chain
    // id is checked once, explicitly, before the first call (WRONG_CHAIN_ID)
    this.provider = new JsonRpcProvider(request, Network.from(profile.chainId), { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 })
    // a dev chain, or any chain on this machine, mines at once: poll receipts often
    if (profile.chainId === DEV_CHAIN_ID || isLoopbackRpc(profile.rpc)) this.provider.pollingInterval = 250
    this.signer = signer === undefined ? undefined : (signer.provider == null ? signer.connect(this.provider) : signer)
    this.#contract = new Contract(this.profile.registry, registryArtifact.abi, this.signer ?? this.provider)
    this.#iface = this.#contract.interface
  }

  /** The owner's latest anchor (version 0 when none). */
  async latest (owner: string, opts: ChainCallOptions = {}): Promise<AnchorInfo> {
    const who = checkAddress(owner, 'owner')
    return await this.#read('read latest anchor', opts, true, async () => {
      const [version, digest, timestamp] = await this.#contract.getFunction('latest').staticCall(who) as [bigint, string, bigint]
      return { version: Number(version), digest, timestamp: Number(timestamp) }
    })
  }

  /** The digest anchored for (owner, version), or undefined when that version was never anchored. */
  async digestOf (owner: string, version: number, opts: ChainCallOptions = {}): Promise<string | undefined> {
    const who = checkAddress(owner, 'owner')
    const v = checkVersion(version, 0)
    return await this.#read('read anchored digest', opts, true, async () => {
      const digest = await this.#contract.getFunction('digestOf').staticCall(who, v) as string
      return digest === ZERO_DIGEST ? undefined : digest
    })
  }

  /** The root CID of (owner, version), derived from its digest; undefined when not anchored. */
  async cidOf (owner: string, version: number, opts: ChainCallOptions = {}): Promise<string | undefined> {
    const digest = await this.digestOf(owner, version, opts)
    return digest === undefined ? undefined : cidFromDigest(digest)
  }

  /** Every anchor of the owner, from the BackupAnchored events, oldest version first. */
  async history (owner: string, opts: ChainCallOptions = {}): Promise<AnchorEvent[]> {
    const who = checkAddress(owner, 'owner')
    return await this.#read('read anchor history', opts, true, async () => {
      const filter = this.#contract.filters.BackupAnchored(who)
      const logs = await this.#contract.queryFilter(filter, this.profile.startBlock ?? 0, 'latest')
      return logs
        .filter((l): l is EventLog => 'args' in l)
        .map(l => ({
          version: Number(l.args[1]),
          digest: l.args[2] as string,
          timestamp: Number(l.args[3]),
          txHash: l.transactionHash,
          blockNumber: l.blockNumber
        }))
        .sort((a, b) => a.version - b.version)
    })
  }

  /** Anchor `version` of the signer's own backup; the signer pays the gas. */
  async anchor (version: number, digest: string | Uint8Array, opts: ChainCallOptions = {}): Promise<AnchorResult> {
    const v = checkVersion(version, 1)
    const d = checkDigest(digest, true)
    return await this.#send('anchor', opts, async (contract) => await contract.getFunction('anchor').send(v, d))
  }

  /**
   * Sign (as `wallet`, which must be the owner) the EIP-712 authorisation for a relayer to anchor
   * `version` with `digest` until `deadline` (unix seconds). Needs no RPC.
   */
  async signAnchor (wallet: TypedDataSigner, owner: string, version: number, digest: string | Uint8Array, deadline: number): Promise<string> {
    const { domain, types, value } = anchorTypedData(this.profile, owner, version, digest, deadline)
    return await wallet.signTypedData(domain, types, value)
  }

  /** Relay an owner's signed anchor; the client's signer (the relayer) pays the gas. */
  async anchorWithSig (owner: string, version: number, digest: string | Uint8Array, deadline: number, signature: string, opts: ChainCallOptions = {}): Promise<AnchorResult> {
    const who = checkAddress(owner, 'owner')
    const v = checkVersion(version, 1)
    const d = checkDigest(digest, true)
    const dl = checkDeadline(deadline)
    if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) {
      throw new TokenimError(ChainErrorCode.INVALID_SIGNATURE, 'the anchor signature must be 65 bytes of hex')
    }
    return await this.#send('relayed anchor', opts, async (contract) => await contract.getFunction('anchorWithSig').send(who, v, d, dl, signature))
  }

  /**
   * Make sure `address` can pay for gas. On dev chains (chainId 31337) a balance below `min` is
   * topped up with `hardhat_setBalance`; elsewhere this only reports the balance.
   */
  async ensureFunds (address: string, opts: EnsureFundsOptions = {}): Promise<EnsureFundsResult> {
    const who = checkAddress(address, 'address')
    const min = opts.min ?? parseEther('1')
    const target = opts.target ?? parseEther('100')
    return await this.#read('ensure funds', opts, false, async () => {
      const balance = await this.provider.getBalance(who)
      if (balance >= min || this.profile.chainId !== DEV_CHAIN_ID) return { balance, toppedUp: false }
      await this.provider.send('hardhat_setBalance', [who, toQuantity(target)])
      debug('topped up %s to %s wei on the dev chain', who, target)
      return { balance: await this.provider.getBalance(who), toppedUp: true }
    })
  }

  /** Check the RPC is reachable, serves the profile's chain id and has the registry deployed. */
  async checkDeployed (opts: ChainCallOptions = {}): Promise<void> {
    this.#chainChecked = undefined
    this.#registryChecked = undefined
    await this.#read('check the registry', opts, true, async () => {})
  }

  /** Release the provider (no timers or sockets stay behind). */
  close (): void {
    this.provider.destroy()
  }

  #translate (err: unknown, what: string): TokenimError {
    return toChainError(decodeRevert(err, this.#iface), { url: this.profile.rpc, what })
  }

  async #ensureChain (): Promise<void> {
    this.#chainChecked ??= (async () => {
      const actual = Number(await this.provider.send('eth_chainId', []))
      if (actual !== this.profile.chainId) {
        throw new TokenimError(ChainErrorCode.WRONG_CHAIN_ID,
          `chain RPC ${this.profile.rpc} serves chain id ${actual}, the profile expects ${this.profile.chainId}`,
          { expected: this.profile.chainId, actual, url: this.profile.rpc })
      }
    })().catch((err: unknown) => {
      this.#chainChecked = undefined
      throw err
    })
    await this.#chainChecked
  }

  async #ensureRegistry (): Promise<void> {
    await this.#ensureChain()
    this.#registryChecked ??= (async () => {
      const code = await this.provider.getCode(this.profile.registry)
      if (code === '0x') {
        throw new TokenimError(ChainErrorCode.NO_REGISTRY,
          `no BackupRegistry at ${this.profile.registry} on chain ${this.profile.chainId} (${this.profile.rpc}): deploy it or fix the chain profile`,
          { registry: this.profile.registry, chainId: this.profile.chainId, url: this.profile.rpc })
      }
    })().catch((err: unknown) => {
      this.#registryChecked = undefined
      throw err
    })
    await this.#registryChecked
  }

  async #read<T> (what: string, opts: ChainCallOptions, needsRegistry: boolean, fn: () => Promise<T>): Promise<T> {
    let settled = false
    const attempt = async (): Promise<T> => {
      for (let i = 1; ; i++) {
        try {
          if (needsRegistry) await this.#ensureRegistry()
          else await this.#ensureChain()
          return await fn()
        } catch (err) {
          const e = this.#translate(err, what)
          if (!isTransient(e) || i >= READ_ATTEMPTS || settled) throw e
          debug('%s: %s, retrying (%d/%d)', what, e.message, i, READ_ATTEMPTS)
          await sleep(RETRY_BASE_MS * 3 ** (i - 1))
        }
      }
    }
    try {
      return await withDeadline(attempt(), opts.signal, opts.timeoutMs ?? this.#readTimeoutMs, () => this.#timeout(what, opts.timeoutMs ?? this.#readTimeoutMs))
    } finally {
      settled = true
    }
  }

  async #send (what: string, opts: ChainCallOptions, submit: (contract: Contract) => Promise<ContractTransactionResponse>): Promise<AnchorResult> {
    if (this.signer === undefined) {
      throw new TokenimError(ChainErrorCode.NO_SIGNER, `${what} needs a wallet: the chain client has no signer`)
    }
    const timeoutMs = opts.timeoutMs ?? this.#sendTimeoutMs
    let txHash: string | undefined
    const work = async (): Promise<AnchorResult> => {
      // the checks are reads: safe to retry; the transaction itself is sent once
      await this.#read(what, { signal: opts.signal, timeoutMs: Math.min(timeoutMs, this.#readTimeoutMs) }, true, async () => {})
      let receipt: TransactionReceipt | null
      try {
        const tx = await submit(this.#contract)
        txHash = tx.hash
        debug('%s sent: %s', what, tx.hash)
        receipt = await tx.wait(1)
      } catch (err) {
        throw this.#translate(err, what)
      }
      if (receipt == null) throw new TokenimError(ChainErrorCode.ERROR, `${what}: the transaction was dropped`, { txHash })
      return this.#resultOf(receipt, what)
    }
    return await withDeadline(work(), opts.signal, timeoutMs, () => {
      const e = this.#timeout(what, timeoutMs)
      if (txHash !== undefined) e.info.txHash = txHash
      return e
    })
  }

  #resultOf (receipt: TransactionReceipt, what: string): AnchorResult {
    for (const entry of receipt.logs) {
      if (getAddress(entry.address) !== this.profile.registry) continue
      const parsed = this.#iface.parseLog(entry)
      if (parsed?.name !== 'BackupAnchored') continue
      return {
        owner: parsed.args[0] as string,
        version: Number(parsed.args[1]),
        digest: parsed.args[2] as string,
        timestamp: Number(parsed.args[3]),
        txHash: receipt.hash,
        blockNumber: receipt.blockNumber,
        gasUsed: receipt.gasUsed
      }
    }
    throw new TokenimError(ChainErrorCode.ERROR, `${what}: the transaction emitted no BackupAnchored event`, { txHash: receipt.hash })
  }

  #timeout (what: string, timeoutMs: number): TokenimError {
    return new TokenimError(ChainErrorCode.TIMEOUT, `${what} did not finish within ${timeoutMs} ms (${this.profile.rpc})`,
      { what, timeoutMs, url: this.profile.rpc })
  }
}

function isLoopbackRpc (rpc: string): boolean {
  try {
    return ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(rpc).hostname)
  } catch {
    return false
  }
}

/** ethers decodes custom errors only for static calls; do it for sends and estimates too. */
function decodeRevert (err: unknown, iface: Interface): unknown {
  if (!isError(err, 'CALL_EXCEPTION') || err.revert != null || err.data == null) return err
  try {
    const parsed = iface.parseError(err.data)
    if (parsed != null) {
      err.revert = { name: parsed.name, signature: parsed.signature, args: [...parsed.args] }
    }
  } catch {
    // not one of the registry's errors
  }
  return err
}

/** Race `work` against a timeout and the caller's signal (the work is not cancelled, only abandoned). */
async function withDeadline<T> (work: Promise<T>, signal: AbortSignal | undefined, timeoutMs: number, onTimeout: () => TokenimError): Promise<T> {
  if (signal?.aborted === true) {
    work.catch(() => {})
    throw aborted(signal)
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  let onAbort: (() => void) | undefined
  try {
    return await new Promise<T>((resolve, reject) => {
      timer = setTimeout(() => reject(onTimeout()), timeoutMs)
      if (signal !== undefined) {
        onAbort = () => reject(aborted(signal))
        signal.addEventListener('abort', onAbort, { once: true })
      }
      work.then(resolve, reject)
    })
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
  }
}

function aborted (signal: AbortSignal): TokenimError {
  return new TokenimError(ChainErrorCode.ABORTED, 'the chain call was aborted', {}, { cause: signal.reason })
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

function checkAddress (value: string, name: string): string {
  if (typeof value !== 'string' || !isAddress(value)) {
    throw new TokenimError(ChainErrorCode.INVALID_ARGUMENT, `${name} is not a valid address`, { [name]: String(value) })
  }
  return getAddress(value)
}

function checkVersion (value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new TokenimError(ChainErrorCode.INVALID_ARGUMENT, `backup version must be an integer >= ${min}`, { version: value })
  }
  return value
}

function checkDeadline (value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TokenimError(ChainErrorCode.INVALID_ARGUMENT, 'deadline must be unix seconds', { deadline: value })
  }
  return value
}

function checkDigest (value: string | Uint8Array, nonZero = false): string {
  let hex: string
  try {
    hex = hexlify(value)
  } catch {
    throw new TokenimError(ChainErrorCode.INVALID_DIGEST, 'the backup digest must be 32 bytes (0x-prefixed hex or bytes)')
  }
  if (hex.length !== 66) throw new TokenimError(ChainErrorCode.INVALID_DIGEST, 'the backup digest must be 32 bytes (0x-prefixed hex or bytes)')
  if (nonZero && hex === ZERO_DIGEST) throw new TokenimError(ChainErrorCode.INVALID_DIGEST, 'the backup digest must not be zero')
  return hex
}
