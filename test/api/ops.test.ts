import assert from 'node:assert/strict'
import { messageView } from '../../src/api/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'

describe('api views', () => {
  it('a message\'s attachment is shown without its content key', () => {
    const m = {
      id: 'm1',
      from: '0x' + 'ab'.repeat(20),
      to: '0x' + 'cd'.repeat(20),
      ts: 1,
      text: 'a picture',
      status: 'received',
      attachment: { cid: 'bafy…', key: 'secret-content-key', name: 'p.png', mime: 'image/png', size: 3, sha256: '00'.repeat(32) }
    } as unknown as StoredMessage
    const v = messageView(m)
    assert.deepEqual(v.attachment, { cid: 'bafy…', name: 'p.png', mime: 'image/png', size: 3, sha256: '00'.repeat(32) })
    assert.ok(!JSON.stringify(v).includes('secret-content-key'))
  })
})
