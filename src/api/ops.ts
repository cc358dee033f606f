/**
 * The operations behind the control API, written once so that a command gives the same result
 * whether it ran through the daemon (routes.ts) or on an in-process node / store (src/cli/node-access.ts).
 * Inputs are validated already (validate.ts); results are plain JSON (the `--json` contract).
 */
import type { BackupStatusView } from '../backup/job/health.ts'
import { loadConfig } from '../config/index.ts'
import type { TokenimNode } from '../node/index.ts'
import type { AttachmentRef, BackupRecord, Contact, MessageStatus, Store, StoredMessage } from '../store/index.ts'
import { displayAddress } from './validate.ts'

/** One message as `messages --json` prints it (addresses EIP-55 checksummed). */
export interface MessageView {
  id: string
  from: string
  to: string
  /** the sender's clock, ms since the epoch */
  ts: number
  text: string
  status: MessageStatus
  attachment?: AttachmentView
}

/** An attachment as the API and `--json` show it: never its content key (the key stays in the store). */
export type AttachmentView = Omit<AttachmentRef, 'key'>

export interface ContactView {
  address: string
  name?: string
  addedAt: number
}

export interface IdView {
  address: string
  peerId: string
  multiaddrs: string[]
}

export interface BackupSummary {
  version: number
  cid: string
  digest: string
  createdAt: number
  anchored: boolean
  txHash?: string
}

export interface StatusView {
  address: string
  peerId: string
  /** true when a daemon runs this data dir */
  running: boolean
  /** connected peers */
  peers: number
  /** DHT routing table size */
  routingTable: number
  /** messages waiting for delivery */
  outbox: number
  multiaddrs: string[]
  lastBackup?: BackupSummary
  /** backup health: last success, pending versions and problems, the scheduler's state (src/backup/job/health.ts) */
  backup?: BackupStatusView
}

/**
 * Backup health from the store. Loaded on demand from the light health module (not the backup job's
 * index, which pulls in the chain and p2p code and costs seconds of startup for every command).
 */
async function backupStatusOf (store: Store): Promise<BackupStatusView | undefined> {
  try {
    const { backupStatus } = await import('../backup/job/health.ts')
    return await backupStatus(store)
  } catch {
    return undefined
  }
}

export interface MessagesQuery {
  /** one conversation (the peer's address), else all */
  peer?: string
  since?: number
  until?: number
  /** the newest `limit` messages (still listed oldest first) */
  limit?: number
}

/** How long `send` waits for the first delivery attempt before answering `queued`. */
export const SEND_WAIT_MS = 15_000

export function messageView (m: StoredMessage): MessageView {
  return {
    id: m.id,
    from: displayAddress(m.from),
    to: displayAddress(m.to),
    ts: m.ts,
    text: m.text,
    status: m.status,
    ...(m.attachment !== undefined ? { attachment: attachmentView(m.attachment) } : {})
  }
}

function attachmentView (a: AttachmentRef): AttachmentView {
  return { cid: a.cid, name: a.name, mime: a.mime, size: a.size, sha256: a.sha256 }
}

export function contactView (c: Contact): ContactView {
  return { address: displayAddress(c.address), ...(c.name !== undefined ? { name: c.name } : {}), addedAt: c.addedAt }
}

export function backupSummary (b: BackupRecord): BackupSummary {
  return {
    version: b.version,
    cid: b.cid,
    digest: b.digest,
    createdAt: b.createdAt,
    anchored: b.anchored,
    ...(b.txHash !== undefined ? { txHash: b.txHash } : {})
  }
}

const byTime = (a: StoredMessage, b: StoredMessage): number => a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** Messages oldest first by (ts, id); with a limit, the newest `limit` of them. */
export async function listMessages (store: Store, q: MessagesQuery): Promise<MessageView[]> {
  const peers = q.peer !== undefined
    ? [q.peer.toLowerCase()]
    : (await store.conversations()).map(c => c.peer)
  const found: StoredMessage[] = []
  for (const peer of peers) {
    const query = { since: q.since, until: q.until, ...(q.limit !== undefined ? { limit: q.limit, reverse: true } : {}) }
    for await (const m of store.messages(peer, query)) found.push(m)
  }
  found.sort(byTime)
  const picked = q.limit !== undefined ? found.slice(Math.max(0, found.length - q.limit)) : found
  return picked.map(messageView)
}

export async function listContacts (store: Store): Promise<ContactView[]> {
  return (await store.contacts()).map(contactView)
}

export async function addContact (store: Store, address: string, name: string): Promise<ContactView> {
  return contactView(await store.setContact(address.toLowerCase(), name))
}

