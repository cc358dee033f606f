import assert from 'node:assert/strict'
import { walkDag } from '../../src/backup/index.ts'
import { runBackup } from '../../src/backup/job/index.ts'
import { requestReplicaPin, startReplicaService, decodePinRequest, encodePinRequest } from '../../src/backup/replica/index.ts'
import { metaKey } from '../../src/backup/replica/service.ts'
import type { ReplicaService } from '../../src/backup/replica/index.ts'
import { readBlock } from '../../src/backup/blocks.ts'
import { isTokenimError } from '../../src/errors.ts'
import { DAG_PROTOCOL, serveDagStream } from '../../src/p2p/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { Harness, fill, waitFor } from '../backup-job/helpers.ts'
import { CID } from 'multiformats/cid'

function refused (reason: string) {
  return (err: unknown): boolean => isTokenimError(err, 'REPLICA_REFUSED') && err.info.reason === reason
}

describe('replica service /tokenim/pin/1.0.0', function () {
  this.timeout(60_000)
  const h = new Harness()
  let replica: TokenimNode
  let owner: TokenimNode
  let stranger: TokenimNode
  let service: ReplicaService

  before(async () => {
    const devnet = await h.chain()
    replica = await h.node()
    const boot = [replica.multiaddrs()[0]]
    owner = await h.node({ bootstrap: boot })
    stranger = await h.node({ bootstrap: boot })
    service = await startReplicaService(replica, { owners: [owner.address], chain: h.client(devnet.profile), keep: 2 })
    for (const n of [owner, stranger]) {
      await waitFor(async () => await n.resolve(replica.address, { timeoutMs: 2_000 }).then(() => true, () => false), 'resolving the replica')
    }
  })
  after(async () => {
    await service?.stop()
    await h.cleanup()
  })

  it('pins an anchored backup of an allowed owner: receipt ok, every block at the replica, older versions dropped', async () => {
    const chain = h.client((await h.chain()).profile, owner)
    await fill(owner, 200, 11)
    const r = await runBackup({ node: owner, chain, replicas: [replica.address], replicaTimeoutMs: 30_000 })
    assert.equal(r.outcome, 'anchored')
    assert.deepEqual(r.replicas.map(x => [x.address, x.ok, x.peerId]), [[replica.address, true, replica.peerId]])
    assert.deepEqual(r.warnings, [])
    const root = CID.parse(r.cid)
    assert.equal(await replica.p2p.helia.pins.isPinned(root), true)
    let blocks = 0
    const offline = { get: (cid: CID, o?: { signal?: AbortSignal }) => replica.p2p.helia.blockstore.get(cid, { ...o, offline: true }) }
    for await (const _ of walkDag(offline, root)) blocks++
    assert.ok(blocks >= 3)
    const rec = await owner.store.getBackup(r.version)
    assert.deepEqual(rec?.replicas.map(x => [x.address, x.ok]), [[replica.address.toLowerCase(), true]])

    // asking again is idempotent
    const again = await requestReplicaPin(owner, replica.address, { owner: owner.address, version: r.version, cid: r.cid }, { timeout: 20_000 })
    assert.equal(again.ok, true)

    // two more versions: the replica keeps the newest 2 and unpins the first
    await fill(owner, 5, 12, 1_800_000_000_000)
    const r2 = await runBackup({ node: owner, chain, replicas: [replica.address] })
    await fill(owner, 5, 13, 1_850_000_000_000)
    const r3 = await runBackup({ node: owner, chain, replicas: [replica.address] })
    assert.ok(r2.replicas[0].ok && r3.replicas[0].ok)
    assert.deepEqual((await service.kept(owner.address)).map(k => k.version), [r2.version, r3.version])
    assert.equal(await replica.p2p.helia.pins.isPinned(root), false)
    assert.equal(await replica.p2p.helia.pins.isPinned(CID.parse(r3.cid)), true)
    // the kept versions survive GC whole (they share blocks with the one unpinned)
    const count = async (cid: CID): Promise<number> => { let n = 0; for await (const _ of walkDag(offline, cid)) n++; return n }
    const kept = [await count(CID.parse(r2.cid)), await count(CID.parse(r3.cid))]
    await replica.p2p.helia.gc()
    assert.deepEqual([await count(CID.parse(r2.cid)), await count(CID.parse(r3.cid))], kept)
    assert.equal(await replica.p2p.helia.blockstore.has(root), false, 'the unpinned root is collected')

    // stopped between the pin and the list's write: asked again, the version is listed, not pinned twice
    await replica.store.setMeta(metaKey(owner.address), (await service.kept(owner.address)).filter(k => k.version !== r3.version))
    const listed = await requestReplicaPin(owner, replica.address, { owner: owner.address, version: r3.version, cid: r3.cid }, { timeout: 20_000 })
    assert.equal(listed.ok, true)
    assert.deepEqual((await service.kept(owner.address)).map(k => k.version), [r2.version, r3.version])

    // a digest mismatch: version 1 with the CID of version 3
    await assert.rejects(requestReplicaPin(owner, replica.address, { owner: owner.address, version: 1, cid: r3.cid }, { timeout: 20_000 }), refused('DIGEST_MISMATCH'))
    // a version the chain never anchored
    await assert.rejects(requestReplicaPin(owner, replica.address, { owner: owner.address, version: 99, cid: r3.cid }, { timeout: 20_000 }), refused('NOT_ANCHORED'))
  })

  it('takes the DAG from the requester in one stream, and over bitswap when the requester serves none', async () => {
    const chain = h.client((await h.chain()).profile, owner)
    const offline = { get: (cid: CID, o?: { signal?: AbortSignal }) => owner.p2p.helia.blockstore.get(cid, { ...o, offline: true }) }
    let served = 0
    await owner.p2p.libp2p.unhandle(DAG_PROTOCOL)
    await owner.p2p.libp2p.handle(DAG_PROTOCOL, (stream) => {
      served++
      void serveDagStream(stream, async (cids) => await Promise.all(cids.map(async c => await readBlock(offline, c, 1 << 24).catch(() => undefined))))
    })
    await fill(owner, 60, 21, 1_900_000_000_000)
    const r = await runBackup({ node: owner, chain, replicas: [replica.address] })
    assert.equal(r.replicas[0]?.ok, true, JSON.stringify(r.replicas))
    assert.equal(served, 1)
    assert.equal(await replica.p2p.helia.pins.isPinned(CID.parse(r.cid)), true)

    // an owner that does not serve /tokenim/dag: the replica still gets every block, over bitswap
    await owner.p2p.libp2p.unhandle(DAG_PROTOCOL)
    await fill(owner, 60, 22, 1_950_000_000_000)
    const r2 = await runBackup({ node: owner, chain, replicas: [replica.address] })
    assert.equal(r2.replicas[0]?.ok, true, JSON.stringify(r2.replicas))
    assert.equal(served, 1)
    const root2 = CID.parse(r2.cid)
    assert.equal(await replica.p2p.helia.pins.isPinned(root2), true)
    const atReplica = { get: (cid: CID, o?: { signal?: AbortSignal }) => replica.p2p.helia.blockstore.get(cid, { ...o, offline: true }) }
    let blocks = 0
    for await (const _ of walkDag(atReplica, root2)) blocks++
    assert.ok(blocks >= 3)
  })

  it('refuses an unknown owner; the backup still succeeds locally with a warning naming the replica', async () => {
    const chain = h.client((await h.chain()).profile, stranger)
    await fill(stranger, 30, 21)
    const r = await runBackup({ node: stranger, chain, replicas: [replica.address, '0x' + '22'.repeat(20)], replicaTimeoutMs: 5_000 })
    assert.equal(r.outcome, 'anchored')
    assert.deepEqual(r.replicas.map(x => [x.ok, x.code]), [[false, 'UNKNOWN_OWNER'], [false, 'REPLICA_UNREACHABLE']])
    const w = r.warnings.find(x => x.code === 'REPLICA_FAILED')
    assert.ok(w?.message.includes(replica.address) === true && w.message.includes('0x' + '22'.repeat(20)), w?.message)
    assert.equal(await replica.p2p.helia.pins.isPinned(CID.parse(r.cid)), false)
  })

  it('validates frames strictly', () => {
    const cid = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    const bytes = encodePinRequest({ owner: '0x' + 'AB'.repeat(20), version: 3, cid })
    assert.deepEqual(decodePinRequest(bytes).owner, '0x' + 'ab'.repeat(20))
    const badRequest = (message: RegExp) => ({ code: 'BAD_REQUEST', message })
    assert.throws(() => encodePinRequest({ owner: '0x12', version: 1, cid }), badRequest(/owner/))
    assert.throws(() => encodePinRequest({ owner: '0x' + 'ab'.repeat(20), version: 0, cid }), badRequest(/version/))
    assert.throws(() => encodePinRequest({ owner: '0x' + 'ab'.repeat(20), version: 1, cid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' }), badRequest(/cid/))
    assert.throws(() => decodePinRequest(new Uint8Array(5000)), badRequest(/too large/))
  })
})
