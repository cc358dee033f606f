/**
 * Delivery under churn: 5 nodes on 127.0.0.1 each send 200 messages to random peers while two random
 * nodes are restarted in the middle (stop, then a new TokenimNode on the same data dir, on a new port).
 * After the outboxes drain, every message is stored exactly once at its recipient, none is lost or
 * duplicated, and every sender marks it delivered.
 */
import assert from 'node:assert/strict'
import type { TokenimNode } from '../../src/node/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { NodeHarness, waitFor, waitResolvable } from '../node/helpers.ts'
import { int, prng } from './mutate.ts'

const NODES = 5
const PER_NODE = 200
/** sends in flight per node */
const CONCURRENCY = 8
/** how long a send waits for its first delivery attempt */
const FIRST_ATTEMPT_MS = 500

describe('robustness: 5 nodes × 200 messages with two restarts', function () {
  this.timeout(180_000)
  const h = new NodeHarness()
  after(async () => { await h.cleanup() })

  it('delivers every message exactly once', async function () {
    const rnd = prng(Number(process.env.TOKENIM_FUZZ_SEED ?? 5150))
    const tStart = Date.now()
    const nodes: TokenimNode[] = await Promise.all(Array.from({ length: NODES }, async () => await h.node()))
    await Promise.all(nodes.flatMap(a => nodes.filter(b => b !== a).map(async b => { await waitResolvable(a, b) })))
    const setupMs = Date.now() - tStart
    const addresses = nodes.map(n => n.address)

    // the plan: who sends what to whom (texts are unique)
    const plan = nodes.map((_, i) => Array.from({ length: PER_NODE }, (_, j) => {
      let to = int(rnd, NODES - 1)
      if (to >= i) to++
      return { to, text: `n${i}-m${j} ${'x'.repeat(int(rnd, 200))}` }
    }))
    // two distinct nodes restarted, after about 1/3 and 2/3 of all sends
    const first = int(rnd, NODES)
    const second = (first + 1 + int(rnd, NODES - 1)) % NODES
    const restarts = [{ node: first, after: Math.floor(NODES * PER_NODE / 3) }, { node: second, after: Math.floor(2 * NODES * PER_NODE / 3) }]

    const down = new Array<boolean>(NODES).fill(false)
    const inFlight = Array.from({ length: NODES }, () => new Set<Promise<unknown>>())
    const sentIds = nodes.map(() => new Map<string, string>()) // id -> text
    let sent = 0
    let restartChain: Promise<void> = Promise.resolve()
    const restarted: number[] = []

    async function restart (i: number): Promise<void> {
      down[i] = true
      await Promise.all([...inFlight[i]]) // no send() call of node i overlaps its stop (deliveries in the background may)
      const dataDir = nodes[i].dataDir
      await nodes[i].stop()
      // the others keep sending to it (their sends queue) while it is down
      await waitFor(() => sent >= restarts[restarted.length].after + 60 || sent >= NODES * PER_NODE - 20, 'traffic while a node is down', 60_000)
      nodes[i] = await h.node({ dataDir })
      restarted.push(i)
      down[i] = false
    }

    async function sender (i: number): Promise<void> {
      let next = 0
      const one = async (k: number): Promise<void> => {
        const { to, text } = plan[i][k]
        // stop waiting for the first attempt after a while: the message stays queued and the outbox retries it
        const r = await nodes[i].send(addresses[to], text, { signal: AbortSignal.timeout(FIRST_ATTEMPT_MS) })
        assert.ok(r.status === 'delivered' || r.status === 'queued', r.status)
        sentIds[i].set(r.id, text)
        sent++
        for (const rs of restarts) {
          if (sent === rs.after) restartChain = restartChain.then(async () => { await restart(rs.node) })
        }
      }
      while (next < PER_NODE) {
        if (down[i]) { await waitFor(() => !down[i], `node ${i} back`, 60_000, 20); continue }
        while (inFlight[i].size < CONCURRENCY && next < PER_NODE && !down[i]) {
          const p = one(next++).finally(() => { inFlight[i].delete(p) })
          inFlight[i].add(p)
        }
        await Promise.race(inFlight[i])
      }
      await Promise.all([...inFlight[i]])
    }

    const t0 = Date.now()
    await Promise.all(nodes.map(async (_, i) => { await sender(i) }))
    await restartChain
    const sendMs = Date.now() - t0
    assert.deepEqual(restarted, [first, second], 'both restarts happened')

    // every outbox drains and every outgoing message is delivered
    const outgoing = async (n: TokenimNode): Promise<StoredMessage[]> => (await n.messages()).filter(m => m.direction === 'out')
    await waitFor(async () => {
      for (const n of nodes) {
        if ((await n.status()).outbox > 0) return false
        if ((await outgoing(n)).some(m => m.status !== 'delivered')) return false
      }
      return true
    }, 'all outboxes drained and delivered', 120_000, 200)
    const drainMs = Date.now() - t0 - sendMs

    const allIncoming = new Map<string, StoredMessage>()
    for (let i = 0; i < NODES; i++) {
      const mine = await nodes[i].messages()
      const ids = mine.map(m => m.id)
      assert.equal(new Set(ids).size, ids.length, `node ${i} stores no id twice`)
      const out = mine.filter(m => m.direction === 'out')
      // the sender's store holds exactly what it was asked to send
      assert.deepEqual(new Set(out.map(m => m.id)), new Set(sentIds[i].keys()), `node ${i}: outgoing ids`)
      assert.deepEqual(out.map(m => m.text).sort(), plan[i].map(p => p.text).sort(), `node ${i}: outgoing texts`)
      for (const m of mine.filter(m => m.direction === 'in')) {
        assert.ok(!allIncoming.has(m.id), `message ${m.id} received twice`)
        assert.equal(m.to.toLowerCase(), addresses[i].toLowerCase())
        allIncoming.set(m.id, m)
      }
    }
    // every message arrived once, at the right node, from the right sender, intact
    assert.equal(allIncoming.size, NODES * PER_NODE)
    for (let i = 0; i < NODES; i++) {
      for (const [id, text] of sentIds[i]) {
        const got = allIncoming.get(id)
        assert.ok(got !== undefined, `message ${id} from node ${i} was lost`)
        assert.equal(got.text, text)
        assert.equal(got.from.toLowerCase(), addresses[i].toLowerCase())
        assert.equal(got.to.toLowerCase(), addresses[plan[i].find(p => p.text === text)!.to].toLowerCase())
      }
    }
    for (const n of nodes) assert.deepEqual(await n.store.checkConsistency(), [])
    this.test!.title += ` (setup ${(setupMs / 1000).toFixed(1)} s, send ${(sendMs / 1000).toFixed(1)} s, drain ${(drainMs / 1000).toFixed(1)} s, restarted ${first} and ${second})`
  })
})
