import assert from 'node:assert/strict'
import { MAX_FRAME_BYTES, MSG_PROTOCOL } from '../../src/messaging/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import type { P2PNode } from '../../src/p2p/index.ts'
import { FAST_MESSAGING, NodeHarness, waitFor } from '../node/helpers.ts'

describe('messaging: an inbound stream that stays silent', function () {
  this.timeout(60_000)
  const h = new NodeHarness()
  let bob: TokenimNode
  let mallory: P2PNode

  before(async () => {
    bob = await h.node({ messaging: { ...FAST_MESSAGING, streamIdleTimeoutMs: 300 } })
    mallory = await h.rawNode([await h.bootstrapAddr()])
  })
  after(async () => { await h.cleanup() })

  it('is closed by the receiver after its idle timeout (TimeoutError), and the receiver keeps serving', async () => {
    const rejected: string[] = []
    bob.messaging.on('rejected', (r) => { rejected.push(r.code) })
    for (let i = 0; i < 2; i++) {
      const stream = await mallory.dialProtocol(bob.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const f = framed(stream, { maxFrameBytes: MAX_FRAME_BYTES })
      // nothing is written: the receiver ends the stream (a reset or an end, whichever comes first)
      const ended = await f.read({ signal: AbortSignal.timeout(20_000) }).then(b => b == null, (err: Error) => err.name !== 'TimeoutError')
      assert.ok(ended, 'the receiver did not end the silent stream')
      await waitFor(() => rejected.length === i + 1, 'the rejected event', 10_000)
      f.abort(new Error('done'))
    }
    assert.deepEqual(rejected, ['TimeoutError', 'TimeoutError'])
  })
})
