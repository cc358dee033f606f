import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_LISTEN, envList, resolveNodeSettings } from '../../src/cli/node-config.ts'
import { TempDirs } from './helpers.ts'

const PEER = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWKn3jMHxByfKJ7LnDyFJPbLNi4s4qxbtUUBzfx7ZbJqsy'
const OTHER = '/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWL6B4qUJA9gwZtTM1bZkzpfpW7uKoQPQHRS5dZQ4WDNLk'
const ADDR = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'

describe('cli: node settings (flags > env > config.json > defaults)', () => {
  const tmp = new TempDirs()
  after(async () => { await tmp.cleanup() })

  it('defaults: loopback, no bootstrap, no mdns, no replicas, no schedule', async () => {
    const dir = await tmp.make()
    assert.deepEqual(await resolveNodeSettings(dir, {}, {}), { listen: DEFAULT_LISTEN, bootstrap: [], mdns: false, replicas: [], replicaFor: [] })
    assert.deepEqual(DEFAULT_LISTEN, ['/ip4/127.0.0.1/tcp/0'])
  })

  it('takes flags over the environment over config.json', async () => {
    const dir = await tmp.make()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: [OTHER], mdns: true, replicas: [ADDR], backupEvery: '24h' }))
    const fromFile = await resolveNodeSettings(dir, {}, {})
    assert.deepEqual(fromFile, { listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: [OTHER], mdns: true, replicas: [ADDR], replicaFor: [], backupEveryMs: 86_400_000 })
    const env = { TOKENIM_LISTEN: '/ip4/127.0.0.1/tcp/5000, /ip4/127.0.0.1/tcp/5001', TOKENIM_BOOTSTRAP: PEER }
    const fromEnv = await resolveNodeSettings(dir, {}, env)
    assert.deepEqual(fromEnv.listen, ['/ip4/127.0.0.1/tcp/5000', '/ip4/127.0.0.1/tcp/5001'])
    assert.deepEqual(fromEnv.bootstrap, [PEER])
    const fromFlags = await resolveNodeSettings(dir, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [OTHER, PEER], replicaFor: [ADDR.toLowerCase()], backupEvery: '15m' }, env)
    assert.deepEqual(fromFlags.listen, ['/ip4/127.0.0.1/tcp/0'])
    assert.deepEqual(fromFlags.bootstrap, [OTHER, PEER])
    assert.deepEqual(fromFlags.replicaFor, [ADDR])
    assert.equal(fromFlags.backupEveryMs, 900_000)
    assert.deepEqual(envList('X', { X: ' a, ,b ' }), ['a', 'b'])
    assert.equal(envList('X', { X: '' }), undefined)
  })

  it('refuses bad values before anything starts', async () => {
    const dir = await tmp.make()
    await assert.rejects(resolveNodeSettings(dir, { listen: ['tcp:4001'] }, {}), { code: 'USAGE' })
    await assert.rejects(resolveNodeSettings(dir, { listen: ['/ip4/999.1.1.1/tcp/1'] }, {}), { code: 'USAGE' })
    await assert.rejects(resolveNodeSettings(dir, { bootstrap: ['/ip4/127.0.0.1/tcp/4001'] }, {}), { code: 'USAGE' }) // no /p2p/
    await assert.rejects(resolveNodeSettings(dir, {}, { TOKENIM_BOOTSTRAP: 'nope' }), { code: 'USAGE' })
    await assert.rejects(resolveNodeSettings(dir, { replica: ['0x12'] }, {}), { code: 'INVALID_ADDRESS' })
    await assert.rejects(resolveNodeSettings(dir, { backupEvery: 'daily' }, {}), { code: 'USAGE' })
    await assert.rejects(resolveNodeSettings(dir, { backupEvery: '10s' }, {}), { code: 'USAGE' })
    await writeFile(join(dir, 'config.json'), JSON.stringify({ listen: 'not a list' }))
    await assert.rejects(resolveNodeSettings(dir, {}, {}), { code: 'INVALID_CONFIG' })
  })
})
