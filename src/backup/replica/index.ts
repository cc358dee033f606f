/**
 * Replicas: nodes that keep other owners' backups (`daemon --replica-for ADDR`), and the client that
 * asks them to (`backup` with `--replica ADDR` / config `replicas`). Protocol `/tokenim/pin/1.0.0`.
 *
 * @example
 * ```ts
 * // on the replica (a running TokenimNode, a read-only RegistryClient)
 * const service = await startReplicaService(node, { owners: ['0xabc…'], chain, keep: 3 })
 * // on the owner, after anchoring version 7
 * const receipt = await requestReplicaPin(node, '0xreplica…', { owner, version: 7, cid }, { timeout: 60_000 })
 * await service.stop()
 * ```
 */
export { ReplicaReason, ReplicaErrorCode } from './errors.ts'
export { PIN_PROTOCOL, MAX_PIN_FRAME, encodePinRequest, decodePinRequest, encodeReceipt, decodeReceipt } from './protocol.ts'
export type { PinRequest, PinReceipt } from './protocol.ts'
export { requestReplicaPin, DEFAULT_PIN_TIMEOUT_MS } from './client.ts'
export type { ReplicaRequester, RequestPinOptions } from './client.ts'
export { startReplicaService, DEFAULT_REPLICA_KEEP, DEFAULT_REPLICA_QUOTA_BYTES, DEFAULT_REPLICA_FETCH_TIMEOUT_MS } from './service.ts'
export type { ReplicaService, ReplicaServiceOptions, ReplicaHost, ReplicaChain, KeptVersion } from './service.ts'
