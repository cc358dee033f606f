import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RegistryClient, loadChainProfile } from '../../src/chain/index.ts'
import type { ChainProfile } from '../../src/chain/index.ts'

const BIN = fileURLToPath(new URL('../../bin/tokenim.js', import.meta.url))

describe('tokenim devnet', function () {
  this.timeout(60_000)
  let dir: string
  before(async function () {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-devnet-'))
  })
  after(async function () {
    await rm(dir, { recursive: true, force: true })
  })

  it('prints the profile once ready, writes DATA_DIR/chain.json (0600) and stops cleanly on SIGTERM', async function () {
    const child = spawn(process.execPath, [BIN, 'devnet', '--json', '--data-dir', dir], { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      let stdout = ''
      child.stdout.setEncoding('utf8')
      const printed = await new Promise<ChainProfile>((resolve, reject) => {
        child.stdout.on('data', (chunk: string) => {
          stdout += chunk
          try {
            resolve(JSON.parse(stdout) as ChainProfile)
          } catch {
            // not the whole document yet
          }
        })
        void exited.then(code => reject(new Error(`devnet exited early with ${code}: ${stdout}`)))
      })
      const file = join(dir, 'chain.json')
      assert.equal((await stat(file)).mode & 0o777, 0o600)
      assert.deepEqual(await loadChainProfile(file), printed)
      const client = new RegistryClient(printed)
      try {
        await client.checkDeployed()
      } finally {
        client.close()
      }
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
