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
import type { LevelBlockstore } from 'blockstore-level'
import {
  addContact, attachmentMaxBytes, callApi, listContacts, listMessages, lockedBy, messagesQueryString, offlineStatus, saveAttachmentOp,
  sendFileOp, sendMessage, ApiErrorCode, apiError
} from '../api/index.ts'
import type {
  ApiEndpoint, ContactView, IdView, MessagesQuery, MessageView, SavedAttachmentView, SendFileView, StatusView, TransferProgress
} from '../api/index.ts'
import { isTokenimError, TokenimError } from '../errors.ts'
import { readIdentityPublic } from '../identity/index.ts'
import type { TokenimNode } from '../node/index.ts'
import { openStore } from '../store/index.ts'
import { exists, writeFileAtomic } from '../util/fs.ts'
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
  /** send a file (absolute path) as an attachment; `onProgress` in process and through the daemon (streamed) */
  sendFile: (to: string, path: string, caption: string | undefined, onProgress?: (p: TransferProgress) => void) => Promise<SendFileView>
  /** write a message's attachment to `out` (absolute path); `onProgress` as for sendFile */
  saveAttachment: (id: string, out: string, force: boolean, onProgress?: (p: TransferProgress) => void) => Promise<SavedAttachmentView>
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
  // the long operations always take the streamed form: progress for the bar, and keep-alive lines
  // so that a transfer of many minutes is not cut by an idle timeout
  const streamed = async <T>(path: string, body: unknown, onProgress: (p: TransferProgress) => void = () => {}): Promise<T> =>
    await callApi<T, TransferProgress>(endpoint, 'POST', path, body, { signal, onProgress })
  return {
    daemon: true,
    id: async () => await get('/v1/id'),
    send: async (to, text) => await post('/v1/send', { to, text }),
    messages: async (q) => await get(`/v1/messages${messagesQueryString(q)}`),
    contacts: async () => await get('/v1/contacts'),
    addContact: async (address, name) => await post('/v1/contacts', { address, name }),
    status: async () => await get('/v1/status'),
    sendFile: async (to, path, caption, onProgress) => await streamed('/v1/attachments', { to, path, ...(caption !== undefined ? { caption } : {}) }, onProgress),
    saveAttachment: async (id, out, force, onProgress) => await streamed('/v1/attachments/save', { id, out, force }, onProgress)
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

  async sendFile (to: string, path: string, caption: string | undefined, onProgress?: (p: TransferProgress) => void): Promise<SendFileView> {
    // size limit and readability before the password prompt and the network
    await readIdentityPublic(this.ctx.opts.dataDir)
    const { checkAttachmentFile } = await import('../messaging/index.ts')
    await checkAttachmentFile(path, await attachmentMaxBytes(this.ctx.opts.dataDir))
    const node = await this.startNode()
    return await sendFileOp(node, to, path, { caption, signal: this.ctx.signal, onProgress })
  }

  /**
   * From this device's blockstore when the attachment is here (no password, no network); otherwise a
   * node is started (password) and fetches it from the other party or DHT providers.
   */
  async saveAttachment (id: string, out: string, force: boolean, onProgress?: (p: TransferProgress) => void): Promise<SavedAttachmentView> {
    if (this.node === undefined) {
      const store = await this.openStore()
      const { attachmentOf, readAttachment, AttachmentErrorCode } = await import('../messaging/index.ts')
      const ref = attachmentOf(await store.getMessage(id), id)
      const blocksDir = join(this.ctx.opts.dataDir, 'blocks')
      if (await exists(blocksDir)) {
        const { LevelBlockstore } = await import('blockstore-level')
        const blockstore = new LevelBlockstore(blocksDir)
        try {
          await blockstore.open()
          await writeFileAtomic(out, readAttachment(ref, { blockstore, offline: true, signal: this.ctx.signal, onProgress }), { exclusive: !force })
          return { id, file: out, name: ref.name, mime: ref.mime, size: ref.size, sha256: ref.sha256 }
        } catch (err) {
          if (!isTokenimError(err, AttachmentErrorCode.ATTACHMENT_UNAVAILABLE)) throw err
        } finally {
          await blockstore.close().catch(() => {})
        }
      }
      if (!force && await exists(out)) throw new TokenimError('FILE_EXISTS', `refusing to overwrite ${out}`, { path: out })
    }
    const node = await this.startNode()
    return await saveAttachmentOp(node, id, out, { force, signal: this.ctx.signal, onProgress })
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

/**
 * This data dir's own blockstore (DATA_DIR/blocks), opened, when it exists and no daemon holds it
 * (LevelDB lock); undefined otherwise. The caller closes it.
 */
export async function openLocalBlocks (dataDir: string): Promise<LevelBlockstore | undefined> {
  const dir = join(dataDir, 'blocks')
  if (!await exists(dir)) return undefined
  const { LevelBlockstore } = await import('blockstore-level')
  const blockstore = new LevelBlockstore(dir)
  try {
    await blockstore.open()
    return blockstore
  } catch {
    return undefined // unreadable or locked
  }
}
