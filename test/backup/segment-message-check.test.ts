import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { checkSegmentMessage, checkSegmentMessageFully, toSegmentMessage } from '../../src/backup/schema.ts'
import { makeHistory, prng } from './helpers.ts'

/** what a check gives: the message, or the error's code, message and info */
function outcome (f: () => unknown): unknown {
  try {
    return { ok: f() }
  } catch (err) {
    const e = err as { code?: unknown, message?: unknown, info?: unknown }
    return { code: e.code, message: e.message, info: e.info }
  }
}

describe('backup: the segment message check\'s common case gives the full check\'s answers', () => {
  it('the same message or the same error, for valid messages and every kind of damage', () => {
    const history = makeHistory({ conversations: 4, messages: 400, attachments: 0.2, seed: 12 })
    const rnd = prng(3)
    const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
    const damage: Array<(m: Record<string, unknown>) => unknown> = [
      m => m,
      m => ({ ...m, extra: 1 }),
      m => { const { text: _, ...rest } = m; return rest },
      m => { const { status: _, ...rest } = m; return { ...rest, receivedAt: 5 } },
      m => ({ ...m, id: '' }), m => ({ ...m, id: 'a b' }), m => ({ ...m, id: 'x'.repeat(129) }), m => ({ ...m, id: 7 }),
      m => ({ ...m, direction: 'sideways' }),
      m => ({ ...m, direction: m.direction === 'in' ? 'out' : 'in' }),
      m => ({ ...m, from: String(m.from).toUpperCase() }), m => ({ ...m, to: '0x1234' }), m => ({ ...m, to: null }),
      m => ({ ...m, status: 'lost' }), m => ({ ...m, status: ['sent'] }),
      m => ({ ...m, ts: -1 }), m => ({ ...m, ts: 1.5 }), m => ({ ...m, ts: 2 ** 53 }), m => ({ ...m, ts: '1' }), m => ({ ...m, ts: -0 }),
      m => ({ ...m, text: 'é'.repeat(1_000_000) }), m => ({ ...m, text: 'é'.repeat(1_000_001) }), m => ({ ...m, text: 3 }),
      m => ({ ...m, receivedAt: 0 }), m => ({ ...m, receivedAt: -2 }), m => ({ ...m, receivedAt: undefined }),
      m => ({ ...m, attachment: { cid: cid.toString(), key: 'k', name: 'n', mime: 'text/plain', size: 1, sha256: 'ab'.repeat(32) } }),
      m => ({ ...m, attachment: null }),
      m => Object.assign(Object.create(null) as object, m),
      m => Object.assign(Object.create({ inherited: true }) as object, m),
      m => [m], () => null, () => 'message', () => new Uint8Array(3), () => cid,
      m => ({ ...m, '/': cid.bytes }),
      m => ({ ...m, asCID: 1 })
    ]
    let checked = 0
    for (const raw of history) {
      const m = toSegmentMessage(raw) as unknown as Record<string, unknown>
      const conv = raw.conversation
      for (const d of damage) {
        if (rnd() < 0.7 && d !== damage[0]) continue
        const v = d({ ...m })
        const where = { conversation: conv, segment: 3 }
        assert.deepEqual(outcome(() => checkSegmentMessage(v, conv, where)), outcome(() => checkSegmentMessageFully(v, conv, where)))
        checked++
      }
      // another conversation's message
      const other = '0x' + 'ee'.repeat(20)
      assert.deepEqual(outcome(() => checkSegmentMessage(m, other, {})), outcome(() => checkSegmentMessageFully(m, other, {})))
    }
    assert.ok(checked > 3000)
  })
})
