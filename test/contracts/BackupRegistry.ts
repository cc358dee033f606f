// Contract tests for BackupRegistry, run by `npm run test:contracts` (hardhat test mocha).
import { readFile } from 'node:fs/promises'
import { expect } from 'chai'
import { network } from 'hardhat'
import hre from 'hardhat'
import type { BaseContract, ContractTransactionResponse, HDNodeWallet, Signer } from 'ethers'
import { ARTIFACT_FILE, renderArtifactModule } from '../../scripts/export-artifact.ts'

const { ethers, networkHelpers } = await network.create()

const D1 = '0x' + '11'.repeat(32)
const D2 = '0x' + '22'.repeat(32)
const D3 = '0x' + '33'.repeat(32)
const ZERO = '0x' + '00'.repeat(32)
const HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0n
const N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n

type Fn = (...args: unknown[]) => Promise<ContractTransactionResponse>
interface Registry extends BaseContract {
  anchor: Fn
  anchorWithSig: Fn
  latest: (owner: string) => Promise<[bigint, string, bigint]>
  digestOf: (owner: string, version: bigint | number) => Promise<string>
  DOMAIN_SEPARATOR: () => Promise<string>
  connect: (s: Signer) => Registry
}

const types = {
  Anchor: [
    { name: 'owner', type: 'address' },
    { name: 'version', type: 'uint64' },
    { name: 'digest', type: 'bytes32' },
    { name: 'deadline', type: 'uint256' }
  ]
}

async function deployRegistry (): Promise<{ registry: Registry, address: string, chainId: bigint }> {
  const registry = await ethers.deployContract('BackupRegistry') as unknown as Registry
  await registry.waitForDeployment()
  const { chainId } = await ethers.provider.getNetwork()
  return { registry, address: await registry.getAddress(), chainId }
}

