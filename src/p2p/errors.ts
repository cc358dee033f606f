import { TokenimError } from '../errors.ts'

/**
 * Stable error codes raised by the p2p domain. They are part of the public contract (the CLI prints
 * them), so never rename one.
 */
export const P2PErrorCode = {
  /** no device record could be found for a wallet address (cache, peers, DHT) */
  PEER_NOT_FOUND: 'PEER_NOT_FOUND',
  /** a peer was known but no connection or stream could be opened to it */
  DIAL_FAILED: 'DIAL_FAILED',
  /** an operation needed a started node */
  P2P_NOT_STARTED: 'P2P_NOT_STARTED',
  /** the node could not be started (listen address in use, data dir locked, …) */
  P2P_START_FAILED: 'P2P_START_FAILED',
  /** publishing our device record to the DHT reached no peer */
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  /** a peer answered the record exchange with something that is not a valid device record */
  INVALID_PEER_RECORD: 'INVALID_PEER_RECORD',
  /** a frame on a tokenim stream was larger than the protocol allows */
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  /** a peer broke a tokenim stream protocol (truncated frame, unexpected answer) */
  PROTOCOL_VIOLATION: 'PROTOCOL_VIOLATION',
  /** a bad argument to a p2p function (unparsable multiaddr, malformed address, …) */
  INVALID_P2P_ARGUMENT: 'INVALID_P2P_ARGUMENT',
  /** a block of a DAG being fetched was not delivered by any peer in time */
  BLOCK_UNAVAILABLE: 'BLOCK_UNAVAILABLE',
  /** a root asked to be pinned is pinned already */
  ALREADY_PINNED: 'ALREADY_PINNED',
  /** a root asked to be unpinned is not pinned */
  NOT_PINNED: 'NOT_PINNED'
} as const

export type P2PErrorCode = typeof P2PErrorCode[keyof typeof P2PErrorCode]

/** An error raised on purpose by src/p2p. `code` is one of {@link P2PErrorCode}. */
export class P2PError extends TokenimError {
  constructor (code: P2PErrorCode, message: string, info: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, info, options)
    this.name = 'P2PError'
  }
}

export function peerNotFound (address: string, options?: { cause?: unknown }): P2PError {
  return new P2PError(P2PErrorCode.PEER_NOT_FOUND, `no device record found for ${address}`, { address }, options)
}

export function notStarted (what = 'p2p node'): P2PError {
  return new P2PError(P2PErrorCode.P2P_NOT_STARTED, `${what} is not started`)
}
