import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createIdentity, loadOrCreateDeviceKey } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import type { TokenimNodeInit } from '../../src/node/index.ts'
import { createP2PNode } from '../../src/p2p/index.ts'
import type { P2PNode } from '../../src/p2p/index.ts'

export const PASSWORD = 'correct horse battery staple'

import { waitFor } from '../support/wait.ts'

export { waitFor }

/** Fast retries so offline/online tests finish quickly. */
export const FAST_MESSAGING = { retryBaseMs: 200, retryMaxMs: 1_000, ackTimeoutMs: 5_000, deliveryTimeoutMs: 10_000 }

/** Temp dirs, a bootstrap peer and TokenimNodes made by a test, all stopped and removed by `cleanup()`. */
export class NodeHarness {
  readonly dirs: string[] = []
  readonly nodes: TokenimNode[] = []
  readonly raw: P2PNode[] = []
  bootstrap?: P2PNode
  private booting?: Promise<P2PNode>

  async dir (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'tokenim-node-'))
    this.dirs.push(dir)
    return dir
  }

  /** A plain p2p node (no identity) on 127.0.0.1. */
  async rawNode (bootstrap: string[] = []): Promise<P2PNode> {
    const dataDir = await this.dir()
    const node = await createP2PNode({ dataDir, privateKey: await loadOrCreateDeviceKey(dataDir), bootstrap })
    this.raw.push(node)
    await node.start()
    return node
  }

  /** The shared bootstrap peer's address (started on first use). */
  async bootstrapAddr (): Promise<string> {
    this.booting ??= this.rawNode()
    this.bootstrap = await this.booting
    return this.bootstrap.multiaddrs()[0].toString()
  }

  /** A new identity (cheap keystore KDF) in a new data dir, and a started node on it. */
  async node (init: Partial<TokenimNodeInit> = {}): Promise<TokenimNode> {
    const dataDir = init.dataDir ?? await this.dir()
    if (init.dataDir === undefined) await createIdentity(dataDir, { password: PASSWORD, scryptN: 1024 })
    const node = await TokenimNode.open({
      password: PASSWORD,
      bootstrap: [await this.bootstrapAddr()],
      messaging: FAST_MESSAGING,
      ...init,
      dataDir
    })
    this.nodes.push(node)
    await node.start()
    return node
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.nodes.splice(0).map(async n => { await n.stop() }))
    await Promise.all(this.raw.splice(0).map(async n => { await n.stop() }))
    this.bootstrap = undefined
    this.booting = undefined
    await Promise.all(this.dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

/** Wait until `from` can resolve `to`'s address (its record is in the DHT or learned). */
export async function waitResolvable (from: TokenimNode, to: TokenimNode): Promise<void> {
  await waitFor(async () => await from.resolve(to.address, { timeoutMs: 3_000 }).then(() => true, () => false), `${from.address} resolving ${to.address}`)
}
