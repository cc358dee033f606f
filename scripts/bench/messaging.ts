/**
 * Section 1: messaging between two TokenimNodes on 127.0.0.1, against the same two nodes' libp2p:
 * a raw echo protocol (same varint framing, frames of the sealed envelope's size) and ping.
 *
 * The receiving node (bob) runs in a child process of its own (messaging-peer.ts), the sender (alice) in
 * this one: real peers never share a CPU, and with both nodes on one thread the figure was the sum of both
 * ends' work per message rather than what one sender gets from one receiver. The raw references are
 * served by the same child, so they run the same way and the ratios stay like for like.
 *
 * - throughput: `inFlight` sends outstanding at once, each resolved by its verified receipt;
 *   reference: the same number of raw echo round trips in flight, one stream per frame, and frames
 *   pipelined on one long-lived stream with the same window (tokenim pipelines on one stream per
 *   recipient, so the second is the closer reference).
 * - latency: one send at a time, send() → delivered (store write, stream, envelope, receipt, store
 *   update); reference: one raw echo round trip on a new stream, and a libp2p ping.
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { createIdentity } from '../../src/identity/index.ts'
import { sealMessage } from '../../src/messaging/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import type { P2PNode, PeerId } from '../../src/p2p/index.ts'
import type { PeerInit, PeerReply, PeerRequest } from './messaging-peer.ts'
import { quantile } from './results.ts'
import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
import { PASSWORD, CHEAP_KDF, REPO_ROOT, until } from './util.ts'

const SECTION = 'messaging'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'
export const ECHO_PROTOCOL = '/tokenim-bench/echo/1.0.0'
/** the benchmark's receiver lifts the per-peer inbound budget (default: burst 64, 16/s) */
export const UNLIMITED = { capacity: 1e9, refillPerSecond: 1e9 }

/** Run `total` tasks with at most `inFlight` at once; returns the elapsed ms. */
async function pipelined (total: number, inFlight: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, async () => {
    while (next < total) await task(next++)
  }))
  return performance.now() - t0
}

async function timed (n: number, task: () => Promise<void>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await task()
    out.push(performance.now() - t0)
  }
  return out
}

/** The echo handler: every frame is written back; the stream ends when the dialer closes. */
export async function serveEcho (p2p: P2PNode): Promise<void> {
  await p2p.handle(ECHO_PROTOCOL, (stream) => {
    const f = framed(stream, { maxFrameBytes: 256 * 1024 })
    void (async () => {
      try {
        for (let frame = await f.read(); frame != null; frame = await f.read()) await f.write(frame)
        await f.close()
      } catch (err) {
        f.abort(err as Error)
      }
    })()
  }, { maxInboundStreams: 1024, maxOutboundStreams: 1024 })
}

async function echoOnce (p2p: P2PNode, peer: PeerId, frame: Uint8Array): Promise<void> {
  const stream = await p2p.dialProtocol(peer, ECHO_PROTOCOL)
  const f = framed(stream, { maxFrameBytes: 256 * 1024 })
  await f.write(frame)
  const back = await f.read()
  if (back?.length !== frame.length) throw new Error('echo: wrong reply')
  await f.close()
}

/** The receiving node in its child process (messaging-peer.ts). */
class Peer {
  readonly child: ChildProcess
  private readonly replies: PeerReply[] = []
  private exited = false

