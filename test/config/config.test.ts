import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, saveConfig, parseDuration, pick } from '../../src/config/index.ts'

describe('config file', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-config-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('is empty when missing and round-trips when saved (0600)', async () => {
    assert.deepEqual(await loadConfig(dir), {})
    const config = { listen: ['/ip4/127.0.0.1/tcp/0'], replicas: ['0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'], backupEvery: '24h' }
    await saveConfig(dir, config)
    assert.deepEqual(await loadConfig(dir), config)
    assert.equal((await stat(join(dir, 'config.json'))).mode & 0o777, 0o600)
  })

  it('names the bad field', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ replicas: ['0x123'] }))
    await assert.rejects(loadConfig(dir), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'INVALID_CONFIG')
      assert.match(err.message, /replicas\.0/)
      return true
    })
    await writeFile(join(dir, 'config.json'), JSON.stringify({ lissten: [] }))
    await assert.rejects(loadConfig(dir), { code: 'INVALID_CONFIG' })
    await writeFile(join(dir, 'config.json'), '{not json')
    await assert.rejects(loadConfig(dir), { code: 'INVALID_CONFIG' })
  })

  it('parses durations and applies precedence flag > env > file > default', () => {
    assert.equal(parseDuration('24h'), 86_400_000)
    assert.equal(parseDuration('15m'), 900_000)
    assert.equal(parseDuration('500ms'), 500)
    assert.throws(() => parseDuration('soon'), { code: 'USAGE' })
    assert.equal(pick('a', 'b', 'c', 'd'), 'a')
    assert.equal(pick(undefined, 'b', 'c', 'd'), 'b')
    assert.equal(pick(undefined, undefined, 'c', 'd'), 'c')
    assert.deepEqual(pick([], undefined, ['f'], []), ['f'])
  })
})
