// Damage a message store from outside the product (what a crash, a bad disk or a stray tool could do):
// straight through LevelDB, bypassing the store's own batches.
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as cborg from 'cborg'
import { Level } from 'level'
import { parseMessageKey } from '../../src/store/store.ts'

type Raw = Level<string, Uint8Array>

async function withRaw<T> (storePath: string, fn: (db: Raw) => Promise<T>): Promise<T> {
  const db = new Level<string, Uint8Array>(storePath, { keyEncoding: 'utf8', valueEncoding: 'view', createIfMissing: false })
  await db.open()
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

function sub (db: Raw, name: string) {
  return db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

/** Set a conversation summary's count to `count` (the rows stay as they are). The store must be closed. */
export async function breakCount (storePath: string, peer: string, count: number): Promise<void> {
  await withRaw(storePath, async db => {
    const conv = sub(db, 'conv')
    const sum = cborg.decode(await conv.get(peer.toLowerCase()) as Uint8Array) as Record<string, unknown>
    await conv.put(peer.toLowerCase(), cborg.encode({ ...sum, count }, { mapSorter: undefined }))
  })
}

/**
 * Delete every message of a conversation: its rows, their id index entries and the summary (as if the
 * conversation had never been stored). Returns the ids removed. The store must be closed.
 */
export async function dropConversation (storePath: string, peer: string): Promise<string[]> {
  const conv = peer.toLowerCase()
  return await withRaw(storePath, async db => {
    const msg = sub(db, 'msg')
    const keys = await msg.keys({ gte: `${conv}!`, lt: `${conv}"` }).all()
    const ids = keys.map(k => parseMessageKey(k)?.id as string)
    const b = db.batch()
    for (const k of keys) b.del(k, { sublevel: msg })
    for (const id of ids) b.del(id, { sublevel: sub(db, 'msg-id') })
    b.del(conv, { sublevel: sub(db, 'conv') })
    await b.write()
    return ids
  })
}

/** Make LevelDB's CURRENT file unreadable (no trailing newline): opening reports corruption. */
export async function corruptCurrent (storePath: string): Promise<void> {
  await writeFile(join(storePath, 'CURRENT'), 'MANIFEST-0000')
}

/** Overwrite the MANIFEST with garbage. */
export async function corruptManifest (storePath: string): Promise<void> {
  for (const f of await readdir(storePath)) if (f.startsWith('MANIFEST-')) await writeFile(join(storePath, f), 'not a leveldb manifest')
}