  constructor (init: PeerInit) {
    this.child = fork(join(REPO_ROOT, 'scripts', 'bench', 'messaging-peer.ts'), [JSON.stringify(init)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.child.on('message', (m: PeerReply) => { this.replies.push(m) })
    this.child.on('exit', () => { this.exited = true })
  }

  /** The next reply of this type (an `error` reply or the child's exit fails it). */
  async reply<T extends PeerReply['type']> (type: T, timeoutMs = 60_000): Promise<Extract<PeerReply, { type: T }>> {
    let found: PeerReply | undefined
    await until(`the bench peer's ${type}`, () => {
      const i = this.replies.findIndex(r => r.type === type || r.type === 'error')
      if (i >= 0) found = this.replies.splice(i, 1)[0]
      return found !== undefined || this.exited
    }, timeoutMs)
    if (found?.type === 'error') throw new Error(`bench peer: ${found.message}`)
    if (found === undefined) throw new Error(`the bench peer exited (${String(this.child.exitCode ?? this.child.signalCode)})`)
    return found as Extract<PeerReply, { type: T }>
  }

  async received (): Promise<number> {
    this.child.send({ type: 'status' } satisfies PeerRequest)
    return (await this.reply('status')).received
  }

  /** Stop its node and wait for it to exit (killed if it does not within 30 s). */
  async stop (): Promise<void> {
    if (this.exited) return
    if (this.child.connected) this.child.send({ type: 'stop' } satisfies PeerRequest)
    await until('the bench peer to exit', () => this.exited, 30_000).catch(() => {
      this.child.kill('SIGKILL')
    })
  }
}

export async function benchMessaging (scale: Scale, rec: Recorder): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'tokenim-bench-msg-'))
  const nodes: TokenimNode[] = []
  let peer: Peer | undefined
  try {
    for (const name of ['alice', 'bob']) await createIdentity(join(root, name), { password: PASSWORD, scryptN: CHEAP_KDF })
    const alice = await TokenimNode.open({ dataDir: join(root, 'alice'), password: PASSWORD, messaging: { rateLimit: UNLIMITED } })
    await alice.start()
    nodes.push(alice)
    peer = new Peer({ dataDir: join(root, 'bob'), password: PASSWORD, bootstrap: alice.multiaddrs()[0].toString(), sender: alice.address })
    const ready = await peer.reply('ready')
    const bob = { address: ready.address }
    await until('the two nodes to find each other by address', async () =>
      await alice.resolve(bob.address, { timeoutMs: 3_000 }).then(() => true, () => false))

    const text = 'x'.repeat(1024)
    // a first attempt that fails leaves the message queued: it counts once delivered by a retry
    const retries: string[] = []
    alice.messaging.on('retry', (e) => { retries.push(e.error) })
    const send = async (): Promise<void> => {
      const r = await alice.send(bob.address, text)
      if (r.status !== 'delivered') {
        await until(`the retry of ${r.id}`, async () => (await alice.store.getMessage(r.id))?.status === 'delivered', 120_000)
      }
    }
    // the raw frames are as long as the sealed envelope of a 1 KiB message
    const bobKey = alice.resolver.cached(bob.address)?.messagingKey
    if (bobKey === undefined) throw new Error('bob is not resolved')
    const envelopeBytes = sealMessage({ from: alice.address, to: bob.address, body: { text } }, alice.identity.keys.messaging, bobKey).bytes.length + 4
    const frame = new Uint8Array(envelopeBytes).fill(0x61)
    const bobPeer = peerIdFromString(ready.peerId)
    const echo = async (): Promise<void> => { await echoOnce(alice.p2p, bobPeer, frame) }

    // warm up both paths (JIT, connection, caches)
    await pipelined(scale.warmup, scale.inFlight, send)
    await pipelined(scale.warmup, scale.inFlight, echo)

    // throughput
    const n = scale.throughputMessages
    const tokenimMs = await pipelined(n, scale.inFlight, send)
    const rawMs = await pipelined(n, scale.inFlight, echo)
    const singleStreamMs = await pipelinedOneStream(alice.p2p, bobPeer, frame, n, scale.inFlight)
    const delivered = (await alice.status()).messaging.delivered
    const received = await peer.received()
    if (received < n + scale.warmup) throw new Error(`bob stored ${received} of ${n + scale.warmup} messages`)
    const tokenimRate = n / (tokenimMs / 1000)
    const rawRate = n / (rawMs / 1000)
    rec.figure({
      section: SECTION,
      name: `E2E throughput (1 KiB, ${scale.inFlight} in flight)`,
      value: tokenimRate,
      unit: 'msg/s',
      reference: { name: 'raw echo, stream per frame', value: rawRate },
      targets: [{ of: 'ratio', op: '>=', limit: 0.5 }, { of: 'value', op: '>=', limit: 5000 }],
      note: `${n} messages, each stored, sealed, sent on the recipient's pipelined stream, stored by the receiver, receipt verified, marked delivered (${delivered} delivered in all)`
    })
    rec.figure({
      section: SECTION,
      name: 'E2E throughput vs one pipelined stream',
      value: tokenimRate,
      unit: 'msg/s',
      reference: { name: 'raw echo, one stream', value: n / (singleStreamMs / 1000) },
      note: 'ceiling: frames pipelined on one long-lived stream (no stream set-up per frame)'
    })

    // latency
    const k = scale.latencySamples
    const sendLat = await timed(k, send)
    const echoLat = await timed(k, echo)
    let pingLat: number[] = []
    // libp2p's ping occasionally fails under heavy load (StreamStateError on a closing stream): a failed
    // ping is retried, and the ping reference is left out rather than failing the bench. Its streams
    // close when the other process's close arrives, so back-to-back pings can meet ping's limit of
    // outbound streams: then the ping waits for them to close (not counted as a failure).
    const pingStreams = (): number => alice.p2p.libp2p.getConnections().flatMap(c => c.streams)
      .filter(st => st.protocol === PING_PROTOCOL && st.direction === 'outbound').length
    let pingFailures = 0
    for (let i = 0; i < k && pingFailures < 5; i++) {
      try {
        pingLat.push(await alice.p2p.libp2p.services.ping.ping(bobPeer))
      } catch (err) {
        i--
        if ((err as Error).name === 'TooManyOutboundProtocolStreamsError' && pingStreams() > 0) {
          await until('ping streams to close', () => pingStreams() === 0, 10_000).catch(() => { pingFailures++ })
          continue
        }
        pingFailures++
        if (pingFailures >= 5) {
          rec.note(`messaging: libp2p ping failed ${pingFailures} times (${(err as Error).message}); ping references left out`)
          pingLat = []
        }
      }
    }
    for (const [q, label, limit] of [[0.5, 'p50', 2], [0.99, 'p99', 5]] as const) {
      rec.figure({
        section: SECTION,
        name: `send→receipt latency ${label}`,
        value: quantile(sendLat, q),
        unit: 'ms',
        reference: { name: `raw echo round trip ${label}`, value: quantile(echoLat, q) },
        targets: [{ of: 'ratio', op: '<=', limit }]
      })
      if (pingLat.length > 0) rec.figure({
        section: SECTION,
        name: `send→receipt latency ${label} vs ping`,
        value: quantile(sendLat, q),
        unit: 'ms',
        reference: { name: `libp2p ping ${label}`, value: quantile(pingLat, q) }
      })
    }
    if (retries.length > 0) {
      const kinds = [...new Set(retries.map(e => e.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, 'ID').slice(0, 160)))]
      rec.note(`messaging: ${retries.length} delivery attempts failed and were retried (default backoff from 2 s): ${kinds.slice(0, 3).join(' | ')}`)
    }
    rec.note(`messaging: the receiving node ran in a child process of its own (as real peers do, each on its own CPU), and so did the raw references' echo and ping handlers; the receiver's per-peer inbound budget was lifted for the bench (default burst 64, then 16 frames/s per peer, which caps one sender at 16 msg/s sustained by design); ${scale.inFlight} sends in flight (a sender pipelines up to 64 unanswered envelopes on its stream to a recipient; the raw references use the same window)`)
  } finally {
    await peer?.stop()
    for (const node of nodes.reverse()) await node.stop().catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

/** `n` frames over one stream with `window` unanswered at most. */
async function pipelinedOneStream (p2p: P2PNode, peer: PeerId, frame: Uint8Array, n: number, window: number): Promise<number> {
  const stream = await p2p.dialProtocol(peer, ECHO_PROTOCOL)
  const f = framed(stream, { maxFrameBytes: 256 * 1024 })
  const t0 = performance.now()
  let sent = 0
  const writer = (async () => {
    for (; sent < Math.min(window, n); sent++) await f.write(frame)
  })()
  await writer
  for (let got = 0; got < n; got++) {
    const back = await f.read()
    if (back == null) throw new Error('echo stream ended early')
    if (sent < n) {
      await f.write(frame)
      sent++
    }
  }
  const ms = performance.now() - t0
  await f.close()
  return ms
}
