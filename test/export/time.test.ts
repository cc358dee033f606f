import assert from 'node:assert/strict'
import { isTokenimError } from '../../src/errors.ts'
import { parseTime, parseTimeRange } from '../../src/cli/time.ts'

describe('cli time parsing (--since/--until)', () => {
  const now = 1_700_000_000_000

  it('ms since the epoch', () => {
    assert.equal(parseTime('0'), 0)
    assert.equal(parseTime('1700000000123'), 1_700_000_000_123)
    assert.equal(parseTime(' 42 '), 42)
  })

  it('relative durations mean that long ago', () => {
    assert.equal(parseTime('2h', { now }), now - 2 * 3_600_000)
    assert.equal(parseTime('7d', { now }), now - 7 * 86_400_000)
    assert.equal(parseTime('90s', { now }), now - 90_000)
    assert.equal(parseTime('15m', { now }), now - 15 * 60_000)
    assert.equal(parseTime('2w', { now }), now - 14 * 86_400_000)
    assert.equal(parseTime('500ms', { now }), now - 500)
    assert.equal(parseTime('1.5h', { now }), now - 5_400_000)
    assert.equal(parseTime('100000d', { now }), 0)
  })

  it('ISO dates and date-times, with zones, and local time without', () => {
    assert.equal(parseTime('2023-11-14T22:13:20Z'), Date.UTC(2023, 10, 14, 22, 13, 20))
    assert.equal(parseTime('2023-11-14 22:13:20.5z'), Date.UTC(2023, 10, 14, 22, 13, 20, 500))
    assert.equal(parseTime('2023-11-14T22:13+02:00'), Date.UTC(2023, 10, 14, 20, 13))
    assert.equal(parseTime('2023-11-14T22:13-0130'), Date.UTC(2023, 10, 14, 23, 43))
    assert.equal(parseTime('2023-11-14T22:13'), new Date(2023, 10, 14, 22, 13).getTime())
    assert.equal(parseTime('2023-11-14'), new Date(2023, 10, 14).getTime())
    assert.equal(parseTime('2023-11-14', { end: true }), new Date(2023, 10, 15).getTime() - 1)
    assert.equal(parseTime('2024-02-29'), new Date(2024, 1, 29).getTime())
  })

  it('anything else is a USAGE error naming the flag', () => {
    for (const bad of ['', 'yesterday', '2h ago', '-5', '1e3', '2023-02-30', '2023-13-01', '2023-11-14T25:00Z', '2023-11-14T22:61', '99999999999999999999', '2023-11-14T22:13+25:00', '5y', 'NaN']) {
      assert.throws(() => parseTime(bad, { flag: '--since' }), err => isTokenimError(err, 'USAGE') && err.message.startsWith('--since'), bad)
    }
  })

  it('ranges: inclusive, --until date covers the day, since after until refused', () => {
    assert.deepEqual(parseTimeRange(undefined, undefined), {})
    assert.deepEqual(parseTimeRange('1000', '2000'), { since: 1000, until: 2000 })
    assert.deepEqual(parseTimeRange('1000', '1000'), { since: 1000, until: 1000 })
    assert.deepEqual(parseTimeRange('2023-11-14T00:00Z', undefined), { since: Date.UTC(2023, 10, 14) })
    assert.deepEqual(parseTimeRange('2d', '1d', now), { since: now - 2 * 86_400_000, until: now - 86_400_000 })
    assert.throws(() => parseTimeRange('2000', '1000'), err => isTokenimError(err, 'USAGE'))
    assert.throws(() => parseTimeRange('1d', '2d', now), err => isTokenimError(err, 'USAGE'))
  })
})
