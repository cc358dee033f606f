/**
 * src/node — TokenimNode composes identity, store, p2p (libp2p + Helia, device records, resolver) and
 * messaging, and owns their start/stop order. Later features (backup, restore, attachments, the API)
 * build on the components it exposes (`store`, `p2p`, `resolver`, `messaging`).
 */
export { TokenimNode, createTokenimNode, STORE_DIR } from './node.ts'
export type { TokenimNodeInit, TokenimNodeEvents, TokenimNodeStatus, SendMessageOptions } from './node.ts'
export { NodeError, NodeErrorCode } from './errors.ts'
export { openLocalNode } from './local.ts'
export type { LocalNode, LocalNodeInit } from './local.ts'
export { checkStoreHealth, assertStoreHealthy, storeInconsistentError, explainOpenError, STORE_REPAIR_ADVICE } from './health.ts'
export type { StoreHealth, StoreHealthOptions } from './health.ts'
