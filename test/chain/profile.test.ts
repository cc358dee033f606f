import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isTokenimError } from '../../src/errors.ts'
import { loadChainProfile, resolveChainProfilePath, writeChainProfile } from '../../src/chain/index.ts'

const REGISTRY = '0x5FbDB2315678afecb367f032d93F642f64180aa3'

describe('chain profile', function () {
  let dir: string
  before(async function () {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-profile-'))
  })
  after(async function () {
    await rm(dir, { recursive: true, force: true })
  })

  it('writes atomically with mode 0600 and reads back', async function () {
    const path = join(dir, 'chain.json')
    await writeChainProfile(path, { rpc: 'http://127.0.0.1:8545', chainId: 31337, registry: REGISTRY.toLowerCase(), startBlock: 1 })
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.deepEqual(await loadChainProfile(path), { rpc: 'http://127.0.0.1:8545', chainId: 31337, registry: REGISTRY, startBlock: 1 })
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')).registry, REGISTRY)
  })

  it('rejects malformed profiles naming the file and the field', async function () {
    const cases: Array<[unknown, string]> = [
      [{ rpc: 'not a url', chainId: 1, registry: REGISTRY }, 'rpc'],
      [{ rpc: 'ftp://x', chainId: 1, registry: REGISTRY }, 'rpc'],
      [{ rpc: 'http://x', chainId: -1, registry: REGISTRY }, 'chainId'],
      [{ rpc: 'http://x', chainId: '1', registry: REGISTRY }, 'chainId'],
      [{ rpc: 'http://x', chainId: 1, registry: '0x1234' }, 'registry'],
      [{ rpc: 'http://x', chainId: 1 }, 'registry']
    ]
    for (const [value, field] of cases) {
      const path = join(dir, `bad-${field}.json`)
      await writeFile(path, JSON.stringify(value))
      await assert.rejects(loadChainProfile(path), (err: unknown) => {
        assert.ok(isTokenimError(err, 'INVALID_CHAIN_PROFILE'), String(err))
        assert.equal(err.info.field, field)
        assert.equal(err.info.file, path)
        assert.match(err.message, new RegExp(`${path}.*${field}`))
        return true
      })
    }
    const notJson = join(dir, 'not-json.json')
    await writeFile(notJson, '{ rpc:')
    await assert.rejects(loadChainProfile(notJson), (err: unknown) => isTokenimError(err, 'INVALID_CHAIN_PROFILE'))
    await assert.rejects(loadChainProfile(join(dir, 'missing.json')), (err: unknown) => isTokenimError(err, 'CHAIN_PROFILE_NOT_FOUND'))
  })

  it('resolves --chain > TOKENIM_CHAIN > <dataDir>/chain.json > none', async function () {
    const dataDir = await mkdtemp(join(dir, 'data-'))
    assert.equal(await resolveChainProfilePath({ dataDir, env: {} }), undefined)
    await writeChainProfile(join(dataDir, 'chain.json'), { rpc: 'http://127.0.0.1:1', chainId: 1, registry: REGISTRY })
    assert.equal(await resolveChainProfilePath({ dataDir, env: {} }), join(dataDir, 'chain.json'))
    assert.equal(await resolveChainProfilePath({ dataDir, env: { TOKENIM_CHAIN: '/x/env.json' } }), '/x/env.json')
    assert.equal(await resolveChainProfilePath({ chain: '/x/flag.json', dataDir, env: { TOKENIM_CHAIN: '/x/env.json' } }), '/x/flag.json')
  })
})
