// Deploys BackupRegistry to any chain and writes the chain profile for it.
//   DEPLOYER_KEY=0x… node scripts/deploy.ts --rpc URL [--chain-id N] --out chain.json
// (npm run deploy -- --rpc … --out …). The key is read from the environment only, never from argv.
import { parseArgs } from 'node:util'
import { deployRegistry, writeChainProfile } from '../src/chain/index.ts'
import { isTokenimError } from '../src/errors.ts'

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      rpc: { type: 'string' },
      'chain-id': { type: 'string' },
      out: { type: 'string' }
    }
  })
  const key = process.env.DEPLOYER_KEY
  if (values.rpc === undefined || values.out === undefined || key === undefined || key === '') {
    console.error('usage: DEPLOYER_KEY=0x… node scripts/deploy.ts --rpc URL [--chain-id N] --out FILE')
    return 2
  }
  const chainId = values['chain-id'] === undefined ? undefined : Number(values['chain-id'])
  if (chainId !== undefined && !Number.isSafeInteger(chainId)) {
    console.error('--chain-id must be an integer')
    return 2
  }
  const profile = await deployRegistry({ rpc: values.rpc, privateKey: key, chainId })
  await writeChainProfile(values.out, profile)
  console.log(JSON.stringify(profile, null, 2))
  return 0
}

try {
  process.exitCode = await main()
} catch (err) {
  console.error(isTokenimError(err) ? `${err.code}: ${err.message}` : err)
  process.exitCode = 1
}
