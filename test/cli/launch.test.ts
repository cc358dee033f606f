/**
 * How the `tokenim` command starts Node: bin/tokenim.js's `#!/usr/bin/env -S NAME=value … node --flag …`
 * line sets glibc's malloc tunables and V8's heap flags (see the comment in bin/tokenim.js), and the RSS
 * bench's children (scripts/bench/rss.ts) start the same way.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { cliLaunch } from '../../scripts/bench/rss.ts'
import { BIN, output } from './helpers.ts'

describe('tokenim launch line', function () {
  this.timeout(30_000)

  it('parses the #! line: environment assignments, then node and its flags', () => {
    assert.deepEqual(cliLaunch('#!/usr/bin/env -S A=1 B=x:y=2 node --f=1 --g'), { env: { A: '1', B: 'x:y=2' }, flags: ['--f=1', '--g'] })
    assert.deepEqual(cliLaunch('#!/usr/bin/env -S node --f'), { env: {}, flags: ['--f'] })
    assert.deepEqual(cliLaunch('#!/usr/bin/env node'), { env: {}, flags: [] })
  })

  it('sets glibc\'s arena limit and the heap flags, and the bench children get them', () => {
    const { env, flags } = cliLaunch()
    assert.match(env.MALLOC_ARENA_MAX ?? '', /^\d+$/)
    assert.ok(flags.includes('--max-semi-space-size=16'), flags.join(' '))
    assert.ok(flags.includes('--heap-growing-percent=50'), flags.join(' '))
  })

  it('env -S runs node with them (as the kernel runs the #! line), and bin/tokenim.js runs as an executable', async () => {
    const line = (await readFile(BIN, 'utf8')).split('\n', 1)[0]
    assert.ok(line.length <= 127, 'within the #! line that Linux before 5.1 reads (127 bytes)')
    const [interpreter, arg] = [line.slice(2, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]
    // the kernel passes everything after the interpreter as one argument, then the script and its arguments
    const probe = await output(interpreter, [arg, '-e', 'console.log(JSON.stringify({ a: process.env.MALLOC_ARENA_MAX, f: process.execArgv }))'])
    assert.equal(probe.code, 0, probe.stderr)
    const seen = JSON.parse(probe.stdout) as { a: string, f: string[] }
    const { env, flags } = cliLaunch()
    assert.equal(seen.a, env.MALLOC_ARENA_MAX)
    assert.deepEqual(seen.f.filter(a => a.startsWith('--')), flags)
    const help = await output(BIN, ['--help'])
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /backup/)
  })
})
