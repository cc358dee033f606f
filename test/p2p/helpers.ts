import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOrCreateDeviceKey } from '../../src/identity/index.ts'
import { createP2PNode } from '../../src/p2p/index.ts'
import type { P2PNode, P2PNodeInit } from '../../src/p2p/index.ts'

export { waitFor } from '../support/wait.ts'

/** Temp dirs and nodes made by a test, cleaned up by `cleanup()`. */
export class Harness {
  readonly dirs: string[] = []
  readonly nodes: P2PNode[] = []

  async dir (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'tokenim-p2p-'))
    this.dirs.push(dir)
    return dir
  }

  /** A started node on 127.0.0.1 with a device key kept in its data dir. */
  async node (init: Partial<P2PNodeInit> = {}): Promise<P2PNode> {
    const dataDir = init.dataDir ?? await this.dir()
    const privateKey = init.privateKey ?? await loadOrCreateDeviceKey(dataDir)
    const node = await createP2PNode({ ...init, dataDir, privateKey })
    this.nodes.push(node)
    await node.start()
    return node
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.nodes.splice(0).map(async n => { await n.stop() }))
    await Promise.all(this.dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}
