import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { CHAIN_PROFILE_FILE, startDevnet, writeChainProfile } from '../../chain/index.ts'
import { ensurePrivateDir } from '../../util/fs.ts'
import { action, intOption } from '../command.ts'

export function registerDevnet (program: Command): void {
  program.command('devnet')
    .description('run a local chain (Hardhat EDR, chain id 31337, 127.0.0.1) in the foreground, deploy BackupRegistry and write the chain profile')
    .option('--port <port>', 'RPC port (default: a free port)')
    .option('--out <file>', 'where to write the chain profile (default: DATA_DIR/chain.json)')
    .addHelpText('after', `
The chain lives in memory: it is gone when the command stops (Ctrl-C / SIGTERM).
Other commands find it through the profile (--chain FILE, $TOKENIM_CHAIN or DATA_DIR/chain.json).

Examples:
  $ tokenim devnet                        # writes DATA_DIR/chain.json
  $ tokenim devnet --port 8545 --out chain.json --json`)
    .action(action<{ port?: string, out?: string }>(async ({ opts, out, signal }, _args, o) => {
      const port = intOption(o.port, '--port', { min: 0, max: 65535 })
      let file: string
      if (o.out !== undefined) {
        file = resolve(o.out)
      } else {
        await ensurePrivateDir(opts.dataDir)
        file = join(opts.dataDir, CHAIN_PROFILE_FILE)
      }
      signal.throwIfAborted()
      const devnet = await startDevnet({ port })
      try {
        await writeChainProfile(file, devnet.profile)
        out.result(devnet.profile, p => [
          `rpc       ${p.rpc}`,
          `chain id  ${p.chainId}`,
          `registry  ${p.registry}`,
          `profile   ${file}`
        ].join('\n'))
        out.info('devnet running; Ctrl-C to stop')
        await new Promise<void>(resolve => {
          if (signal.aborted) resolve()
          else signal.addEventListener('abort', () => resolve(), { once: true })
        })
      } finally {
        await devnet.stop()
      }
    }))
}
