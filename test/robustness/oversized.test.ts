/**
 * Whole oversized frames (a 4 MiB length prefix AND the 4 MiB after it) from an attacker in ANOTHER
 * process: the receiver's live heap stays flat while the attacker is connected and after it left.
 *
 * (Both in one process, ~100-200 MiB stayed live after such a flood: measured apart, that memory is the
 * attacker's — its framed().write() waits for 'drain' with AbortSignal.timeout(10 s), and until that timer
 * fires the listener keeps the reset stream and its 4 MiB send buffer; freed ~10 s later. The receiver
 * refuses from the prefix, aborts the stream, and keeps ~2 MiB at most.)
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { TokenimNode } from '../../src/node/index.ts'
import { NodeHarness, waitFor } from '../node/helpers.ts'
import { liveHeap } from './mutate.ts'

const ATTACKER = fileURLToPath(new URL('./oversized-attacker.ts', import.meta.url))
const FRAMES = 24
const FRAME_BYTES = 4 * 1024 * 1024

describe('robustness: whole 4 MiB frames from an attacker in another process', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  let bob: TokenimNode
  let child: ReturnType<typeof spawn> | undefined
  after(async () => {
    if (child?.exitCode === null) child.kill('SIGKILL')
    await h.cleanup()
  })

  it('the receiver retains no frame: live heap flat while the attacker is connected and after it left', async function () {
    bob = await h.node()
    let rejected = 0
    bob.messaging.on('rejected', () => { rejected++ })
    const base = liveHeap()
    const proc = spawn(process.execPath, [ATTACKER, bob.multiaddrs()[0].toString(), String(FRAMES), String(FRAME_BYTES), '8'], { stdio: ['ignore', 'pipe', 'inherit'] })
    child = proc
    let out = ''
    proc.stdout?.on('data', (d: Buffer) => { out += String(d) })
    const exited = new Promise<number | null>(resolve => { proc.once('exit', code => { resolve(code) }) })
    await waitFor(() => out.includes('\n'), 'the attacker is done', 60_000)
    const report = JSON.parse(out) as { written: number, refused: number }
    const connected = liveHeap() - base
    proc.kill('SIGTERM')
    assert.equal(await exited, 0)
    const left = liveHeap() - base
    const mib = (n: number): string => (n / 1048576).toFixed(1)
    assert.ok(rejected > 0, 'bob rejected the oversized frames')
    assert.ok(connected < 24 * 1024 * 1024 && left < 24 * 1024 * 1024, `bob's live heap +${mib(connected)} MiB with the attacker connected, +${mib(left)} MiB after`)
    this.test!.title += ` (${FRAMES} × 4 MiB, ${report.written} written, ${rejected} rejected; bob +${mib(connected)} MiB connected, +${mib(left)} MiB after)`
  })
})