/** Send, waiting at most `waitMs` for the first delivery attempt (then `queued`: it stays in the outbox). */
export async function sendMessage (node: TokenimNode, to: string, text: string, { signal, waitMs = SEND_WAIT_MS }: { signal?: AbortSignal, waitMs?: number } = {}): Promise<{ id: string, status: 'delivered' | 'queued' }> {
  const wait = AbortSignal.timeout(waitMs)
  const result = await node.send(to, text, { signal: signal !== undefined ? AbortSignal.any([signal, wait]) : wait })
  return { id: result.id, status: result.status }
}

export function idView (node: TokenimNode): IdView {
  return { address: node.address, peerId: node.peerId, multiaddrs: node.multiaddrs() }
}

/** A status with what the store knows added: the last backup and the backup health. */
async function withBackupStatus (base: Omit<StatusView, 'lastBackup' | 'backup'>, store: Store): Promise<StatusView> {
  const last = await store.latestBackup()
  const backup = await backupStatusOf(store)
  return {
    ...base,
    ...(last !== undefined ? { lastBackup: backupSummary(last) } : {}),
    ...(backup !== undefined ? { backup } : {})
  }
}

/** Status of a running node (the daemon). */
export async function nodeStatus (node: TokenimNode): Promise<StatusView> {
  const s = await node.status()
  return await withBackupStatus({
    address: s.address,
    peerId: s.peerId,
    running: s.running,
    peers: s.peers,
    routingTable: s.routingTable,
    outbox: s.outbox,
    multiaddrs: s.multiaddrs
  }, node.store)
}

/** Status from the store alone, when no daemon runs. */
export async function offlineStatus (identity: { address: string, peerId: string }, store: Store): Promise<StatusView> {
  return await withBackupStatus({
    address: identity.address,
    peerId: identity.peerId,
    running: false,
    peers: 0,
    routingTable: 0,
    outbox: await store.outboxSize(),
    multiaddrs: []
  }, store)
}

// ---------------------------------------------------------------------------------------------
// attachments

/** Default attachment size limit (config.json `attachmentMaxBytes` overrides it). */
export const DEFAULT_ATTACHMENT_MAX_BYTES = 100 * 1024 * 1024

/** `send --file` as `--json` prints it: the message and what it carries (not its key). */
export interface SendFileView {
  id: string
  status: 'delivered' | 'queued'
  attachment: AttachmentView
}

/** `attachment get` as `--json` prints it. */
export interface SavedAttachmentView {
  id: string
  file: string
  name: string
  mime: string
  size: number
  sha256: string
}

export interface TransferProgress {
  phase: 'encrypt' | 'fetch'
  bytes: number
  total: number
}

/** The attachment size limit of a data dir: config.json `attachmentMaxBytes`, else 100 MiB. */
export async function attachmentMaxBytes (dataDir: string): Promise<number> {
  return (await loadConfig(dataDir)).attachmentMaxBytes ?? DEFAULT_ATTACHMENT_MAX_BYTES
}

/**
 * Send a file (absolute path) as an attachment, waiting at most `waitMs` for the first delivery attempt.
 * FILE_TOO_LARGE (over the data dir's limit), FILE_NOT_FOUND, FILE_NOT_READABLE before anything is sent.
 */
export async function sendFileOp (node: TokenimNode, to: string, path: string, { caption, signal, waitMs = SEND_WAIT_MS, onProgress }: { caption?: string, signal?: AbortSignal, waitMs?: number, onProgress?: (p: TransferProgress) => void } = {}): Promise<SendFileView> {
  const maxBytes = await attachmentMaxBytes(node.dataDir)
  let waitSignal: AbortSignal | undefined
  const r = await node.sendFile(to, path, {
    caption,
    maxBytes,
    signal,
    onProgress,
    // the wait for delivery starts once the file is stored, not while it is encrypted
    get waitSignal () { waitSignal ??= AbortSignal.timeout(waitMs); return waitSignal }
  })
  return { id: r.id, status: r.status, attachment: attachmentView(r.attachment) }
}

/** Write a message's attachment to `out` (absolute path), fetching it first when it is not here. */
export async function saveAttachmentOp (node: TokenimNode, id: string, out: string, { force, signal, onProgress }: { force?: boolean, signal?: AbortSignal, onProgress?: (p: TransferProgress) => void } = {}): Promise<SavedAttachmentView> {
  const r = await node.saveAttachment(id, out, { force, signal, onProgress })
  return { id, file: r.file, name: r.name, mime: r.mime, size: r.size, sha256: r.sha256 }
}
