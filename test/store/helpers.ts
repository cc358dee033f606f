import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import * as cborg from 'cborg'
import { openStore } from '../../src/store/index.ts'
import type { Store, StoredMessage } from '../../src/store/index.ts'

export const ME = '0x' + 'aa'.repeat(20)

export function peer (n: number): string {
  return '0x' + n.toString(16).padStart(40, '0')
}

let seq = 0
export function msg (over: Partial<StoredMessage> & { peer?: string } = {}): StoredMessage {
  const p = over.peer ?? peer(1)
  const direction = over.direction ?? 'in'
  const m: StoredMessage = {
    id: over.id ?? `m-${String(++seq).padStart(8, '0')}`,
    conversation: p,
    from: direction === 'in' ? p : ME,
    to: direction === 'in' ? ME : p,
    ts: over.ts ?? 1_700_000_000_000 + seq,
    text: over.text ?? `hello ${seq}`,
    direction,
    status: over.status ?? (direction === 'in' ? 'received' : 'queued')
  }
  if (over.attachment !== undefined) m.attachment = over.attachment
  if (over.receivedAt !== undefined) m.receivedAt = over.receivedAt
  return m
}

export async function tempDir (): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-store-'))
  return { dir, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

/** A new store in a new temporary directory: the store, its path, and a cleanup that removes the directory. */
export async function openTempStore (): Promise<{ store: Store, path: string, cleanup: () => Promise<void> }> {
  const t = await tempDir()
  const path = join(t.dir, 'store')
  return { store: await openStore(path), path, cleanup: t.cleanup }
}

/** Rewrite one CBOR value behind the store's back (the store must be closed): fault injection. */
export async function tamper (path: string, sublevel: string, key: string, change: (v: unknown) => unknown): Promise<void> {
  const db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    const sub = db.sublevel<string, Uint8Array>(sublevel, { keyEncoding: 'utf8', valueEncoding: 'view' })
    const old = await sub.get(key)
    const next = change(old === undefined ? undefined : cborg.decode(old))
    if (next === undefined) await sub.del(key)
    else await sub.put(key, cborg.encode(next))
  } finally {
    await db.close()
  }
}

/** Delete one key behind the store's back (the store must be closed): fault injection. */
export async function deleteKey (path: string, sublevel: string, key: string): Promise<void> {
  const db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    await db.sublevel(sublevel, { keyEncoding: 'utf8' }).del(key)
  } finally {
    await db.close()
  }
}

export async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}
