import assert from 'node:assert/strict'
import {
  MAX_MESSAGE_BYTES, messagesQueryString, parseAddress, parseContactName, parseCount, parseMessagesQuery, parseMessageText, parseObject, parseTimestamp
} from '../../src/api/index.ts'

const CHECKSUMMED = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'

describe('api input validation', () => {
  it('addresses: lowercase, uppercase or EIP-55; returns the checksummed form', () => {
    assert.equal(parseAddress(CHECKSUMMED), CHECKSUMMED)
    assert.equal(parseAddress(CHECKSUMMED.toLowerCase()), CHECKSUMMED)
    assert.equal(parseAddress('0x' + CHECKSUMMED.slice(2).toUpperCase()), CHECKSUMMED)
    const badChecksum = CHECKSUMMED.slice(0, -1) + 'c'
    for (const bad of [badChecksum, '0x1234', CHECKSUMMED.slice(2), CHECKSUMMED + '0', `${CHECKSUMMED.slice(0, -1)}g`, 42, undefined, null]) {
      assert.throws(() => parseAddress(bad, 'to'), { code: 'INVALID_ADDRESS' }, String(bad))
    }
  })

  it('message texts: non-blank, at most 64 KiB of UTF-8', () => {
    assert.equal(parseMessageText('hi'), 'hi')
    assert.equal(parseMessageText('x'.repeat(MAX_MESSAGE_BYTES)).length, MAX_MESSAGE_BYTES)
    for (const bad of ['', '  \n', 'x'.repeat(MAX_MESSAGE_BYTES + 1), 'é'.repeat(MAX_MESSAGE_BYTES / 2 + 1), 5, undefined]) {
      assert.throws(() => parseMessageText(bad), { code: 'INVALID_MESSAGE' })
    }
  })

  it('contact names, counts, timestamps, bodies', () => {
    assert.equal(parseContactName('  bob '), 'bob')
    for (const bad of ['', '   ', 'a'.repeat(257), 'bo\nb', 7]) assert.throws(() => parseContactName(bad), { code: 'INVALID_ARGUMENT' })
    assert.equal(parseCount('20', 'limit'), 20)
    assert.equal(parseCount(0, 'limit'), 0)
    for (const bad of ['-1', '1.5', 'abc', '', 1e12]) assert.throws(() => parseCount(bad, 'limit'), { code: 'INVALID_ARGUMENT' })
    assert.equal(parseTimestamp('1767225600000', 'since'), 1767225600000)
    for (const bad of ['2h', '2026-01-01', '-5', 1.5, 'x']) assert.throws(() => parseTimestamp(bad, 'since'), { code: 'INVALID_ARGUMENT' })
    assert.deepEqual(parseObject({ a: 1 }), { a: 1 })
    for (const bad of [null, [], 'x', 3]) assert.throws(() => parseObject(bad), { code: 'INVALID_ARGUMENT' })
  })

  it('messages queries round-trip through the query string', () => {
    const q = { peer: CHECKSUMMED, since: 1, until: 1767225600000, limit: 20 }
    const text = messagesQueryString(q)
    assert.deepEqual(parseMessagesQuery(new URLSearchParams(text.slice(1))), q)
    assert.equal(messagesQueryString({}), '')
    assert.deepEqual(parseMessagesQuery(new URLSearchParams('')), {})
    assert.throws(() => parseMessagesQuery(new URLSearchParams('peer=0x12')), { code: 'INVALID_ADDRESS' })
    assert.throws(() => parseMessagesQuery(new URLSearchParams('limit=ten')), { code: 'INVALID_ARGUMENT' })
  })
})
