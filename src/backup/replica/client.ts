/**
 * Requesting side of `/tokenim/pin/1.0.0`: find the replica by its wallet address (the resolver),
 * dial it, send one pin request, wait for its receipt. While the replica fetches the DAG over bitswap
 * from us, our node must keep running (it serves the blocks).
 */
import type { Stream } from '@libp2p/interface'
import { isTokenimError } from '../../errors.ts'
import { framed } from '../../p2p/index.ts'
import { log } from '../../util/log.ts'
import { ReplicaErrorCode, replicaError } from './errors.ts'
import { MAX_PIN_FRAME, PIN_PROTOCOL, decodeReceipt, encodePinRequest } from './protocol.ts'
import type { PinReceipt, PinRequest } from './protocol.ts'

const logger = log('backup:replica:client')

/** How long we wait for a receipt by default (the replica fetches the whole DAG first). */
export const DEFAULT_PIN_TIMEOUT_MS = 120_000

/** What the client needs of a node: its resolver (TokenimNode has one while it runs). */
export interface ReplicaRequester {
  resolver: {
    dialProtocol: (address: string, protocol: string, options?: { signal?: AbortSignal }) => Promise<{ stream: Stream, peer: { peerId: { toString: () => string } } }>
  }
}

export interface RequestPinOptions {
  signal?: AbortSignal
  /** ms (default 120 s) */
  timeout?: number
}

/**
 * Ask the replica with wallet address `replicaAddress` to pin a bundle. Resolves the receipt when the
 * replica confirmed (`ok: true`); throws REPLICA_REFUSED (info.reason), REPLICA_UNREACHABLE or
 * REPLICA_PROTOCOL_ERROR otherwise.
 */
export async function requestReplicaPin (node: ReplicaRequester, replicaAddress: string, request: PinRequest, options: RequestPinOptions = {}): Promise<PinReceipt> {
  let frame: Uint8Array
  try {
    frame = encodePinRequest(request)
  } catch (err) {
    throw replicaError(ReplicaErrorCode.INVALID_ARGUMENT, `invalid pin request: ${(err as Error).message}`)
  }
  const timeout = options.timeout ?? DEFAULT_PIN_TIMEOUT_MS
  const signal = options.signal !== undefined ? AbortSignal.any([options.signal, AbortSignal.timeout(timeout)]) : AbortSignal.timeout(timeout)
  const where = { replica: replicaAddress }
  let dialed: { stream: Stream, peer: { peerId: { toString: () => string } } }
  try {
    dialed = await node.resolver.dialProtocol(replicaAddress, PIN_PROTOCOL, { signal })
  } catch (err) {
    throw replicaError(ReplicaErrorCode.REPLICA_UNREACHABLE, `replica ${replicaAddress} could not be reached: ${isTokenimError(err) ? err.code : (err as Error).message}`, where, err)
  }
  const f = framed(dialed.stream, { maxFrameBytes: MAX_PIN_FRAME })
  let bytes: Uint8Array | null
  try {
    await f.write(frame, { signal })
    bytes = await f.read({ signal })
    await f.close({ signal }).catch(() => {})
  } catch (err) {
    f.abort(err as Error)
    const timedOut = signal.aborted && options.signal?.aborted !== true
    throw replicaError(ReplicaErrorCode.REPLICA_UNREACHABLE,
      timedOut ? `replica ${replicaAddress} did not answer within ${Math.round(timeout / 1000)} s` : `replica ${replicaAddress}: ${(err as Error).message}`, where, err)
  }
  if (bytes === null) throw replicaError(ReplicaErrorCode.REPLICA_PROTOCOL_ERROR, `replica ${replicaAddress} closed the stream without a receipt`, where)
  let receipt: PinReceipt
  try {
    receipt = decodeReceipt(bytes)
  } catch (err) {
    throw replicaError(ReplicaErrorCode.REPLICA_PROTOCOL_ERROR, `replica ${replicaAddress} sent an invalid receipt: ${(err as Error).message}`, where, err)
  }
  const expectedCid = typeof request.cid === 'string' ? request.cid : request.cid.toString()
  if (receipt.owner !== request.owner.toLowerCase() || receipt.version !== request.version || receipt.cid !== expectedCid) {
    throw replicaError(ReplicaErrorCode.REPLICA_PROTOCOL_ERROR, `replica ${replicaAddress} answered for another bundle`, where)
  }
  const peerId = dialed.peer.peerId.toString()
  if (receipt.peerId !== peerId) {
    throw replicaError(ReplicaErrorCode.REPLICA_PROTOCOL_ERROR, `replica ${replicaAddress} signed its receipt with another peer id`, where)
  }
  if (!receipt.ok) {
    const reason = receipt.code ?? 'REPLICA_ERROR'
    throw replicaError(ReplicaErrorCode.REPLICA_REFUSED, `replica ${replicaAddress} refused: ${reason}${receipt.message !== undefined ? ` (${receipt.message})` : ''}`, { ...where, reason, peerId })
  }
  logger('replica %s (%s) pinned version %d (%s)', replicaAddress, peerId, request.version, expectedCid)
  return receipt
}
