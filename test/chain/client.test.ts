import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import * as dagCbor from '@ipld/dag-cbor'
import { Wallet, parseEther } from 'ethers'
import type { Signer } from 'ethers'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { isTokenimError } from '../../src/errors.ts'
import { RegistryClient, cidFromDigest, deployRegistry, startDevnet } from '../../src/chain/index.ts'
import type { ChainProfile, Devnet } from '../../src/chain/index.ts'

const digest = (n: number): string => '0x' + n.toString(16).padStart(2, '0').repeat(32)

function hasCode (code: string, check?: (info: Record<string, unknown>) => void) {
  return (err: unknown): boolean => {
    assert.ok(isTokenimError(err, code), `expected ${code}, got ${String((err as { code?: string }).code)}: ${String(err)}`)
    check?.(err.info)
    return true
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

describe('chain client against a local devnet', function () {
  this.timeout(60_000)
  let devnet: Devnet
  let profile: ChainProfile
  const clients: RegistryClient[] = []
  const client = (p: ChainProfile, signer?: Signer, opts?: ConstructorParameters<typeof RegistryClient>[2]): RegistryClient => {
    const c = new RegistryClient(p, signer, opts)
    clients.push(c)
    return c
  }

  before(async function () {
    devnet = await startDevnet({ port: 0 })
    profile = devnet.profile
  })
  after(async function () {
    for (const c of clients) c.close()
    await devnet?.stop()
  })

  it('starts on 127.0.0.1 with chain id 31337 and a deployed registry', async function () {
    assert.match(devnet.rpc, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal(devnet.chainId, 31337)
    assert.equal(profile.registry, devnet.registry)
    await client(profile).checkDeployed()
  })

  it('anchors, reads latest/digestOf/cidOf and the event history', async function () {
    const wallet = Wallet.createRandom()
    const c = client(profile, wallet)
    assert.deepEqual(await c.latest(wallet.address), { version: 0, digest: digest(0), timestamp: 0 })
    const funds = await c.ensureFunds(wallet.address)
    assert.equal(funds.toppedUp, true)
    assert.ok(funds.balance >= parseEther('1'))
    assert.equal((await c.ensureFunds(wallet.address)).toppedUp, false)

    // the digest is that of a real dag-cbor root block: cidOf gives back its CID
    const block = dagCbor.encode({ owner: wallet.address, version: 1 })
    const hash = await sha256.digest(block)
    const rootCid = CID.createV1(dagCbor.code, hash)
    const r1 = await c.anchor(1, hash.digest)
    assert.equal(r1.owner, wallet.address)
    assert.equal(r1.version, 1)
    assert.match(r1.txHash, /^0x[0-9a-f]{64}$/)
    assert.ok(r1.gasUsed < 70_000n)
    const r2 = await c.anchor(3, digest(3))
    assert.ok(r2.gasUsed < 55_000n)

    const latest = await c.latest(wallet.address)
    assert.equal(latest.version, 3)
    assert.equal(latest.digest, digest(3))
    assert.equal(latest.timestamp, r2.timestamp)
    assert.equal(await c.digestOf(wallet.address, 1), '0x' + Buffer.from(hash.digest).toString('hex'))
    assert.equal(await c.digestOf(wallet.address, 2), undefined)
    assert.equal(await c.cidOf(wallet.address, 1), rootCid.toString())
    assert.equal(cidFromDigest(hash.digest), rootCid.toString())
    assert.equal(await c.cidOf(wallet.address, 2), undefined)

    const history = await c.history(wallet.address)
    assert.deepEqual(history.map(h => h.version), [1, 3])
    assert.equal(history[0]?.txHash, r1.txHash)
    assert.equal(history[1]?.blockNumber, r2.blockNumber)
    assert.equal(history[1]?.digest, digest(3))
    assert.deepEqual(await c.history(Wallet.createRandom().address), [])
  })

  it('rejects a rollback and an equal version with ROLLBACK_REJECTED naming both versions', async function () {
    const wallet = Wallet.createRandom()
    const c = client(profile, wallet)
    await c.ensureFunds(wallet.address)
    await c.anchor(5, digest(5))
    await assert.rejects(c.anchor(4, digest(4)), hasCode('ROLLBACK_REJECTED', info => assert.deepEqual(info, { latest: 5, given: 4 })))
    await assert.rejects(c.anchor(5, digest(6)), hasCode('ROLLBACK_REJECTED', info => assert.deepEqual(info, { latest: 5, given: 5 })))
    await assert.rejects(c.anchor(6, digest(0)), hasCode('INVALID_DIGEST'))
    await assert.rejects(c.anchor(6, '0x1234'), hasCode('INVALID_DIGEST'))
    assert.equal((await c.latest(wallet.address)).version, 5)
  })

  it('an unfunded wallet gets INSUFFICIENT_FUNDS; a relayer anchors for it with its signature', async function () {
    const owner = Wallet.createRandom()
    const relayer = Wallet.createRandom()
    const asOwner = client(profile, owner)
    await assert.rejects(asOwner.anchor(1, digest(1)), hasCode('INSUFFICIENT_FUNDS'))

    const asRelayer = client(profile, relayer)
    await asRelayer.ensureFunds(relayer.address)
    const deadline = Math.floor(Date.now() / 1000) + 3600
    const sig = await asOwner.signAnchor(owner, owner.address, 1, digest(1), deadline)
    const r = await asRelayer.anchorWithSig(owner.address, 1, digest(1), deadline, sig)
    assert.equal(r.owner, owner.address)
    assert.ok(r.gasUsed < 80_000n)
    assert.equal((await asRelayer.latest(owner.address)).version, 1)
    assert.equal((await asRelayer.latest(relayer.address)).version, 0)
    assert.equal(await asRelayer.provider.getBalance(owner.address), 0n)

    const sig2 = await asOwner.signAnchor(owner, owner.address, 2, digest(2), deadline)
    assert.ok((await asRelayer.anchorWithSig(owner.address, 2, digest(2), deadline, sig2)).gasUsed < 65_000n)

    // replay
    await assert.rejects(asRelayer.anchorWithSig(owner.address, 2, digest(2), deadline, sig2),
      hasCode('ROLLBACK_REJECTED', info => assert.deepEqual(info, { latest: 2, given: 2 })))
    // expired
    const past = Math.floor(Date.now() / 1000) - 60
    const old = await asOwner.signAnchor(owner, owner.address, 3, digest(3), past)
    await assert.rejects(asRelayer.anchorWithSig(owner.address, 3, digest(3), past, old), hasCode('SIGNATURE_EXPIRED'))
    // wrong signer
    const forged = await asRelayer.signAnchor(relayer, owner.address, 3, digest(3), deadline)
    await assert.rejects(asRelayer.anchorWithSig(owner.address, 3, digest(3), deadline, forged), hasCode('INVALID_SIGNATURE'))
    // tampered digest
    const sig3 = await asOwner.signAnchor(owner, owner.address, 3, digest(3), deadline)
    await assert.rejects(asRelayer.anchorWithSig(owner.address, 3, digest(4), deadline, sig3), hasCode('INVALID_SIGNATURE'))
    assert.equal((await asRelayer.latest(owner.address)).version, 2)
  })

  it('a send without a signer fails with NO_SIGNER', async function () {
    await assert.rejects(client(profile).anchor(1, digest(1)), hasCode('NO_SIGNER'))
  })

  it('a wrong registry address gives NO_REGISTRY', async function () {
    const c = client({ ...profile, registry: Wallet.createRandom().address })
    await assert.rejects(c.latest(Wallet.createRandom().address), hasCode('NO_REGISTRY'))
    await assert.rejects(c.checkDeployed(), hasCode('NO_REGISTRY'))
  })

  it('a wrong chain id gives WRONG_CHAIN_ID with expected and actual', async function () {
    const c = client({ ...profile, chainId: 1 })
    await assert.rejects(c.latest(Wallet.createRandom().address),
      hasCode('WRONG_CHAIN_ID', info => { assert.equal(info.expected, 1); assert.equal(info.actual, 31337) }))
  })

  it('a dead RPC gives CHAIN_UNREACHABLE quickly, naming the URL', async function () {
    const rpc = `http://127.0.0.1:${await freePort()}`
    const c = client({ ...profile, rpc })
    const started = Date.now()
    await assert.rejects(c.latest(Wallet.createRandom().address), hasCode('CHAIN_UNREACHABLE', info => assert.equal(info.url, rpc)))
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`)
    await assert.rejects(c.checkDeployed(), (err: unknown) => isTokenimError(err, 'CHAIN_UNREACHABLE') && err.message.includes(rpc))
  })

  describe('with an RPC that never answers', function () {
    let silent: Server
    const sockets = new Set<Socket>()
    let rpc: string
    before(async function () {
      silent = createServer(socket => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)) })
      await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
      rpc = `http://127.0.0.1:${(silent.address() as { port: number }).port}`
    })
    after(async function () {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => silent.close(() => resolve()))
    })

    it('times out with CHAIN_TIMEOUT', async function () {
      const c = client({ ...profile, rpc }, undefined, { readTimeoutMs: 300 })
      const started = Date.now()
      await assert.rejects(c.latest(Wallet.createRandom().address), hasCode('CHAIN_TIMEOUT', info => assert.equal(info.timeoutMs, 300)))
      assert.ok(Date.now() - started < 2000)
    })

    it('stops at the caller\'s AbortSignal with CHAIN_ABORTED', async function () {
      const c = client({ ...profile, rpc })
      const controller = new AbortController()
      const pending = c.latest(Wallet.createRandom().address, { signal: controller.signal })
      setTimeout(() => controller.abort(), 50)
      await assert.rejects(pending, hasCode('CHAIN_ABORTED'))
    })
  })

  it('deployRegistry deploys a second registry with a private key, checking the chain id', async function () {
    const deployer = Wallet.createRandom()
    await client(profile).ensureFunds(deployer.address)
    const second = await deployRegistry({ rpc: profile.rpc, privateKey: deployer.privateKey, chainId: 31337 })
    assert.notEqual(second.registry, profile.registry)
    assert.equal(second.chainId, 31337)
    await client(second).checkDeployed()
    await assert.rejects(deployRegistry({ rpc: profile.rpc, privateKey: deployer.privateKey, chainId: 5 }), hasCode('WRONG_CHAIN_ID'))
    await assert.rejects(deployRegistry({ rpc: profile.rpc, privateKey: Wallet.createRandom().privateKey }), hasCode('INSUFFICIENT_FUNDS'))
  })

  it('ensureFunds leaves funded accounts alone and does not mint on other chains', async function () {
    const rich = Wallet.createRandom()
    const c = client(profile)
    await c.ensureFunds(rich.address, { target: parseEther('5') })
    const r = await c.ensureFunds(rich.address, { min: parseEther('1') })
    assert.deepEqual(r, { balance: parseEther('5'), toppedUp: false })
  })
})

describe('startDevnet', function () {
  this.timeout(60_000)
  it('works when the working directory is not the repository, and stops cleanly', async function () {
    const devnetModule = fileURLToPath(new URL('../../src/chain/index.ts', import.meta.url))
    const script = `
      const { startDevnet, RegistryClient } = await import(${JSON.stringify(devnetModule)})
      const d = await startDevnet()
      const c = new RegistryClient(d.profile)
      await c.checkDeployed()
      c.close()
      await d.stop()
      console.log(JSON.stringify(d.profile))
    `
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: tmpdir(), timeout: 30_000 })
    const printed = JSON.parse(stdout) as ChainProfile
    assert.equal(printed.chainId, 31337)
    assert.match(printed.rpc, /^http:\/\/127\.0\.0\.1:\d+$/)
  })
})
