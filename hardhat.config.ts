// Hardhat 3 configuration (ESM). Compiles offline with the npm `solc` package (soljson.js), so no
// compiler download is ever attempted; the compiler version is read from that package so the two
// can never disagree.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import hardhatEthers from '@nomicfoundation/hardhat-ethers'
import hardhatEthersChaiMatchers from '@nomicfoundation/hardhat-ethers-chai-matchers'
import hardhatMocha from '@nomicfoundation/hardhat-mocha'
import hardhatNetworkHelpers from '@nomicfoundation/hardhat-network-helpers'
import { defineConfig } from 'hardhat/config'

const require = createRequire(import.meta.url)
const solcPath = require.resolve('solc/soljson.js')
const solcVersion = (JSON.parse(readFileSync(require.resolve('solc/package.json'), 'utf8')) as { version: string }).version

export default defineConfig({
  plugins: [hardhatEthers, hardhatEthersChaiMatchers, hardhatMocha, hardhatNetworkHelpers],
  solidity: {
    version: solcVersion,
    path: solcPath,
    settings: {
      optimizer: { enabled: true, runs: 1_000_000 },
      evmVersion: 'prague'
    }
  },
  paths: {
    sources: 'contracts',
    // `hardhat test mocha` (npm run test:contracts) runs only these; the main mocha suite
    // (.mocharc.json) ignores this folder.
    tests: { mocha: 'test/contracts' }
  },
  test: {
    mocha: { timeout: 120_000 }
  },
  networks: {
    default: { type: 'edr-simulated', chainId: 31337 }
  }
})
