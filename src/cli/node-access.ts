/**
 * How a command reaches the node of its data dir: through the running daemon (api.json → control
 * API) when there is one, else in process. Either way the command gets the same operations with
 * the same result shapes (src/api/ops.ts does the work in both cases).
 *
 * In process:
 *  - `send` unlocks the identity and starts a TokenimNode for the command (listen/bootstrap from
 *    the environment and config.json), makes the first delivery attempt (bounded), and stops it;
 *    an undelivered message stays in the outbox and goes out with the next daemon run;
 *  - reads (`messages`, `contacts`, `status`) only open the store: no password, no network.
 */
import { join } from 'node:path'
import {
  addContact, callApi, listContacts, listMessages, lockedBy, messagesQueryString, offlineStatus, sendMessage, ApiErrorCode, apiError
} from '../api/index.ts'
import type { ApiEndpoint, ContactView, IdView, MessagesQuery, MessageView, StatusView } from '../api/index.ts'
import { readIdentityPublic } from '../identity/index.ts'
import type { TokenimNode } from '../node/index.ts'
import { openStore } from '../store/index.ts'
import type { Store } from '../store/index.ts'
import type { CommandContext } from './command.ts'
import { readApiInfo } from './daemon-client.ts'
import { resolveNodeSettings } from './node-config.ts'
import { readSecret } from './password.ts'

export interface NodeAccess {
  /** true when the daemon does the work */
  readonly daemon: boolean
  id: () => Promise<IdView>
  send: (to: string, text: string) => Promise<{ id: string, status: 'delivered' | 'queued' }>
  messages: (q: MessagesQuery) => Promise<MessageView[]>
  contacts: () => Promise<ContactView[]>
  addContact: (address: string, name: string) => Promise<ContactView>
  status: () => Promise<StatusView>
}

/** Same as STORE_DIR of src/node (kept here so reads need not load the node and libp2p). */
export const STORE_DIR = 'store'

/** How long a command waits for a daemon that holds the lock but has not written api.json yet. */
const DAEMON_STARTING_WAIT_MS = 15_000

/** Run `fn` with access to the node of ctx's data dir; everything opened for it is closed after. */
export async function withNodeAccess<T> (ctx: CommandContext, fn: (access: NodeAccess) => Promise<T>): Promise<T> {
  const endpoint = await daemonEndpoint(ctx)
  if (endpoint !== undefined) return await fn(daemonAccess(endpoint, ctx.signal))
  const local = new LocalAccess(ctx)
  try {
    return await fn(local)
  } finally {
    await local.close()
  }
}

/** The daemon's endpoint; waits a little for a daemon that is still starting. */
async function daemonEndpoint (ctx: CommandContext): Promise<ApiEndpoint | undefined> {
  const deadline = Date.now() + DAEMON_STARTING_WAIT_MS
  for (;;) {
    const info = await readApiInfo(ctx.opts.dataDir)
    if (info !== undefined) return info
    const pid = await lockedBy(ctx.opts.dataDir)
    if (pid === undefined || pid === process.pid) return undefined
    if (Date.now() > deadline) {
      throw apiError(ApiErrorCode.DAEMON_UNREACHABLE, `the daemon (pid ${pid}) holds ${ctx.opts.dataDir} but is not ready; wait for it or stop it`, { pid })
    }
    ctx.signal.throwIfAborted()
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

function daemonAccess (endpoint: ApiEndpoint, signal: AbortSignal): NodeAccess {
  const get = async <T>(path: string): Promise<T> => await callApi<T>(endpoint, 'GET', path, undefined, { signal })
  const post = async <T>(path: string, body: unknown): Promise<T> => await callApi<T>(endpoint, 'POST', path, body, { signal })
  return {
    daemon: true,
    id: async () => await get('/v1/id'),
    send: async (to, text) => await post('/v1/send', { to, text }),
    messages: async (q) => await get(`/v1/messages${messagesQueryString(q)}`),
    contacts: async () => await get('/v1/contacts'),
    addContact: async (address, name) => await post('/v1/contacts', { address, name }),
    status: async () => await get('/v1/status')
  }
}

class LocalAccess implements NodeAccess {
  readonly daemon = false
  private readonly ctx: CommandContext
  private store?: Store
  private node?: TokenimNode

  constructor (ctx: CommandContext) {
    this.ctx = ctx
  }

  async id (): Promise<IdView> {
    const pub = await readIdentityPublic(this.ctx.opts.dataDir)
    return { address: pub.address, peerId: pub.peerId, multiaddrs: [] }
  }

  async send (to: string, text: string): Promise<{ id: string, status: 'delivered' | 'queued' }> {
    const node = await this.startNode()
    return await sendMessage(node, to, text, { signal: this.ctx.signal })
  }

  async messages (q: MessagesQuery): Promise<MessageView[]> {
    return await listMessages(await this.openStore(), q)
  }

  async contacts (): Promise<ContactView[]> {
    return await listContacts(await this.openStore())
  }

  async addContact (address: string, name: string): Promise<ContactView> {
    return await addContact(await this.openStore(), address, name)
  }

  async status (): Promise<StatusView> {
    const pub = await readIdentityPublic(this.ctx.opts.dataDir)
    return await offlineStatus(pub, await this.openStore())
  }

  async close (): Promise<void> {
    const node = this.node
    const store = this.store
    this.node = undefined
    this.store = undefined
    await node?.stop()
    await store?.close()
  }

  private async openStore (): Promise<Store> {
    if (this.node !== undefined) return this.node.store
    if (this.store === undefined) {
      await readIdentityPublic(this.ctx.opts.dataDir) // NO_IDENTITY before creating anything
      this.store = await openStore(join(this.ctx.opts.dataDir, STORE_DIR))
    }
    return this.store
  }

  private async startNode (): Promise<TokenimNode> {
    if (this.node !== undefined) return this.node
    if (this.store !== undefined) {
      await this.store.close()
      this.store = undefined
    }
    const { dataDir } = this.ctx.opts
    await readIdentityPublic(dataDir)
    const settings = await resolveNodeSettings(dataDir)
    const password = await readSecret(this.ctx.opts, { purpose: 'keystore password' })
    this.ctx.signal.throwIfAborted()
    // loaded on demand: libp2p and Helia take a while to load, and reads do not need them
    const { createTokenimNode } = await import('../node/index.ts')
    const node = await createTokenimNode({ dataDir, password, listen: settings.listen, bootstrap: settings.bootstrap, mdns: settings.mdns })
    this.ctx.signal.throwIfAborted()
    await node.start()
    this.node = node
    return node
  }
}
