import assert from 'node:assert/strict'
import { on } from 'node:events'
import { MessageChannel, Worker } from 'node:worker_threads'
import { setTimeout as sleep } from 'node:timers/promises'
import type { CID } from 'multiformats/cid'
import { buildBackup, readBackup, verifyBackup } from '../../src/backup/index.ts'
import type { BuildBackupResult, VerifyBackupResult } from '../../src/backup/index.ts'
import { MAX_SEGMENT_PLAINTEXT } from '../../src/backup/constants.ts'
import { BoxOpener } from '../../src/backup/opener.ts'
import { open, seal } from '../../src/backup/seal.ts'
import { sharedSecret } from '../../src/util/worker-secret.ts'
import { KEY, OTHER_KEY, OWNER, collect, makeEnv, makeHistory } from './helpers.ts'
import type { Env } from './helpers.ts'

/** the opener once its worker is ready (polled, with a deadline) */
async function ready (opener: BoxOpener): Promise<BoxOpener> {
  const deadline = Date.now() + 30_000
  while (!opener.ready) {
    if (Date.now() > deadline) throw new Error('the open worker did not start')
    await sleep(10)
  }
  return opener
}

/** the worker's answer to a ticket, once it is there (polled, with a deadline) */
async function answer (opener: BoxOpener, ticket: number): Promise<Uint8Array | undefined> {
  assert.ok(ticket > 0, 'the worker took the box')
  const deadline = Date.now() + 30_000
  while (!opener.answered(ticket)) {
    if (Date.now() > deadline) throw new Error('the open worker did not answer')
    await sleep(5)
  }
  return opener.take(ticket)
}

function flip (bytes: Uint8Array, at: number): Uint8Array {
  const out = Uint8Array.from(bytes)
  out[at] ^= 0x01
  return out
}

