// Measures the gas of BackupRegistry's anchoring paths on an in-process Hardhat network and fails
// (exit 1) when a target is missed. Usage: npm run gas
import { Wallet } from 'ethers'
import { buildContracts, createRepoHre } from './hre.ts'

const TARGETS = {
  'first anchor': 70_000n,
  'subsequent anchor': 55_000n,
  'relayed anchor': 65_000n
} as const

// a realistic digest: 32 random-looking non-zero bytes (zero bytes would be cheaper calldata)
const digest = (n: number): string => '0x' + Buffer.alloc(32, 0xa0 + n).toString('hex')

async function main (): Promise<number> {
  const hre = await createRepoHre()
  await buildContracts(hre)
  const connection = await hre.network.create()
  try {
    const { ethers } = connection
    const [deployer, relayer] = await ethers.getSigners()
    const registry = await ethers.deployContract('BackupRegistry', [], deployer)
    await registry.waitForDeployment()
    const address = await registry.getAddress()
    const { chainId } = await ethers.provider.getNetwork()

    const gasOf = async (tx: Promise<{ wait: () => Promise<{ gasUsed: bigint } | null> }>): Promise<bigint> => {
      const receipt = await (await tx).wait()
      if (receipt == null) throw new Error('no receipt')
      return receipt.gasUsed
    }

    const measured: Record<keyof typeof TARGETS, bigint> = {
      'first anchor': await gasOf(registry.connect(deployer).getFunction('anchor')(1n, digest(1))),
      'subsequent anchor': await gasOf(registry.connect(deployer).getFunction('anchor')(2n, digest(2))),
      'relayed anchor': 0n
    }

    // relayed: an owner with no funds signs, the relayer pays; its first anchor is done directly
    // (relayed) first, the measured one is the subsequent relayed anchor
    const owner = Wallet.createRandom()
    const domain = { name: 'tokenim BackupRegistry', version: '1', chainId, verifyingContract: address }
    const types = { Anchor: [{ name: 'owner', type: 'address' }, { name: 'version', type: 'uint64' }, { name: 'digest', type: 'bytes32' }, { name: 'deadline', type: 'uint256' }] }
    const deadline = BigInt(Math.floor(Date.now() / 1000) + 3600)
    const relayed = async (version: bigint): Promise<bigint> => {
      const value = { owner: owner.address, version, digest: digest(Number(version)), deadline }
      const signature = await owner.signTypedData(domain, types, value)
      return await gasOf(registry.connect(relayer).getFunction('anchorWithSig')(owner.address, version, value.digest, deadline, signature))
    }
    const relayedFirst = await relayed(1n)
    measured['relayed anchor'] = await relayed(2n)

    let ok = true
    for (const [name, target] of Object.entries(TARGETS) as Array<[keyof typeof TARGETS, bigint]>) {
      console.log(`${name}: ${measured[name]} gas`)
      if (measured[name] > target) {
        console.error(`  target missed: ${name} must use <= ${target} gas`)
        ok = false
      }
    }
    console.error(`(relayed first anchor: ${relayedFirst} gas, not a target)`)
    return ok ? 0 : 1
  } finally {
    await connection.close()
  }
}

process.exitCode = await main()
