// A child process for oversized.test.ts: a raw libp2p node that sends WHOLE oversized frames (a length
// prefix and every byte of the payload) on /tokenim/msg/1.0.0 to the address given, `parallel` streams at
// once, prints one JSON line when done, then stays connected until SIGTERM (it stops its node and exits).
// Usage: node oversized-attacker.ts <multiaddr> <frames> <bytes> <parallel>
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { loadOrCreateDeviceKey } from '../../src/identity/index.ts'
import { MSG_PROTOCOL } from '../../src/messaging/index.ts'
import { createP2PNode, framed } from '../../src/p2p/index.ts'

const [addr, framesArg, bytesArg, parallelArg] = process.argv.slice(2)
const frames = Number(framesArg)
const bytes = Number(bytesArg)
const parallel = Number(parallelArg)
const dataDir = await mkdtemp(join(tmpdir(), 'tokenim-attacker-'))
const node = await createP2PNode({ dataDir, privateKey: await loadOrCreateDeviceKey(dataDir) })
await node.start()
process.once('SIGTERM', () => {
  void node.stop().finally(async () => {
    await rm(dataDir, { recursive: true, force: true })
    process.exit(0)
  })
})

let next = 0
let written = 0
let refused = 0
async function one (): Promise<void> {
  let stream
  try {
    stream = await node.dialProtocol(multiaddr(addr), MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  } catch {
    refused++
    return
  }
  const f = framed(stream, { maxFrameBytes: 2 * bytes })
  try {
    await f.write(new Uint8Array(bytes), { signal: AbortSignal.timeout(10_000) })
    written++
    await f.read({ signal: AbortSignal.timeout(5_000) }).catch(() => null)
  } catch {
    // reset by the receiver
  } finally {
    f.abort(new Error('done'))
  }
}
await Promise.all(Array.from({ length: parallel }, async () => {
  while (next < frames) {
    next++
    await one()
  }
}))
process.stdout.write(JSON.stringify({ frames, written, refused }) + '\n')
