/**
 * The store marker: a small file NEXT TO the store (`<dataDir>/store.json` for `<dataDir>/store`) that
 * remembers which store this data dir had and how many messages it held. LevelDB drops the records of a
 * damaged `.log` file without an error, and a store whose files are gone is recreated empty: both look
 * like a healthy new store. The marker makes that loss visible at start (src/node/health.ts).
 *
 * The store keeps the same id in its meta (`storeId`). The marker is rewritten (atomically) on a clean
 * close and at most once per interval while messages are added, always AFTER a synced LevelDB write, so
 * the count it records is durable: a store that holds fewer messages than its marker lost them (messages
 * are never deleted). A store whose check failed never rewrites the marker (the evidence is kept) until
 * it holds the recorded count again or `Store.resetMarker()` (tokenim repair) accepts its state.
 */
import { readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { writeFileAtomic } from '../util/fs.ts'

export const MARKER_VERSION = 1

export interface StoreMarker {
  version: number
  /** the store's id (its meta `storeId`) */
  storeId: string
  /** messages the store held when the marker was written (durable: written after a synced write) */
  messages: number
  /** when (ms since the epoch) */
  updatedAt: number
}

/** What the marker says about the open store (Store.markerStatus()). */
export interface StoreMarkerStatus {
  /** the marker file */
  path: string
  /** this store's id */
  storeId: string
  /** messages in the store now */
  messages: number
  /** the marker as read at open (or last written); undefined: none yet (a new data dir) */
  marker?: StoreMarker
  /** the marker names another store (this one was recreated, or its meta was lost) */
  idChanged: boolean
  /** messages the marker recorded that the store does not have (0 when none or no marker) */
  lost: number
}

/** `<dir>/store` → `<dir>/store.json` */
export function markerPathFor (storePath: string): string {
  return join(dirname(storePath), `${basename(storePath)}.json`)
}

/** The marker, or undefined when there is none or it cannot be read (a damaged marker proves nothing). */
export async function readMarker (path: string): Promise<StoreMarker | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return undefined
  }
  try {
    const m = JSON.parse(text) as Partial<StoreMarker>
    if (typeof m.storeId !== 'string' || typeof m.messages !== 'number' || !Number.isSafeInteger(m.messages) || m.messages < 0) return undefined
    return { version: m.version ?? MARKER_VERSION, storeId: m.storeId, messages: m.messages, updatedAt: typeof m.updatedAt === 'number' ? m.updatedAt : 0 }
  } catch {
    return undefined
  }
}

export async function writeMarker (path: string, m: StoreMarker): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(m) + '\n', { mode: 0o600 })
}
