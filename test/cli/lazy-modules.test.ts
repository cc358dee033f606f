/**
 * `restore --file` and `verify --file` never load libp2p or Helia (~100 MB of RSS and ~1 s of CPU that a
 * CAR file does not need), and `backup` with no replica to ask loads no libp2p (only Helia's own module,
 * for its pins): the child records every package it resolves through a module hook.
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
/** of those, what a backup may load: Helia (its blockstore and pins, without libp2p) */
const BACKUP_MAY_LOAD = ['helia']

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

describe('cli: commands that need no peer load no network stack', function () {
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

  async function loadedBy (name: string, args: string[]): Promise<string[]> {
    const out = join(dir, `${name}-modules.json`)
    const r = await run(args, { env: { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}`, TOKENIM_TEST_MODULES_OUT: out } })
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(await readFile(out, 'utf8')) as string[]
  }

  it('backup without replicas: built and pinned without the network stack', async () => {
    const dataDir = join(dir, 'backup')
    assert.equal((await run(['init', '--data-dir', dataDir, '--json'])).code, 0)
    const loaded = await loadedBy('backup', ['backup', '--no-anchor', '--out', join(dir, 'b.car'), '--json', '--data-dir', dataDir])
    assert.ok(loaded.includes('helia') && loaded.includes('blockstore-level'), 'the hook saw the packages the command loads')
    assert.deepEqual(loaded.filter(p => NETWORK.includes(p) && !BACKUP_MAY_LOAD.includes(p)), [])
    // the version is pinned and listed like any other (backups starts the node with its network)
    const list = json<Array<{ version: number, pinned: boolean }>>(await run(['backups', '--json', '--data-dir', dataDir]))
    assert.deepEqual(list.map(b => [b.version, b.pinned]), [[1, true]])
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
