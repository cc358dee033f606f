/**
 * A generated chat history with a realistic shape: conversations with made-up peers, alternating
 * directions, text lengths mostly short with a long tail (mean ~160 characters, like real chat),
 * words from a small vocabulary so it compresses like text. Seeded: the same scale gives the same
 * history. Also its export as files (one JSONL file per conversation) for restic.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Wallet } from 'ethers'
import type { StoredMessage } from '../../src/store/index.ts'
import { prng } from '../../test/support/prng.ts'

const WORDS = ('the a to and of I you it is that in for on we was this be have are not with at but so ' +
  'what just can do my me your will if all about get like know there out up one no when time how go ' +
  'see think today tomorrow meeting later yes okay thanks sure great sounds good call back home work ' +
  'coffee lunch dinner weekend train late sorry already maybe tonight morning photo link send file ' +
  'project deadline review draft update price ticket flight hotel birthday party message address ' +
  'remember forgot question answer problem fixed working broken again soon never always love ha lol').split(' ')


function textOf (rand: () => number): string {
  const r = rand()
  const target = r < 0.6 ? 5 + Math.floor(rand() * 55) : r < 0.9 ? 60 + Math.floor(rand() * 240) : 300 + Math.floor(rand() * 1200)
  const parts: string[] = []
  let len = 0
  while (len < target) {
    const w = WORDS[Math.floor(rand() * WORDS.length)]
    parts.push(w)
    len += w.length + 1
  }
  const s = parts.join(' ')
  return s.charAt(0).toUpperCase() + s.slice(1) + (rand() < 0.2 ? '?' : '.')
}

export interface History {
  self: string
  peers: string[]
  /** next message number per conversation */
  counts: number[]
  rand: () => number
  t0: number
}

export function newHistory (self: string, conversations: number, seed = 7): History {
  const rand = prng(seed)
  const peers = Array.from({ length: conversations }, (_, i) => new Wallet('0x' + (i + 1).toString(16).padStart(64, '0')).address.toLowerCase())
  return { self: self.toLowerCase(), peers, counts: peers.map(() => 0), rand, t0: Date.UTC(2025, 0, 1) }
}

/** `n` more messages spread over the conversations numbered in `which` (round-robin, random order). */
export function moreMessages (h: History, n: number, which: number[]): StoredMessage[] {
  const out: StoredMessage[] = []
  for (let k = 0; k < n; k++) {
    const c = which[k % which.length]
    const i = h.counts[c]++
    const peer = h.peers[c]
    const incoming = h.rand() < 0.5
    out.push({
      id: `bench-${c}-${i}`,
      conversation: peer,
      from: incoming ? peer : h.self,
      to: incoming ? h.self : peer,
      ts: h.t0 + i * 60_000 + c,
      text: textOf(h.rand),
      direction: incoming ? 'in' : 'out',
      status: incoming ? 'received' : 'delivered'
    })
  }
  return out
}

/**
 * `count` more messages (as {@link moreMessages} makes them, `batch` at a time: 5,000 unless given) added to
 * `store`, each batch handed to `onBatch` once it is stored (the backup bench also exports it for restic).
 */
export async function addHistory (
  store: { addMessages: (messages: StoredMessage[]) => Promise<unknown> },
  h: History,
  count: number,
  which: number[],
  options: { batch?: number, onBatch?: (messages: StoredMessage[]) => Promise<void> } = {}
): Promise<void> {
  const size = options.batch ?? 5_000
  for (let left = count; left > 0;) {
    const batch = moreMessages(h, Math.min(size, left), which)
    await store.addMessages(batch)
    await options.onBatch?.(batch)
    left -= batch.length
  }
}

/** Write (or append) messages as JSONL, one file per conversation, under `dir`. */
export async function exportJsonl (dir: string, messages: StoredMessage[], append: boolean): Promise<void> {
  await mkdir(dir, { recursive: true })
  const byConv = new Map<string, string[]>()
  for (const m of messages) {
    const line = JSON.stringify({ id: m.id, from: m.from, to: m.to, ts: m.ts, text: m.text, direction: m.direction, status: m.status })
    const list = byConv.get(m.conversation)
    if (list === undefined) byConv.set(m.conversation, [line])
    else list.push(line)
  }
  for (const [conv, lines] of byConv) {
    const file = join(dir, `${conv}.jsonl`)
    const text = lines.join('\n') + '\n'
    if (append) await appendFile(file, text)
    else await writeFile(file, text)
  }
}

/** `n` distinct items of `list`, chosen with `rand` (a partial Fisher–Yates shuffle of a copy). */
export function pick<T> (list: T[], n: number, rand: () => number): T[] {
  const copy = [...list]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const t = copy[i]
    copy[i] = copy[j]
    copy[j] = t
  }
  return copy.slice(0, n)
}
