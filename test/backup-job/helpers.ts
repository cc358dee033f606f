import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RegistryClient, startDevnet } from '../../src/chain/index.ts'
import type { ChainProfile, Devnet } from '../../src/chain/index.ts'
import { createIdentity } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import type { TokenimNodeInit } from '../../src/node/index.ts'
import { makeHistory } from '../backup/helpers.ts'
import { waitFor as waitUntil } from '../support/wait.ts'

export const PASSWORD = 'correct horse battery staple'
export const CHEAP_SCRYPT = { N: 1024, r: 8, p: 1 }

/** test/support/wait.ts `waitFor` with a 20 s default deadline. */
export async function waitFor<T> (check: () => T | Promise<T>, what: string, timeoutMs = 20_000, intervalMs = 50): Promise<NonNullable<T>> {
  return await waitUntil(check, what, timeoutMs, intervalMs)
}

/** Nodes, chain clients, devnet and temp dirs of a test file; `cleanup()` stops and removes them all. */
export class Harness {
  readonly dirs: string[] = []
  readonly nodes: TokenimNode[] = []
  readonly clients: RegistryClient[] = []
  devnet?: Devnet

  async dir (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'tokenim-bjob-'))
    this.dirs.push(dir)
    return dir
  }

  async chain (): Promise<Devnet> {
    this.devnet ??= await startDevnet()
    return this.devnet
  }

  client (profile: ChainProfile, node?: TokenimNode): RegistryClient {
    const c = new RegistryClient(profile, node?.identity.wallet, { readTimeoutMs: 5_000, sendTimeoutMs: 20_000 })
    this.clients.push(c)
    return c
  }

  async node (init: Partial<TokenimNodeInit> = {}): Promise<TokenimNode> {
    const dataDir = init.dataDir ?? await this.dir()
    if (init.dataDir === undefined) await createIdentity(dataDir, { password: PASSWORD, scryptN: 1024 })
    const node = await TokenimNode.open({ password: PASSWORD, ...init, dataDir })
    this.nodes.push(node)
    await node.start()
    return node
  }

  async stopNodes (): Promise<void> {
    await Promise.all(this.nodes.splice(0).map(async n => { await n.stop() }))
  }

  async cleanup (): Promise<void> {
    for (const c of this.clients.splice(0)) c.close()
    await this.stopNodes()
    await this.devnet?.stop()
    this.devnet = undefined
    await Promise.all(this.dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

/** Put a deterministic history of `messages` messages into the node's store. */
export async function fill (node: TokenimNode, messages: number, seed = 1, start?: number): Promise<void> {
  await node.store.addMessages(makeHistory({ conversations: 5, messages, seed, ...(start !== undefined ? { start } : {}) }))
}

/** A profile pointing at a closed port (chain down). */
export function deadProfile (profile: ChainProfile): ChainProfile {
  return { ...profile, rpc: 'http://127.0.0.1:9' }
}
