/**
 * Relayed anchoring end to end, as child processes on a real devnet whose chain id is not 31337, so
 * no wallet is funded by the node (what an unfunded wallet meets on a real chain): the owner's backup
 * stays pending (INSUFFICIENT_FUNDS), `anchor-request` signs for it, a second identity runs `relay`
 * and pays, the owner's `backup --anchor-pending` records the relayer's anchor, and `backups`,
 * `verify` and `restore` accept it. The request checks themselves: test/chain/relay.test.ts.
 */
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Wallet } from 'ethers'
import { makeAnchorRequest } from '../../src/api/relay-routes.ts'
import { backupHealth } from '../../src/backup/job/index.ts'
import { RegistryClient, cidFromDigest, createAnchorRequest, relayAnchorRequest, startDevnet, writeChainProfile } from '../../src/chain/index.ts'
import type { AnchorRequest, Devnet } from '../../src/chain/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { createIdentity, deriveKeys } from '../../src/identity/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store } from '../../src/store/index.ts'
import { makeHistory } from '../backup/helpers.ts'
import { PASSWORD, TempDirs, json, killAll, run, startDaemon, waitFor } from './helpers.ts'

const MNEMONIC = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about'
/** a chain id the node does not fund itself on (ensureFunds tops up only on 31337) */
const CHAIN_ID = 31_338
const T = { timeoutMs: 90_000 }

function errorCode (r: { stdout: string }): string {
  return (JSON.parse(r.stdout) as { error: { code: string } }).error.code
}

