import assert from 'node:assert/strict'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
import { coalescingEncrypter } from '../../src/p2p/coalesce.ts'
import { NodeHarness } from '../node/helpers.ts'

/** A list of buffers as Noise hands them down (what a Uint8ArrayList offers: its joined bytes). */
function list (...parts: number[][]): { subarray: () => Uint8Array, bufs: Uint8Array[] } {
  const bufs = parts.map(p => Uint8Array.from(p))
  return { bufs, subarray: () => Uint8Array.from(parts.flat()) }
}

describe('p2p: one socket write per send on a secured connection (coalesce.ts)', () => {
  it('hands the connection one buffer per send, the same bytes, and a single buffer as it is', async () => {
    const sent: unknown[] = []
    const connection = { send: (data: unknown) => { sent.push(data); return true } } as unknown as MessageStream
    let secured: MessageStream | undefined
    const inner: ConnectionEncrypter = {
      protocol: '/test/1.0.0',
      secureOutbound: async (c) => { secured = c; return { connection: c, remotePeer: undefined as never } },
      secureInbound: async (c) => { secured = c; return { connection: c, remotePeer: undefined as never } }
    }
    const make = coalescingEncrypter(() => inner)
    const enc = make({})
    assert.equal(enc.protocol, '/test/1.0.0')
    for (const secure of [enc.secureOutbound.bind(enc), enc.secureInbound.bind(enc)]) {
      sent.length = 0
      await secure(connection)
      assert.equal(secured, connection)
      const l = list([0, 3], [1, 2, 3], [0, 1], [9])
      assert.equal(secured?.send(l as never), true)
      const one = Uint8Array.of(7, 7)
      secured?.send(one)
      assert.equal(sent.length, 2)
      assert.ok(sent[0] instanceof Uint8Array)
      assert.deepEqual([...(sent[0] as Uint8Array)], [0, 3, 1, 2, 3, 0, 1, 9])
      assert.equal(sent[1], one, 'a single buffer is passed as it is')
    }
  })

  it('real nodes talk over connections secured so', async function () {
    this.timeout(60_000)
    const h = new NodeHarness()
    try {
      const [a, b] = await Promise.all([h.rawNode(), h.rawNode()])
      const rtt = await a.libp2p.services.ping.ping(b.multiaddrs()[0])
      assert.ok(rtt >= 0)
    } finally {
      await h.cleanup()
    }
  })
})
