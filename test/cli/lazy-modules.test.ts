/**
 * `restore --file` and `verify --file` never load libp2p or Helia (~100 MB of RSS and ~1 s of CPU that a
 * CAR file does not need): the child records every package it resolves through a module hook.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { REPO, children, json, run } from './helpers.ts'

const FIXTURES = join(REPO, 'test', 'fixtures', 'backup-v2')
/** packages of the network stack: none of them may load for a CAR file */
const NETWORK = ['libp2p', 'helia', '@helia/libp2p', '@helia/bitswap', '@libp2p/kad-dht', '@libp2p/tcp', '@chainsafe/libp2p-noise']

const HOOK = `
import { registerHooks } from 'node:module'
import { writeFileSync } from 'node:fs'
const packages = new Set()
registerHooks({
  resolve (specifier, context, next) {
    const r = next(specifier, context)
    const m = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(r.url)
    if (m !== null) packages.add(m[1])
    return r
  }
})
process.on('exit', () => { writeFileSync(process.env.TOKENIM_TEST_MODULES_OUT, JSON.stringify([...packages])) })
`

describe('cli: a CAR file is restored and verified without the network stack loaded', function () {
  this.timeout(60_000)
  let dir: string
  let hook: string
  let words: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-lazy-'))
    hook = join(dir, 'hook.mjs')
    await writeFile(hook, HOOK)
    words = join(dir, 'words.txt')
    const expected = JSON.parse(await readFile(join(FIXTURES, 'expected.json'), 'utf8')) as { mnemonic: string }
    await writeFile(words, expected.mnemonic + '\n', { mode: 0o600 })
  })
  after(async () => {
    for (const c of children) c.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  for (const command of ['restore', 'verify'] as const) {
    it(`${command} --file`, async () => {
      const out = join(dir, `${command}-modules.json`)
      const r = await run([command, '--mnemonic-file', words, '--file', join(FIXTURES, 'plain.car'), '--allow-unanchored', '--json', '--data-dir', join(dir, command)], {
        env: { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}`, TOKENIM_TEST_MODULES_OUT: out }
      })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(json(r).ok, true)
      const loaded = JSON.parse(await readFile(out, 'utf8')) as string[]
      assert.ok(loaded.includes('ethers'), 'the hook saw the packages the command loads')
      assert.deepEqual(loaded.filter(p => NETWORK.includes(p)), [])
    })
  }
})
