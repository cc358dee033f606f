#!/usr/bin/env -S node --max-semi-space-size=16 --heap-growing-percent=50
// Entry point of the `tokenim` command. In the repository Node runs the TypeScript sources
// directly (type stripping, Node >= 22.13); Node refuses to strip types inside node_modules, so
// when tokenim is installed as a package we load the sources through tsx instead.
//
// Heap flags (package.json's `tokenim` script passes them too; scripts/bench/rss.ts runs its children
// with them): --max-semi-space-size=16 (MiB): V8 otherwise lets the young generation grow to 2 × 64 MiB
// during a backup or restore, ~100 MB more RSS that holds only garbage between scavenges (CPU time
// measured the same). --heap-growing-percent=50: the old generation is collected when it has grown by
// half its live size, not by up to 4×: a restore of 1,000,000 messages peaked at 385 MB instead of
// 613 MB, for ~6% more CPU. A heap size flag must be given when Node starts.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 13)) {
  console.error(`tokenim needs Node.js >= 22.13 (this is ${process.versions.node}); run scripts/ensure-node.sh`)
  process.exit(1)
}
const main = new URL('../src/cli/main.ts', import.meta.url)
if (main.pathname.includes('/node_modules/')) {
  const { register } = await import('tsx/esm/api')
  register()
}
await import(main.href)