describe('cli: relayed anchoring (anchor-request → relay → backup --anchor-pending) on a chain that does not fund wallets', function () {
  this.timeout(180_000)
  const dirs = new TempDirs()
  const clients: RegistryClient[] = []
  let devnet: Devnet
  let owner: string
  let relayer: string
  let ownerAddress: string
  let asRelayerClient: RegistryClient
  let reader: RegistryClient

  before(async () => {
    devnet = await startDevnet({ chainId: CHAIN_ID })
    owner = await dirs.make('tokenim-relay-owner-')
    relayer = await dirs.make('tokenim-relay-relayer-')
    ownerAddress = (await createIdentity(owner, { phrase: MNEMONIC, password: PASSWORD, scryptN: 1024 })).address
    const created = await createIdentity(relayer, { password: PASSWORD, scryptN: 1024 })
    for (const dir of [owner, relayer]) await writeChainProfile(join(dir, 'chain.json'), devnet.profile)
    reader = new RegistryClient(devnet.profile)
    asRelayerClient = new RegistryClient(devnet.profile, deriveKeys(created.mnemonic as string).wallet)
    clients.push(reader, asRelayerClient)
    // the relayer's wallet is funded from outside (as someone funds it on a real chain); the owner's never is
    await reader.provider.send('hardhat_setBalance', [created.address, '0x56bc75e2d63100000'])
    const store = await openStore(join(owner, 'store'))
    await store.addMessages(makeHistory({ conversations: 3, messages: 60, seed: 7 }))
    await store.close()
  })
  after(async () => {
    await killAll()
    for (const c of clients) c.close()
    await devnet?.stop()
    await dirs.cleanup()
  })

  const asOwner = (...args: string[]): string[] => ['--data-dir', owner, ...args]
  const asRelayer = (...args: string[]): string[] => ['--data-dir', relayer, ...args]
  async function withOwnerStore<T> (fn: (store: Store) => Promise<T>): Promise<T> {
    const store = await openStore(join(owner, 'store'), { createIfMissing: false })
    try {
      return await fn(store)
    } finally {
      await store.close()
    }
  }

  it('an unfunded owner gets its pending version anchored by a relayer and records it; verify and restore accept it', async () => {
    const car = join(owner, 'v1.car')
    const b = await run(asOwner('backup', '--out', car, '--json'), T)
    assert.equal(b.code, 10, b.stderr)
    const backup = json(b)
    assert.equal(backup.outcome, 'pending')
    assert.match(b.stderr, /INSUFFICIENT_FUNDS/)
    assert.match(b.stderr, /tokenim anchor-request/)

    const reqFile = join(owner, 'anchor-request.json')
    const q = await run(asOwner('anchor-request', '--out', reqFile, '--json'), T)
    assert.equal(q.code, 0, q.stderr)
    const printed = json(q)
    const request = JSON.parse(await readFile(reqFile, 'utf8')) as AnchorRequest
    assert.deepEqual(Object.keys(request).sort(), ['chainId', 'cid', 'deadline', 'digest', 'owner', 'registry', 'signature', 'version'])
    assert.deepEqual(printed, { file: reqFile, ...request })
    assert.deepEqual([request.owner, request.version, request.cid, request.digest, request.chainId, request.registry],
      [ownerAddress, 1, backup.cid, backup.digest, CHAIN_ID, devnet.registry])
    assert.ok(request.deadline > Date.now() / 1000 + 6 * 86_400, 'the default deadline is 7 days')
    assert.equal((await stat(reqFile)).mode & 0o777, 0o644)
    // an existing file is not replaced
    const again = await run(asOwner('anchor-request', '--out', reqFile, '--json'), T)
    assert.deepEqual([again.code, errorCode(again)], [7, 'FILE_EXISTS'])

    // a relayer without funds is told so (not to find a relayer)
    const unfunded = new RegistryClient(devnet.profile, Wallet.createRandom())
    clients.push(unfunded)
    await assert.rejects(relayAnchorRequest(unfunded, request), (e: unknown) => isTokenimError(e, 'INSUFFICIENT_FUNDS') && /relaying wallet/.test(e.message))

    const r = await run(asRelayer('relay', reqFile, '--json'), T)
    assert.equal(r.code, 0, r.stderr)
    const relayed = json(r)
    assert.deepEqual([relayed.owner, relayed.version, relayed.alreadyAnchored], [ownerAddress, 1, false])
    assert.match(relayed.txHash as string, /^0x[0-9a-f]{64}$/)
    assert.ok((relayed.gasUsed as number) > 0 && (relayed.gasUsed as number) < 100_000)
    assert.equal(await reader.provider.getBalance(ownerAddress), 0n, 'the owner paid nothing')

    // relaying it again sends nothing; a request for another bundle under that version can no longer be used
    const twice = await relayAnchorRequest(asRelayerClient, request)
    assert.deepEqual([twice.alreadyAnchored, twice.txHash, twice.gasUsed], [true, relayed.txHash, 0])
    const other = await createAnchorRequest(devnet.profile, deriveKeys(MNEMONIC).wallet, { version: 1, digest: '0x' + 'ab'.repeat(32), deadline: request.deadline })
    await assert.rejects(relayAnchorRequest(asRelayerClient, other), (e: unknown) => isTokenimError(e, 'ROLLBACK_REJECTED'))
    // a second request for the version says it is anchored already
    const late = await run(asOwner('anchor-request', '--out', join(owner, 'late.json'), '--json'), T)
    assert.deepEqual([late.code, errorCode(late)], [6, 'ALREADY_ANCHORED'])

    // the owner's node records the relayer's anchor (no second anchor, no funds needed)
    const p = await run(asOwner('backup', '--anchor-pending', '--json'), T)
    assert.equal(p.code, 0, p.stderr)
    const pending = json<{ versions: Array<{ version: number, anchored: boolean, txHash?: string }>, pending: number[], conflicts: number[] }>(p)
    assert.deepEqual(pending.versions.map(v => [v.version, v.anchored, v.txHash]), [[1, true, relayed.txHash]])
    assert.deepEqual([pending.pending, pending.conflicts], [[], []])

    const list = json<Array<Record<string, unknown>>>(await run(asOwner('backups', '--json'), T))
    assert.deepEqual(list.map(e => [e.version, e.status, e.txHash]), [[1, 'anchored', relayed.txHash]])
    await withOwnerStore(async (store) => {
      const health = await backupHealth(store)
      assert.deepEqual([health.pending, health.last?.status, health.lastAnchored?.txHash], [[], 'anchored', relayed.txHash])
      await assert.rejects(makeAnchorRequest({ store, wallet: deriveKeys(MNEMONIC).wallet, profile: devnet.profile }, { deadline: request.deadline }),
        (e: unknown) => isTokenimError(e, 'NO_PENDING_BACKUP'))
    })

    const v = await run(asOwner('verify', '--file', car, '--json'), T)
    assert.equal(v.code, 0, v.stdout + v.stderr)
    assert.equal(json(v).ok, true)
    const words = join(owner, 'words.txt')
    await writeFile(words, MNEMONIC + '\n', { mode: 0o600 })
    const target = await dirs.make('tokenim-relay-restored-')
    const rs = await run(['--data-dir', join(target, 'd'), '--chain', join(owner, 'chain.json'), 'restore', '--mnemonic-file', words, '--file', car, '--json'], T)
    assert.equal(rs.code, 0, rs.stdout + rs.stderr)
    assert.deepEqual([json(rs).ok, json(rs).version, json(rs).messages], [true, 1, 60])
  })

  it('through the daemons (no password): the owner\'s daemon signs, the relayer\'s refuses an altered request (INVALID_SIGNATURE, exit 3) and relays the real one', async () => {
    const daemons = [startDaemon(['--data-dir', owner, '--json']), startDaemon(['--data-dir', relayer, '--json'])]
    try {
      for (const d of daemons) {
        await waitFor(() => {
          if (d.child.exitCode !== null) throw new Error(`daemon exited ${d.child.exitCode}: ${d.stderr()}`)
          return d.stdout().includes('"api"')
        }, 'the daemon to be ready', 60_000)
      }
      const noPassword = { ...T, env: { TOKENIM_PASSWORD: '' } }
      const b = await run(asOwner('backup', '--json'), noPassword)
      assert.equal(b.code, 10, b.stderr)
      const version = json(b).version as number
      const reqFile = join(owner, `request-${version}.json`)
      const q = await run(asOwner('anchor-request', '--out', reqFile, '--deadline', '1h', '--json'), noPassword)
      assert.equal(q.code, 0, q.stderr)
      const request = JSON.parse(await readFile(reqFile, 'utf8')) as AnchorRequest
      assert.deepEqual([request.version, request.digest], [version, json(b).digest])
      assert.ok(request.deadline < Date.now() / 1000 + 3700)

      const digest = '0x' + '34'.repeat(32)
      const altered = join(relayer, 'altered.json')
      await writeFile(altered, JSON.stringify({ ...request, digest, cid: cidFromDigest(digest) }))
      const bad = await run(asRelayer('relay', altered, '--json'), noPassword)
      assert.deepEqual([bad.code, errorCode(bad)], [3, 'INVALID_SIGNATURE'])
      assert.equal((await reader.latest(ownerAddress)).version, version - 1)

      const r = await run(asRelayer('relay', reqFile, '--json'), noPassword)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(json(r).version, version)
      const p = await run(asOwner('backup', '--anchor-pending', '--json'), noPassword)
      assert.equal(p.code, 0, p.stderr)
      assert.deepEqual(json<{ versions: Array<{ version: number, txHash?: string }> }>(p).versions.map(v => [v.version, v.txHash]), [[version, json(r).txHash]])
    } finally {
      for (const d of daemons) d.child.kill('SIGTERM')
      assert.deepEqual(await Promise.all(daemons.map(async d => await d.exited)), [0, 0])
    }
  })

  it('a pending version the chain anchors with another digest is a loud ANCHOR_CONFLICT (exit 3), never anchored twice', async () => {
    const b = await run(asOwner('backup', '--json'), T)
    assert.equal(b.code, 10, b.stderr)
    const version = json(b).version as number
    // only a holder of the owner's key can do this: here, the same mnemonic on "another device"
    const sameKey = new RegistryClient(devnet.profile, deriveKeys(MNEMONIC).wallet)
    clients.push(sameKey)
    await reader.provider.send('hardhat_setBalance', [ownerAddress, '0xde0b6b3a7640000'])
    await sameKey.anchor(version, '0x' + 'cd'.repeat(32))
    await reader.provider.send('hardhat_setBalance', [ownerAddress, '0x0'])

    const p = await run(asOwner('backup', '--anchor-pending', '--json'), T)
    assert.equal(p.code, 3, p.stdout + p.stderr)
    const r = json<{ versions: Array<{ version: number, anchored: boolean, error?: { code: string } }>, conflicts: number[], pending: number[] }>(p)
    assert.deepEqual(r.conflicts, [version])
    assert.deepEqual(r.versions.map(x => [x.version, x.anchored, x.error?.code]), [[version, false, 'ANCHOR_CONFLICT']])
    assert.deepEqual(r.pending, [])
    assert.match(p.stderr, /ANCHOR_CONFLICT/)
    await withOwnerStore(async (store) => {
      const health = await backupHealth(store)
      assert.deepEqual([health.pending, health.last?.version, health.last?.status], [[], version, 'conflict'])
    })
  })
})
