import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../util/fs.ts'
import { processAlive } from '../util/process.ts'

export const API_INFO_FILE = 'api.json'

/** What a running daemon writes to DATA_DIR/api.json (mode 0600) once ready. */
export interface ApiInfo {
  url: string
  token: string
  peerId: string
  multiaddrs: string[]
  pid?: number
}

/** The running daemon's api.json, or undefined when none is there (or it is unreadable). */
export async function readApiInfo (dataDir: string): Promise<ApiInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(join(dataDir, API_INFO_FILE), 'utf8')) as ApiInfo
    if (typeof info.url !== 'string' || typeof info.token !== 'string') return undefined
    if (info.pid !== undefined && !processAlive(info.pid)) return undefined
    return info
  } catch {
    return undefined
  }
}

/** Write api.json atomically (tmp + fsync + rename), mode 0600: it holds the API token. */
export async function writeApiInfo (dataDir: string, info: ApiInfo): Promise<void> {
  await writeFileAtomic(join(dataDir, API_INFO_FILE), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
}

/** Remove api.json, if it is ours (a newer daemon's file is left alone). */
export async function removeApiInfo (dataDir: string, pid = process.pid): Promise<void> {
  try {
    const info = JSON.parse(await readFile(join(dataDir, API_INFO_FILE), 'utf8')) as ApiInfo
    if (info.pid !== undefined && info.pid !== pid) return
  } catch {
    // unreadable or missing: remove whatever is there
  }
  await rm(join(dataDir, API_INFO_FILE), { force: true })
}