describe('backup: segment boxes opened on a worker thread (BoxOpener)', function () {
  this.timeout(60_000)

  it('opens what seal.ts opens, answers a box it cannot open with undefined, and nothing once closed', async () => {
    const opener = await ready(new BoxOpener(KEY, { maxWaiting: 16 }))
    try {
      const plains = Array.from({ length: 20 }, (_, i) => new TextEncoder().encode(`segment ${i} `.repeat(50 + i)))
      const boxes = plains.map(p => seal(KEY, 'segment', p))
      // up to maxWaiting (16) at a time, answers not yet taken included; beyond it the caller opens the box
      const first = boxes.slice(0, 16).map(b => opener.submit('segment', b, MAX_SEGMENT_PLAINTEXT))
      assert.equal(opener.submit('segment', boxes[16], MAX_SEGMENT_PLAINTEXT), 0)
      const got: Array<Uint8Array | undefined> = []
      for (const t of first) got.push(await answer(opener, t))
      for (const b of boxes.slice(16)) got.push(await answer(opener, opener.submit('segment', b, MAX_SEGMENT_PLAINTEXT)))
      got.forEach((g, i) => { assert.deepEqual(g, open(KEY, 'segment', boxes[i], MAX_SEGMENT_PLAINTEXT)) })
      assert.equal(opener.opened, 20)
      // the caller keeps its box (a copy went to the worker)
      assert.deepEqual(open(KEY, 'segment', boxes[0], MAX_SEGMENT_PLAINTEXT), plains[0])
      // tampered, sealed under another key, another kind, over the limit: not opened there (the caller opens
      // it and meets the error)
      assert.equal(await answer(opener, opener.submit('segment', flip(boxes[1], 40), MAX_SEGMENT_PLAINTEXT)), undefined)
      assert.equal(await answer(opener, opener.submit('segment', seal(OTHER_KEY, 'segment', plains[1]), MAX_SEGMENT_PLAINTEXT)), undefined)
      assert.equal(await answer(opener, opener.submit('manifest', boxes[2], MAX_SEGMENT_PLAINTEXT)), undefined)
      assert.equal(await answer(opener, opener.submit('segment', boxes[3], 10)), undefined)
      // a ticket taken at once: the plaintext if the worker (on another core) has answered already, else
      // undefined (the caller opens the box) and the late answer is dropped; the ticket is done either way
      const early = opener.submit('segment', boxes[4], MAX_SEGMENT_PLAINTEXT)
      const taken = opener.take(early)
      if (taken !== undefined) assert.deepEqual(taken, plains[4])
      assert.equal(opener.answered(early), false)
      assert.equal(opener.take(0), undefined)
    } finally {
      await opener.close()
    }
    assert.equal(opener.ready, false)
    assert.equal(opener.submit('segment', seal(KEY, 'segment', new Uint8Array(10)), MAX_SEGMENT_PLAINTEXT), 0)
  })

  it('the worker wipes the shared copy of the key once it has imported it, and still opens with it', async () => {
    const key = sharedSecret(KEY)
    const { port1, port2 } = new MessageChannel()
    const worker = new Worker(new URL('../../src/backup/open-worker.ts', import.meta.url), { workerData: { key, port: port2 }, transferList: [port2] })
    try {
      const replies = on(port1, 'message')
      assert.deepEqual((await replies.next()).value, [{ ready: true }])
      assert.ok(key.every(b => b === 0), 'wiped')
      const plain = new TextEncoder().encode('a segment')
      worker.postMessage({ id: 1, kind: 'segment', box: seal(KEY, 'segment', plain), max: MAX_SEGMENT_PLAINTEXT })
      const [reply] = (await replies.next()).value as [{ plain: Uint8Array }]
      assert.deepEqual(Buffer.from(reply.plain), Buffer.from(plain))
    } finally {
      port1.close()
      await worker.terminate()
    }
  })

  it('a worker that cannot start takes nothing (the caller opens every box)', async () => {
    const opener = new BoxOpener(KEY, { workerUrl: new URL('./no-such-worker.ts', import.meta.url) })
    try {
      await sleep(300) // time to fail (it never becomes ready, however long)
      assert.equal(opener.ready, false)
      assert.equal(opener.submit('segment', seal(KEY, 'segment', new Uint8Array(10)), MAX_SEGMENT_PLAINTEXT), 0)
    } finally {
      await opener.close()
    }
  })

  describe('verifyBackup with and without it', () => {
    let env: Env
    let res: BuildBackupResult
    let segments: CID[]
    before(async () => {
      env = await makeEnv()
      await env.store.addMessages(makeHistory({ conversations: 3, messages: 600, seed: 23 }))
      res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 2, backupKey: KEY, segmentSize: 16 })
      segments = (await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })).links.segments
    })
    after(async () => { await env?.cleanup() })

    async function both (): Promise<Array<{ report: VerifyBackupResult, seen: Array<[number, string, number]> }>> {
      const out = []
      const opener = await ready(new BoxOpener(KEY))
      try {
        for (const o of [false, opener] as const) {
          const seen: Array<[number, string, number]> = []
          const report = await verifyBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, owner: OWNER, version: 2, attachments: true, opener: o, onSegment: (i, seg) => { seen.push([i, seg.conv, seg.type === 'rows' ? seg.rows.length : seg.msgs.length]) } })
          out.push({ report, seen })
        }
      } finally {
        await opener.close()
      }
      // boxes went to the worker (how many it answered in time depends on the machine's load)
      assert.ok(opener.opened + opener.late > 0, 'the worker was handed boxes')
      return out
    }

    it('gives the same report and the same segments, intact and damaged', async () => {
      const [plain, worker] = await both()
      assert.equal(plain.report.ok, true)
      assert.equal(plain.report.messages, 600)
      assert.deepEqual(worker, plain)
      // a missing segment and a flipped one: the same problems, in the same order, with the same places
      const last = segments[segments.length - 1]
      const lastBytes = Buffer.concat(await collect(env.blockstore.get(last)))
      await env.blockstore.delete(segments[3])
      await env.blockstore.put(last, flip(lastBytes, 60))
      const [plain2, worker2] = await both()
      assert.deepEqual(plain2.report.problems.map(p => [p.code, p.cid]), [['MISSING_BLOCK', segments[3].toString()], ['BACKUP_TAMPERED', last.toString()]])
      assert.deepEqual(worker2, plain2)
    })
  })
})
