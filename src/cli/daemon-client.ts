import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

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
    const info = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as ApiInfo
    if (typeof info.url !== 'string' || typeof info.token !== 'string') return undefined
    if (info.pid !== undefined && !processAlive(info.pid)) return undefined
    return info
  } catch {
    return undefined
  }
}

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
