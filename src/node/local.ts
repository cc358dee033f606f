/**
 * A data dir's node without network, for one-shot commands that need only this device's stores: the
 * unlocked identity, the message store (checked as a TokenimNode checks it at start) and the p2p node's
 * level stores with Helia's blockstore and pins, but no libp2p — nothing listens, dials or publishes,
 * and the network packages are not loaded (src/p2p `network: false`). `tokenim backup` uses it when no
 * replica is to be asked: a backup is built, pinned and anchored on this device alone.
 */
import { join } from 'node:path'
import { openIdentity } from '../identity/index.ts'
import type { OpenedIdentity } from '../identity/index.ts'
import { createP2PNode } from '../p2p/node.ts'
import type { P2PNode } from '../p2p/node.ts'
import { openStore } from '../store/index.ts'
import type { Store } from '../store/index.ts'
import { NodeError, NodeErrorCode } from './errors.ts'
import { assertStoreHealthy, explainOpenError } from './health.ts'
import type { StoreHealthOptions } from './health.ts'

/** the store's directory in a data dir (src/node STORE_DIR) */
const STORE_DIR = 'store'

export interface LocalNodeInit {
  dataDir: string
  /** keystore password (or give `identity`) */
  password?: string
  identity?: OpenedIdentity
  /** the store check at open, as TokenimNodeInit.storeCheck (false: none) */
  storeCheck?: StoreHealthOptions | false
}

/** What a backup job needs of a node (src/backup/job BackupNodeLike), opened without network. */
export interface LocalNode {
  readonly dataDir: string
  readonly address: string
  readonly peerId: string
  readonly identity: OpenedIdentity
  readonly store: Store
  readonly p2p: P2PNode
  /** always undefined: no peer can be reached */
  readonly resolver: undefined
  /** close the stores (idempotent) */
  stop: () => Promise<void>
}

/** Open `dataDir`'s identity, store and local block and pin stores, without network. */
export async function openLocalNode (init: LocalNodeInit): Promise<LocalNode> {
  let identity = init.identity
  if (identity === undefined) {
    if (typeof init.password !== 'string') throw new NodeError(NodeErrorCode.INVALID_NODE_ARGUMENT, 'a password (or an opened identity) is needed to open the node')
    identity = await openIdentity(init.dataDir, init.password)
  }
  const store = await openStore(join(init.dataDir, STORE_DIR)).catch((err: unknown) => { throw explainOpenError(err) })
  let p2p: P2PNode | undefined
  try {
    if (init.storeCheck !== false) await assertStoreHealthy(store, init.storeCheck)
    p2p = await createP2PNode({ privateKey: identity.deviceKey, dataDir: init.dataDir, network: false })
    await p2p.start()
  } catch (err) {
    await p2p?.stop().catch(() => {})
    await store.close().catch(() => {})
    throw err
  }
  const opened = p2p
  let stopping: Promise<void> | undefined
  return {
    dataDir: init.dataDir,
    address: identity.address,
    peerId: identity.peerId,
    identity,
    store,
    p2p: opened,
    resolver: undefined,
    stop: async () => {
      stopping ??= (async () => {
        const errors: unknown[] = []
        await opened.stop().catch((err: unknown) => { errors.push(err) })
        await store.close().catch((err: unknown) => { errors.push(err) })
        if (errors.length > 0) throw errors[0]
      })()
      await stopping
    }
  }
}
