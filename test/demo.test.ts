import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repo = fileURLToPath(new URL('..', import.meta.url))

// The README's main job (`npm run demo`) must keep working: run it as a user would.
describe('npm run demo', () => {
  it('runs the whole story on embedded defaults and exits 0', async function () {
    this.timeout(120_000)
    const child = spawn(process.execPath, ['scripts/demo.ts'], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    assert.equal(code, 0, `demo failed:\n${out}\n${err}`)
    assert.match(out, /Summary/)
    assert.match(out, /messages exchanged \(E2E, delivered\)\s+5/)
    assert.match(out, /replica confirmations\s+2 \/ 2/)
    assert.match(out, /restored on a new device \(mnemonic only\)\s+identical/)
    assert.match(out, /picture \(attachment\) at Bob\s+identical bytes/)
    assert.match(out, /picture \(attachment\) after restore\s+identical bytes/)
    assert.match(out, /tampered CAR\s+refused \(BACKUP_TAMPERED\), nothing written/)
    assert.match(out, /version 1 offered as the latest\s+refused \(ROLLBACK_REFUSED\)/)
  })
})