describe('BackupRegistry', function () {
  async function sign (wallet: HDNodeWallet | Signer, owner: string, version: bigint, digest: string, deadline: bigint): Promise<string> {
    const { address, chainId } = await networkHelpers.loadFixture(deployRegistry)
    const domain = { name: 'tokenim BackupRegistry', version: '1', chainId, verifyingContract: address }
    return await wallet.signTypedData(domain, types, { owner, version, digest, deadline })
  }
  async function inOneHour (): Promise<bigint> {
    return BigInt(await networkHelpers.time.latest()) + 3600n
  }

  describe('anchor', function () {
    it('anchors increasing versions and exposes them through the views', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [alice] = await ethers.getSigners()
      expect(await registry.latest(alice.address)).to.deep.equal([0n, ZERO, 0n])
      await registry.connect(alice).anchor(1n, D1)
      const t1 = BigInt(await networkHelpers.time.latest())
      expect(await registry.latest(alice.address)).to.deep.equal([1n, D1, t1])
      await registry.connect(alice).anchor(5n, D2) // gaps are allowed
      const t2 = BigInt(await networkHelpers.time.latest())
      expect(await registry.latest(alice.address)).to.deep.equal([5n, D2, t2])
      expect(await registry.digestOf(alice.address, 1n)).to.equal(D1)
      expect(await registry.digestOf(alice.address, 5n)).to.equal(D2)
      expect(await registry.digestOf(alice.address, 3n)).to.equal(ZERO)
    })

    it('emits BackupAnchored with owner, version, digest and timestamp', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [alice] = await ethers.getSigners()
      const next = BigInt(await networkHelpers.time.latest()) + 10n
      await networkHelpers.time.setNextBlockTimestamp(next)
      await expect(registry.connect(alice).anchor(1n, D1))
        .to.emit(registry, 'BackupAnchored').withArgs(alice.address, 1n, D1, next)
    })

    it('rejects an equal version and a rollback, naming both versions', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [alice] = await ethers.getSigners()
      await registry.connect(alice).anchor(3n, D1)
      await expect(registry.connect(alice).anchor(3n, D2))
        .to.be.revertedWithCustomError(registry, 'VersionNotIncreasing').withArgs(3n, 3n)
      await expect(registry.connect(alice).anchor(2n, D2))
        .to.be.revertedWithCustomError(registry, 'VersionNotIncreasing').withArgs(3n, 2n)
      await expect(registry.connect(alice).anchor(0n, D2))
        .to.be.revertedWithCustomError(registry, 'VersionNotIncreasing').withArgs(3n, 0n)
      expect((await registry.latest(alice.address))[1]).to.equal(D1)
    })

    it('rejects a zero digest', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      await expect(registry.anchor(1n, ZERO)).to.be.revertedWithCustomError(registry, 'ZeroDigest')
    })

    it('keeps owners apart: an account only ever anchors for itself', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [alice, mallory] = await ethers.getSigners()
      await registry.connect(alice).anchor(1n, D1)
      await registry.connect(mallory).anchor(7n, D3)
      expect(await registry.latest(alice.address)).to.have.property('0', 1n)
      expect(await registry.digestOf(alice.address, 7n)).to.equal(ZERO)
      expect(await registry.digestOf(mallory.address, 7n)).to.equal(D3)
      // mallory cannot anchor for alice without alice's signature
      const forged = await sign(mallory, alice.address, 2n, D2, await inOneHour())
      await expect(registry.connect(mallory).anchorWithSig(alice.address, 2n, D2, await inOneHour(), forged))
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
    })
  })

  describe('anchorWithSig', function () {
    it('lets a relayer pay for an owner with no funds', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [, relayer] = await ethers.getSigners()
      const owner = ethers.Wallet.createRandom()
      expect(await ethers.provider.getBalance(owner.address)).to.equal(0n)
      const deadline = await inOneHour()
      const sig = await sign(owner, owner.address, 1n, D1, deadline)
      await expect(registry.connect(relayer).anchorWithSig(owner.address, 1n, D1, deadline, sig))
        .to.emit(registry, 'BackupAnchored')
      expect((await registry.latest(owner.address)).slice(0, 2)).to.deep.equal([1n, D1])
      expect((await registry.latest(relayer.address))[0]).to.equal(0n)
      const sig2 = await sign(owner, owner.address, 2n, D2, deadline)
      await registry.connect(relayer).anchorWithSig(owner.address, 2n, D2, deadline, sig2)
      expect(await registry.digestOf(owner.address, 2n)).to.equal(D2)
    })

    it('rejects a replayed signature', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const [, relayer] = await ethers.getSigners()
      const owner = ethers.Wallet.createRandom()
      const deadline = await inOneHour()
      const sig = await sign(owner, owner.address, 1n, D1, deadline)
      await registry.connect(relayer).anchorWithSig(owner.address, 1n, D1, deadline, sig)
      await expect(registry.connect(relayer).anchorWithSig(owner.address, 1n, D1, deadline, sig))
        .to.be.revertedWithCustomError(registry, 'VersionNotIncreasing').withArgs(1n, 1n)
    })

    it('rejects an expired signature', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const owner = ethers.Wallet.createRandom()
      const deadline = BigInt(await networkHelpers.time.latest()) + 60n
      const sig = await sign(owner, owner.address, 1n, D1, deadline)
      await networkHelpers.time.increase(120)
      await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline, sig))
        .to.be.revertedWithCustomError(registry, 'SignatureExpired').withArgs(deadline)
    })

    it('rejects a wrong signer and tampered fields', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const owner = ethers.Wallet.createRandom()
      const other = ethers.Wallet.createRandom()
      const deadline = await inOneHour()
      const byOther = await sign(other, owner.address, 1n, D1, deadline)
      await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline, byOther))
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      const sig = await sign(owner, owner.address, 1n, D1, deadline)
      await expect(registry.anchorWithSig(owner.address, 1n, D2, deadline, sig)) // other digest
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      await expect(registry.anchorWithSig(owner.address, 2n, D1, deadline, sig)) // other version
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline + 1n, sig)) // other deadline
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline, sig.slice(0, -2))) // 64 bytes
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
    })

    it('rejects a signature for another chain or contract', async function () {
      const { registry, address, chainId } = await networkHelpers.loadFixture(deployRegistry)
      const owner = ethers.Wallet.createRandom()
      const deadline = await inOneHour()
      const value = { owner: owner.address, version: 1n, digest: D1, deadline }
      const otherChain = await owner.signTypedData({ name: 'tokenim BackupRegistry', version: '1', chainId: chainId + 1n, verifyingContract: address }, types, value)
      const otherContract = await owner.signTypedData({ name: 'tokenim BackupRegistry', version: '1', chainId, verifyingContract: owner.address }, types, value)
      for (const sig of [otherChain, otherContract]) {
        await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline, sig))
          .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      }
    })

    it('rejects the malleable twin (high s) of a valid signature', async function () {
      const { registry } = await networkHelpers.loadFixture(deployRegistry)
      const owner = ethers.Wallet.createRandom()
      const deadline = await inOneHour()
      const sig = ethers.Signature.from(await sign(owner, owner.address, 1n, D1, deadline))
      const highS = N - BigInt(sig.s)
      expect(highS > HALF_N).to.equal(true)
      const twin = ethers.concat([sig.r, ethers.toBeHex(highS, 32), new Uint8Array([sig.v === 27 ? 28 : 27])])
      await expect(registry.anchorWithSig(owner.address, 1n, D1, deadline, twin))
        .to.be.revertedWithCustomError(registry, 'InvalidSignature')
      await registry.anchorWithSig(owner.address, 1n, D1, deadline, sig.serialized) // the canonical one works
    })

    it('exposes the EIP-712 domain separator', async function () {
      const { registry, address, chainId } = await networkHelpers.loadFixture(deployRegistry)
      const expected = ethers.TypedDataEncoder.hashDomain({ name: 'tokenim BackupRegistry', version: '1', chainId, verifyingContract: address })
      expect(await registry.DOMAIN_SEPARATOR()).to.equal(expected)
    })
  })

  describe('exported artifact', function () {
    it('src/chain/registry-artifact.ts equals a fresh build (run npm run export-artifact if not)', async function () {
      const artifact = await hre.artifacts.readArtifact('BackupRegistry')
      const expected = renderArtifactModule(artifact, hre.config.solidity.profiles.default.compilers[0].version)
      expect(await readFile(ARTIFACT_FILE, 'utf8')).to.equal(expected, 'src/chain/registry-artifact.ts is stale: run `npm run export-artifact`')
    })
  })
})
