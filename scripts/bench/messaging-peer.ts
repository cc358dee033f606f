/**
 * The receiving node of the messaging bench (scripts/bench/messaging.ts), in a child process of its own:
 * two peers on one machine each have their own CPU, as real peers do, and the raw references it serves
 * (echo, ping) run the same way. Started with `fork()`; the init comes as one JSON argument.
 *
 * IPC: it sends `{ type: 'ready', address, peerId }` once started (and able to resolve the sender), answers
 * `{ type: 'status' }` with `{ type: 'status', received }`, and `{ type: 'stop' }` by stopping its node and
 * exiting. It also stops when the parent goes away (the IPC channel closes).
 */
import { TokenimNode } from '../../src/node/index.ts'
import { serveEcho, UNLIMITED } from './messaging.ts'
import { until } from './util.ts'

export interface PeerInit {
  dataDir: string
  password: string
  bootstrap: string
  /** the sender's address: resolvable before `ready` */
  sender: string
}

export type PeerRequest = { type: 'status' } | { type: 'stop' }
export type PeerReply =
  | { type: 'ready', address: string, peerId: string }
  | { type: 'status', received: number }
  | { type: 'error', message: string }

const send = (reply: PeerReply): void => { process.send?.(reply) }

async function main (): Promise<void> {
  const init = JSON.parse(process.argv[2] ?? '{}') as PeerInit
  const node = await TokenimNode.open({ dataDir: init.dataDir, password: init.password, messaging: { rateLimit: UNLIMITED }, bootstrap: [init.bootstrap] })
  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopping ??= node.stop().finally(() => { process.disconnect?.() })
    await stopping
  }
  process.on('disconnect', () => { void stop() })
  try {
    await node.start()
    await serveEcho(node.p2p)
    await until('the sender to be resolvable', async () => await node.resolve(init.sender, { timeoutMs: 3_000 }).then(() => true, () => false))
  } catch (err) {
    send({ type: 'error', message: (err as Error).message })
    await stop()
    return
  }
  process.on('message', (m: PeerRequest) => {
    if (m.type === 'status') {
      void node.status().then(s => { send({ type: 'status', received: s.messaging.received }) })
    } else if (m.type === 'stop') {
      void stop()
    }
  })
  send({ type: 'ready', address: node.address, peerId: node.p2p.peerId.toString() })
}

await main()
