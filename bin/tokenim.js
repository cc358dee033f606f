#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=16 --heap-growing-percent=50
// Entry point of the `tokenim` command. In the repository Node runs the TypeScript sources
// directly (type stripping, Node >= 22.13); Node refuses to strip types inside node_modules, so
// when tokenim is installed as a package we load the sources through tsx instead.
//
// The #! line (env -S: no second process) sets glibc's malloc and V8's heap sizing; package.json's
// `tokenim` script does the same, and scripts/bench/rss.ts starts its children with this line's
// environment and flags (keep the line within 127 bytes, all that Linux before 5.1 reads of it).
// Both are read only when the process starts.
// - MALLOC_ARENA_MAX=2 (glibc; other C libraries ignore it): glibc gives each thread that allocates
//   (libuv's pool running LevelDB's reads and writes, the seal worker, V8's helpers) an arena of its own,
//   up to 8 per core, and freed memory of a backup's pipeline stayed in ~10 arenas, split by small live
//   blocks: ~225 MB of malloc'd memory at a 1,000,000-message backup's peak, ~70 MB of it in use. Two
//   arenas: the main thread's and one for the others (docs/PERFORMANCE.md, Session 4; a fixed
//   MALLOC_MMAP_THRESHOLD_=65536 saved another ~8 MB for ~7 s more system CPU at that size: not used).
// - --max-semi-space-size=16 (MiB): V8 otherwise lets the young generation grow to 2 × 64 MiB during
//   a backup or restore, ~100 MB more RSS that holds only garbage between scavenges (CPU time measured
//   the same). --heap-growing-percent=50: the old generation is collected when it has grown by half
//   its live size, not by up to 4×: a restore of 1,000,000 messages peaked at 385 MB instead of 613 MB,
//   for ~6% more CPU.
// Node >= 22.18 on the 22 line, else >= 23.8: type stripping on by default (22.18 / 23.6) and node:zlib's
// zstd (22.15 / 23.8); scripts/ensure-node.sh checks the same.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18) || (major === 23 && minor < 8)) {
  console.error(`tokenim needs Node.js >= 22.18 (22.x) or >= 23.8 (this is ${process.versions.node}); run scripts/ensure-node.sh`)
  process.exit(1)
}
// before the first .ts file: compiled code kept between runs (bin/compile-cache.js)
const { enableCompileCache } = await import('./compile-cache.js')
enableCompileCache()
const main = new URL('../src/cli/main.ts', import.meta.url)
if (main.pathname.includes('/node_modules/')) {
  const { register } = await import('tsx/esm/api')
  register()
}
await import(main.href)
