import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { STORE_DIR as CLI_STORE_DIR } from '../../src/cli/node-access.ts'
import { STORE_DIR } from '../../src/node/index.ts'
import { json, killAll, run, runJson, TempDirs } from './helpers.ts'

const VECTOR = 'test test test test test test test test test test test junk'
const VECTOR_ADDRESS = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'

interface Created { address: string, peerId: string, mnemonic?: string }
interface ErrorDoc { error: { code: string, message: string } }

describe('cli: identity commands (init, id) and --json errors', function () {
  this.timeout(60_000)
  const tmp = new TempDirs()
  let dir: string

  before(async () => { dir = await tmp.make() })
  after(async () => {
    await killAll()
    await tmp.cleanup()
  })

  it('--version prints the package version and exits 0', async () => {
    const r = await run(['--version'])
    assert.equal(r.code, 0, r.stderr)
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    assert.equal(r.stdout.trim(), version)
  })

  it('init --json creates an identity and prints {address, peerId, mnemonic}', async () => {
    const r = await runJson<Created>(['init', '--data-dir', dir])
    assert.deepEqual(Object.keys(r).sort(), ['address', 'mnemonic', 'peerId'])
    assert.match(r.address, /^0x[0-9a-fA-F]{40}$/)
    assert.match(r.peerId, /^12D3KooW/)
    assert.equal(r.mnemonic?.split(' ').length, 12)
    for (const f of ['keystore.json', 'device.key']) {
      assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, `${f} mode`)
    }
  })

  it('init again is refused: IDENTITY_EXISTS, exit 6', async () => {
    const r = await run(['init', '--data-dir', dir, '--json'])
    assert.equal(r.code, 6)
    const doc = json<ErrorDoc>(r)
    assert.equal(doc.error.code, 'IDENTITY_EXISTS')
    assert.equal(typeof doc.error.message, 'string')
  })

  it('init --mnemonic-file imports the known vector and never prints the mnemonic', async () => {
    const target = await tmp.make()
    const file = join(target, 'words.txt')
    await writeFile(file, VECTOR + '\n', { mode: 0o600 })
    const r = await run(['init', '--data-dir', join(target, 'home'), '--mnemonic-file', file, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const doc = json<Created>(r)
    assert.equal(doc.address, VECTOR_ADDRESS)
    assert.equal(doc.mnemonic, undefined)
    assert.ok(!r.stdout.includes('junk') && !r.stderr.includes('junk'), 'mnemonic printed')
  })

  it('init with a bad mnemonic: INVALID_MNEMONIC, exit 2', async () => {
    const target = await tmp.make()
    const file = join(target, 'words.txt')
    await writeFile(file, 'test test test test test test test test test test test notaword\n')
    const r = await run(['init', '--data-dir', join(target, 'home'), '--mnemonic-file', file, '--json'])
    assert.equal(r.code, 2)
    assert.equal(json<ErrorDoc>(r).error.code, 'INVALID_MNEMONIC')
  })

  it('id --json shows the identity (no daemon: no multiaddrs)', async () => {
    const r = await runJson<{ address: string, peerId: string, multiaddrs: string[] }>(['id', '--data-dir', dir])
    assert.match(r.address, /^0x[0-9a-fA-F]{40}$/)
    assert.match(r.peerId, /^12D3KooW/)
    assert.deepEqual(r.multiaddrs, [])
  })

  it('a wrong password on a command that unlocks: WRONG_PASSWORD, exit 4', async () => {
    const r = await run(['send', '0x70997970c51812dc3a010c7d01b50e0d17dc79c8', 'hi', '--data-dir', dir, '--json'], { env: { TOKENIM_PASSWORD: 'not the password' } })
    assert.equal(r.code, 4)
    assert.equal(json<ErrorDoc>(r).error.code, 'WRONG_PASSWORD')
  })

  it('bad input is a usage error with one JSON document (validators: test/api/validate, test/cli/node-config)', async () => {
    const cases: Array<[string[], string]> = [
      [['send', '0x70997970C51812dc3A010C7d01b50e0d17dc79c9', 'hi'], 'INVALID_ADDRESS'], // bad checksum
      [['send', '0x70997970c51812dc3a010c7d01b50e0d17dc79c8', ''], 'INVALID_MESSAGE'],
      [['messages', '--since', 'yesterday'], 'USAGE'],
      [['daemon', '--listen', 'not-a-multiaddr'], 'USAGE'],
      [['send'], 'USAGE']
    ]
    for (const [args, code] of cases) {
      const r = await run([...args, '--data-dir', dir, '--json'])
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`)
      assert.equal(json<ErrorDoc>(r).error.code, code, args.join(' '))
    }
  })

  it('reads without a daemon work from the store alone (no password needed)', async () => {
    const env = { TOKENIM_PASSWORD: '' }
    assert.deepEqual(await runJson(['messages', '--data-dir', dir], 0, { env }), [])
    const contact = await runJson(['contacts', 'add', '0x70997970c51812dc3a010c7d01b50e0d17dc79c8', '--name', 'bob', '--data-dir', dir], 0, { env })
    assert.equal(contact.address, '0x70997970C51812dc3A010C7d01b50e0d17dc79C8')
    assert.equal(contact.name, 'bob')
    const status = await runJson(['status', '--data-dir', dir], 0, { env })
    assert.equal(status.running, false)
    assert.equal(status.outbox, 0)
    assert.deepEqual(status.multiaddrs, [])
    assert.equal(CLI_STORE_DIR, STORE_DIR)
  })

  it('commands on a data dir without an identity: NO_IDENTITY, exit 6', async () => {
    const empty = await tmp.make()
    const results = await Promise.all([['id'], ['messages']].map(async args => await run([...args, '--data-dir', empty, '--json'])))
    for (const r of results) {
      assert.equal(r.code, 6, r.stdout + r.stderr)
      assert.equal(json<ErrorDoc>(r).error.code, 'NO_IDENTITY')
    }
  })
})
