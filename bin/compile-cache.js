// Node's on-disk compile cache (module.enableCompileCache) for tokenim's processes, their worker threads
// and their child processes. Node strips the types of every .ts file it loads and compiles the result;
// without a cache each process and each worker thread does both again, and the first .ts file a thread
// loads also starts the type stripper (a WebAssembly module) in it: the seal worker of a backup was ready
// ~210 ms after it was started, ~95 ms with a warm cache; `tokenim --help` took 0.68 s, 0.44 s
// (docs/PERFORMANCE.md, Session 6). The cache holds derived code only and is checked against the source
// it was made from (a changed file is compiled again), so a stale entry costs only the compile.
//
// Plain JavaScript, not TypeScript: it runs before the first .ts file is loaded.
//
// The directory: TOKENIM_COMPILE_CACHE (`off` or `0`: none), else $XDG_CACHE_HOME/tokenim/compile-cache,
// else ~/.cache/tokenim/compile-cache. What is in it is run, so it must be this user's alone: made 0700,
// and not used when it is owned by someone else or writable by others (Node's own default, a shared
// directory under the system's tmp, is not used for that reason). NODE_COMPILE_CACHE set by the user
// wins (Node has then enabled it already), and NODE_DISABLE_COMPILE_CACHE turns it off.
import { mkdirSync, statSync } from 'node:fs'
import module from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * The directory tokenim's compile cache goes in, or undefined when it is turned off.
 * @param {NodeJS.ProcessEnv} env
 * @returns {string | undefined}
 */
export function compileCacheDir (env = process.env) {
  const setting = env.TOKENIM_COMPILE_CACHE
  if (setting === 'off' || setting === '0') return undefined
  if (setting !== undefined && setting !== '') return setting
  const base = env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME !== '' ? env.XDG_CACHE_HOME : join(homedir(), '.cache')
  return join(base, 'tokenim', 'compile-cache')
}

/**
 * Enable the cache for this process (what it loads from now on) and, through NODE_COMPILE_CACHE in
 * `env`, for the worker threads and child processes it starts. Never throws: without a cache tokenim
 * only starts slower. Returns the directory in use, or why there is none.
 * @param {NodeJS.ProcessEnv} env
 * @returns {{ directory: string } | { reason: string }}
 */
export function enableCompileCache (env = process.env) {
  if (typeof module.enableCompileCache !== 'function') return { reason: 'this Node has no compile cache' }
  if (env.NODE_COMPILE_CACHE !== undefined && env.NODE_COMPILE_CACHE !== '') return { reason: 'NODE_COMPILE_CACHE is set: Node\'s own setting is used' }
  if (env.NODE_DISABLE_COMPILE_CACHE !== undefined && env.NODE_DISABLE_COMPILE_CACHE !== '') return { reason: 'turned off (NODE_DISABLE_COMPILE_CACHE)' }
  const dir = compileCacheDir(env)
  if (dir === undefined) return { reason: 'turned off (TOKENIM_COMPILE_CACHE)' }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = statSync(dir)
    if (!st.isDirectory()) return { reason: `${dir} is not a directory` }
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return { reason: `${dir} belongs to another user` }
    if ((st.mode & 0o022) !== 0) return { reason: `${dir} is writable by others` }
  } catch (err) {
    return { reason: `${dir}: ${err instanceof Error ? err.message : String(err)}` }
  }
  try {
    const r = module.enableCompileCache(dir)
    if (r.directory === undefined || r.status === module.constants.compileCacheStatus.FAILED || r.status === module.constants.compileCacheStatus.DISABLED) {
      return { reason: r.message ?? 'not enabled' }
    }
    // read by each worker thread and child process when it starts (module.enableCompileCache covers
    // only the calling thread)
    env.NODE_COMPILE_CACHE = r.directory
    return { directory: r.directory }
  } catch (err) {
    return { reason: err instanceof Error ? err.message : String(err) }
  }
}
