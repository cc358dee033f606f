/**
 * Root hooks for the whole suite (.mocharc.json `require`). The `tokenim` processes the tests start keep
 * Node's compile cache (bin/compile-cache.js); the suite gives them one of its own in a temp directory,
 * shared by all of its processes and removed at the end, so a test run writes nothing to the user's
 * ~/.cache. A setting the caller made (TOKENIM_COMPILE_CACHE, NODE_COMPILE_CACHE) is left alone.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

let made: string | undefined

export const mochaHooks = {
  beforeAll (): void {
    if (made !== undefined || process.env.TOKENIM_COMPILE_CACHE !== undefined || process.env.NODE_COMPILE_CACHE !== undefined) return
    made = mkdtempSync(join(tmpdir(), 'tokenim-test-compile-cache-'))
    process.env.TOKENIM_COMPILE_CACHE = made
  },
  afterAll (): void {
    if (made === undefined) return
    rmSync(made, { recursive: true, force: true })
    delete process.env.TOKENIM_COMPILE_CACHE
    made = undefined
  }
}
