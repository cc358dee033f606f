import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { callApi } from '../../src/api/index.ts'
import type { ApiInfo } from '../../src/cli/daemon-client.ts'
import { json, killAll, run, runJson, startDaemon, TempDirs, waitFor } from './helpers.ts'
import type { Daemon } from './helpers.ts'

interface Ready { address: string, peerId: string, multiaddrs: string[], api: string }
interface Message { id: string, from: string, to: string, ts: number, text: string, status: string, attachment?: unknown }
interface Status { address: string, peerId: string, running: boolean, peers: number, outbox: number, multiaddrs: string[] }

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

async function apiInfo (dir: string): Promise<ApiInfo | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'api.json'), 'utf8')) as ApiInfo
  } catch {
    return undefined
  }
}

/** The daemon's one JSON document on stdout (--json), once it has printed it. */
async function readyJson (d: Daemon): Promise<Ready> {
  return await waitFor(() => {
    if (d.child.exitCode !== null) throw new Error(`daemon exited ${d.child.exitCode}: ${d.stderr()}`)
    try { return JSON.parse(d.stdout()) as Ready } catch { return undefined }
  }, 'the daemon to be ready')
}

/** A pid that no process has: a child that has exited. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise(resolve => child.once('exit', resolve))
  return child.pid as number
}

describe('cli: daemon, send and messages between two daemons', function () {
  this.timeout(60_000)
  const tmp = new TempDirs()
  let dirA: string
  let dirB: string
  let a: Daemon
  let b: Daemon
  let readyA: Ready
  let addrA: string
  let addrB: string

  before(async () => {
    dirA = await tmp.make()
    dirB = await tmp.make()
    const [ia, ib] = await Promise.all([runJson<{ address: string }>(['init', '--data-dir', dirA]), runJson<{ address: string }>(['init', '--data-dir', dirB])])
    addrA = ia.address
    addrB = ib.address
  })

  after(async () => {
    await killAll()
    await tmp.cleanup()
  })

  it('starts a daemon: one JSON document once ready, api.json (0600) with the token, none in the output', async () => {
    a = startDaemon(['--data-dir', dirA, '--json'])
    readyA = await readyJson(a)
    assert.deepEqual(Object.keys(readyA).sort(), ['address', 'api', 'multiaddrs', 'peerId'])
    assert.equal(readyA.address, addrA)
    assert.match(readyA.api, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.ok(readyA.multiaddrs.length > 0 && readyA.multiaddrs.every(m => m.startsWith('/ip4/127.0.0.1/tcp/') && m.endsWith(`/p2p/${readyA.peerId}`)), readyA.multiaddrs.join(' '))
    const info = await apiInfo(dirA)
    assert.ok(info !== undefined)
    assert.equal(info.url, readyA.api)
    assert.equal(info.peerId, readyA.peerId)
    assert.deepEqual(info.multiaddrs, readyA.multiaddrs)
    assert.equal(info.pid, a.child.pid)
    assert.ok(info.token.length >= 32)
    assert.ok(!a.stdout().includes(info.token) && !a.stderr().includes(info.token), 'token printed')
    assert.equal((await stat(join(dirA, 'api.json'))).mode & 0o777, 0o600)
  })

  it('starts a second daemon (human output) bootstrapping from the first one\'s multiaddr', async () => {
    const info = await apiInfo(dirA)
    b = startDaemon(['--data-dir', dirB, '--bootstrap', info?.multiaddrs[0] ?? ''])
    await waitFor(async () => {
      if (b.child.exitCode !== null) throw new Error(`daemon B exited ${b.child.exitCode}: ${b.stderr()}`)
      return (await apiInfo(dirB)) !== undefined && b.stdout().includes('Ctrl-C to stop')
    }, 'daemon B to be ready')
    assert.match(b.stdout(), /tokenim daemon ready/)
    assert.ok(b.stdout().includes(addrB))
    // both see each other before messages are sent
    for (const dir of [dirA, dirB]) {
      const endpoint = await apiInfo(dir)
      assert.ok(endpoint !== undefined)
      await waitFor(async () => (await callApi<Status>(endpoint, 'GET', '/v1/status')).peers >= 1, `peers of ${dir}`)
    }
  })

  it('id and status go through the daemon', async () => {
    // on a loaded machine libp2p's connection monitor can drop the one connection (a ping over its
    // timeout) and B redials its bootstrap peer: wait for it rather than racing it
    const endpointB = await apiInfo(dirB)
    assert.ok(endpointB !== undefined)
    await waitFor(async () => (await callApi<Status>(endpointB, 'GET', '/v1/status')).peers >= 1, 'B to be connected', 45_000)
    const [id, status] = await Promise.all([
      runJson<{ address: string, multiaddrs: string[] }>(['id', '--data-dir', dirA]),
      runJson<Status>(['status', '--data-dir', dirB])
    ])
    assert.deepEqual(id.multiaddrs, readyA.multiaddrs)
    assert.equal(status.running, true)
    assert.equal(status.address, addrB)
    assert.ok(status.peers >= 1)
    assert.equal(status.outbox, 0)
    assert.ok(status.multiaddrs.length > 0)
  })

  it('sends both ways through the daemons and lists the messages oldest first', async () => {
    const ab = await runJson<{ id: string, status: string }>(['send', addrB, 'hello B, from A', '--data-dir', dirA])
    assert.deepEqual(Object.keys(ab).sort(), ['id', 'status'])
    assert.equal(ab.status, 'delivered')
    const ba = await runJson<{ id: string, status: string }>(['send', addrA.toLowerCase(), 'hi A, B here', '--data-dir', dirB])
    assert.equal(ba.status, 'delivered')

    const [listA, listB] = await Promise.all([
      runJson<Message[]>(['messages', '--data-dir', dirA]),
      runJson<Message[]>(['messages', addrA, '--data-dir', dirB])
    ])
    for (const list of [listA, listB]) {
      assert.equal(list.length, 2)
      assert.deepEqual(list.map(m => m.id), [ab.id, ba.id])
      for (const m of list) assert.deepEqual(Object.keys(m).sort(), ['from', 'id', 'status', 'text', 'to', 'ts'])
      assert.ok(list[0].ts <= list[1].ts)
      assert.deepEqual(list.map(m => [m.from, m.to, m.text]), [[addrA, addrB, 'hello B, from A'], [addrB, addrA, 'hi A, B here']])
    }
    assert.deepEqual(listA.map(m => m.status), ['delivered', 'received'])
    assert.deepEqual(listB.map(m => m.status), ['received', 'delivered'])
    // the human daemon logs incoming messages on stderr
    await waitFor(() => b.stderr().includes('hello B, from A'), 'daemon B to log the message')
    // filters: --limit keeps the newest, --since in the future keeps none
    const [newest, none] = await Promise.all([
      runJson<Message[]>(['messages', '--limit', '1', '--data-dir', dirA]),
      runJson<Message[]>(['messages', '--since', String(Date.now() + 60_000), '--data-dir', dirA])
    ])
    assert.deepEqual(newest.map(m => m.id), [ba.id])
    assert.deepEqual(none, [])
  })

  it('contacts through the daemon, and names in the human messages table', async () => {
    const c = await runJson<{ address: string, name: string }>(['contacts', 'add', addrB.toLowerCase(), '--name', 'bob', '--data-dir', dirA])
    assert.deepEqual({ address: c.address, name: c.name }, { address: addrB, name: 'bob' })
    const [list, human] = await Promise.all([
      runJson<Array<{ address: string, name: string }>>(['contacts', '--data-dir', dirA]),
      run(['messages', '--data-dir', dirA])
    ])
    assert.deepEqual(list.map(x => [x.address, x.name]), [[addrB, 'bob']])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /WHEN\s+FROM\s+TO\s+STATUS\s+TEXT/)
    assert.match(human.stdout, /ago\s+me\s+bob\s+delivered\s+hello B, from A/)
    assert.match(human.stdout, /ago\s+bob\s+me\s+received\s+hi A, B here/)
  })

  it('export goes through the daemon that holds the store', async () => {
    const out = join(dirA, 'export.json')
    const r = await runJson<{ file: string, messages: number, conversations: number }>(['export', '--out', out, '--data-dir', dirA])
    assert.deepEqual({ file: r.file, messages: r.messages, conversations: r.conversations }, { file: out, messages: 2, conversations: 1 })
    const doc = JSON.parse(await readFile(out, 'utf8')) as { conversations: Array<{ peer: string, name?: string, messages: Message[] }> }
    assert.deepEqual(doc.conversations.map(c => [c.peer, c.name, c.messages.map(m => m.text)]), [[addrB.toLowerCase(), 'bob', ['hello B, from A', 'hi A, B here']]])
    assert.equal((await stat(out)).mode & 0o777, 0o600)
  })

  it('backup goes through the daemon', async () => {
    const r = await run(['backup', '--no-anchor', '--data-dir', dirA])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /backing up through the running daemon/)
    assert.match(r.stdout, /^backup version 1: local only/)
    assert.match(r.stdout, /messages {2}2\n/)
  })

  it('refuses a second daemon on the same data dir: DAEMON_RUNNING, exit 6', async () => {
    const r = await run(['daemon', '--data-dir', dirA, '--json'])
    assert.equal(r.code, 6)
    assert.equal(json<{ error: { code: string } }>(r).error.code, 'DAEMON_RUNNING')
    assert.ok(await exists(join(dirA, 'api.json')), 'the running daemon\'s api.json was touched')
  })

  it('the API refuses a missing or wrong token with 401', async () => {
    const none = await fetch(readyA.api + '/v1/status')
    assert.equal(none.status, 401)
    const wrong = await fetch(readyA.api + '/v1/messages', { headers: { authorization: 'Bearer not-the-token' } })
    assert.equal(wrong.status, 401)
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED')
    const send = await fetch(readyA.api + '/v1/send', { method: 'POST', body: JSON.stringify({ to: addrB, text: 'x' }) })
    assert.equal(send.status, 401)
  })

  it('the API validates bodies and queries', async () => {
    const endpoint = await apiInfo(dirA)
    assert.ok(endpoint !== undefined)
    await assert.rejects(callApi(endpoint, 'POST', '/v1/send', { to: '0x12', text: 'x' }), { code: 'INVALID_ADDRESS' })
    await assert.rejects(callApi(endpoint, 'POST', '/v1/send', { to: addrB, text: '' }), { code: 'INVALID_MESSAGE' })
    await assert.rejects(callApi(endpoint, 'POST', '/v1/send', { to: addrB, text: 'x'.repeat(65537) }), { code: 'INVALID_MESSAGE' })
    await assert.rejects(callApi(endpoint, 'POST', '/v1/send', ['nope']), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(callApi(endpoint, 'GET', '/v1/messages?limit=abc'), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(callApi(endpoint, 'GET', '/v1/messages?since=2h'), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(callApi(endpoint, 'POST', '/v1/contacts', { address: addrB, name: '' }), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(callApi(endpoint, 'GET', '/v1/nope'), { code: 'NOT_FOUND' })
  })

  it('SIGTERM stops the daemon within seconds: exit 0, no api.json, lock released', async () => {
    const t0 = Date.now()
    a.child.kill('SIGTERM')
    assert.equal(await a.exited, 0)
    assert.ok(Date.now() - t0 < 8_000, `took ${Date.now() - t0} ms`)
    assert.equal(await exists(join(dirA, 'api.json')), false)
    assert.equal(await exists(join(dirA, 'daemon.lock')), false)
    const id = await runJson<{ multiaddrs: string[] }>(['id', '--data-dir', dirA])
    assert.deepEqual(id.multiaddrs, [])
  })

  it('a message to a stopped daemon is queued, and delivered when it runs again (stale lock taken over)', async () => {
    const sent = await runJson<{ id: string, status: string }>(['send', addrA, 'while you were away', '--data-dir', dirB])
    assert.equal(sent.status, 'queued')
    // a crashed daemon leaves its lock and api.json behind
    const pid = await deadPid()
    await writeFile(join(dirA, 'daemon.lock'), String(pid), { mode: 0o600 })
    await writeFile(join(dirA, 'api.json'), JSON.stringify({ url: 'http://127.0.0.1:9', token: 'x', peerId: readyA.peerId, multiaddrs: [], pid }), { mode: 0o600 })
    const offline = await runJson<Status>(['status', '--data-dir', dirA])
    assert.equal(offline.running, false)

    const infoB = await apiInfo(dirB)
    a = startDaemon(['--data-dir', dirA, '--json', '--bootstrap', infoB?.multiaddrs[0] ?? ''])
    await readyJson(a)
    assert.equal((await apiInfo(dirA))?.pid, a.child.pid)
    const endpointA = await apiInfo(dirA)
    assert.ok(endpointA !== undefined)
    const got = await waitFor(async () => (await callApi<Message[]>(endpointA, 'GET', `/v1/messages?peer=${addrB}`)).find(m => m.id === sent.id), 'the queued message to arrive', 40_000, 200)
    assert.equal(got.text, 'while you were away')
    assert.equal(got.status, 'received')
  })

  it('SIGINT stops the daemon cleanly with exit 130', async () => {
    b.child.kill('SIGINT')
    assert.equal(await b.exited, 130)
    assert.equal(await exists(join(dirB, 'api.json')), false)
    assert.equal(await exists(join(dirB, 'daemon.lock')), false)
    a.child.kill('SIGTERM')
    assert.equal(await a.exited, 0)
  })
})
