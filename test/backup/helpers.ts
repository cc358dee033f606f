import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelBlockstore } from 'blockstore-level'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 as sha256hasher } from 'multiformats/hashes/sha2'
import { openStore } from '../../src/store/index.ts'
import type { Store, StoredMessage } from '../../src/store/index.ts'
import { prng } from '../support/prng.ts'

export { prng }

export const OWNER = '0x' + 'a1'.repeat(20)
export const KEY = new Uint8Array(32).fill(0x42)
export const OTHER_KEY = new Uint8Array(32).fill(0x43)

export function peer (n: number): string {
  return '0x' + (0xb000 + n).toString(16).padStart(40, '0')
}


const WORDS = ('the a to and you i it is that of in for on me my we be have this do not are with at so ' +
  'what was just but can like if know get your go all no yes ok okay lol haha good see now will how about ' +
  'when there time tomorrow today tonight meeting call later think want need sure thanks thank great ' +
  'dinner lunch coffee train home work office weekend monday friday photo send sent message phone back ' +
  'really maybe right well nice love sorry late soon here where who why because going come let one two ' +
  'project deadline review code bug fix deploy server keys wallet backup restore chain block node peer').split(' ')

export function sentence (rnd: () => number): string {
  const n = 2 + Math.floor(rnd() * rnd() * 30)
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rnd() * rnd() * WORDS.length)])
  if (rnd() < 0.1) out.push(String(Math.floor(rnd() * 10000)))
  return out.join(' ') + (rnd() < 0.3 ? '?' : rnd() < 0.5 ? '.' : '')
}

function hex (rnd: () => number, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += Math.floor(rnd() * 16).toString(16)
  return s
}

export async function attachmentCidFor (bytes: Uint8Array): Promise<CID> {
  return CID.createV1(raw.code, await sha256hasher.digest(bytes))
}

export interface HistoryOptions {
  conversations: number
  messages: number
  seed?: number
  /** start time */
  start?: number
  /** fraction of messages with an attachment */
  attachments?: number
}

/**
 * A deterministic history: conversation sizes skewed (a few large conversations, many small ones), text
 * drawn from a small vocabulary (compresses like chat), UUIDv7-like ids, increasing time.
 */
export function makeHistory (o: HistoryOptions): StoredMessage[] {
  const rnd = prng(o.seed ?? 1)
  const weights = Array.from({ length: o.conversations }, (_, i) => 1 / (i + 1))
  const sum = weights.reduce((a, b) => a + b, 0)
  const out: StoredMessage[] = []
  let t = o.start ?? 1_700_000_000_000
  for (let i = 0; i < o.messages; i++) {
    let x = rnd() * sum
    let c = 0
    while (c < o.conversations - 1 && x > weights[c]) { x -= weights[c]; c++ }
    t += 1 + Math.floor(rnd() * 120_000)
    out.push(message(rnd, peer(c), t, o.attachments ?? 0))
  }
  return out
}

export function message (rnd: () => number, p: string, ts: number, attachments = 0): StoredMessage {
  const direction = rnd() < 0.5 ? 'in' : 'out'
  const m: StoredMessage = {
    id: `${ts.toString(16).padStart(12, '0')}-7${hex(rnd, 3)}-${hex(rnd, 16)}`,
    conversation: p,
    from: direction === 'in' ? p : OWNER,
    to: direction === 'in' ? OWNER : p,
    ts,
    text: sentence(rnd),
    direction,
    status: direction === 'in' ? 'received' : 'delivered'
  }
  if (direction === 'in') m.receivedAt = ts + Math.floor(rnd() * 2000)
  if (rnd() < attachments) {
    m.attachment = { cid: 'placeholder', key: hex(rnd, 64), name: `photo-${hex(rnd, 4)}.jpg`, mime: 'image/jpeg', size: 1000 + Math.floor(rnd() * 5000), sha256: hex(rnd, 64) }
  }
  return m
}

export interface Env {
  dir: string
  store: Store
  blockstore: LevelBlockstore
  cleanup: () => Promise<void>
}

export async function makeEnv (): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-backup-'))
  const store = await openStore(join(dir, 'store'))
  const blockstore = new LevelBlockstore(join(dir, 'blocks'))
  await blockstore.open()
  return {
    dir,
    store,
    blockstore,
    cleanup: async () => {
      await store.close().catch(() => {})
      await blockstore.close().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Give each attachment a real (raw) block in the blockstore and point the message at it. */
export async function materializeAttachments (msgs: StoredMessage[], bs: LevelBlockstore): Promise<number> {
  let n = 0
  for (const m of msgs) {
    if (m.attachment === undefined) continue
    const bytes = new TextEncoder().encode(`encrypted attachment of ${m.id}`)
    const cid = await attachmentCidFor(bytes)
    await bs.put(cid, bytes)
    m.attachment.cid = cid.toString()
    n++
  }
  return n
}

export async function collect<T> (it: AsyncIterable<T> | Iterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** A copy of the store's messages in its own streaming order. */
export async function storeMessages (store: Store): Promise<StoredMessage[]> {
  return await collect(store.allMessages())
}
