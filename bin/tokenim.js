#!/usr/bin/env -S node --max-semi-space-size=16
// Entry point of the `tokenim` command. In the repository Node runs the TypeScript sources
// directly (type stripping, Node >= 22.13); Node refuses to strip types inside node_modules, so
// when tokenim is installed as a package we load the sources through tsx instead.
//
// --max-semi-space-size=16 (MiB; package.json's `tokenim` script passes it too): V8 otherwise lets the
// young generation grow to 2 × 64 MiB during a backup or restore, ~100 MB more RSS that holds only
// garbage between scavenges; CPU time measured the same. A V8 heap size flag must be given when Node
// starts (v8.setFlagsFromString is too late). scripts/bench/rss.ts runs its children with these flags.
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
