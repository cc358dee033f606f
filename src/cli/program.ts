import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { createOutput } from './output.ts'
import { EXIT } from './exit-codes.ts'
import { takeExitCode } from './command.ts'
import { commands } from './commands/index.ts'

/** the package's version (package.json two levels up, in the repository and in an installed package) */
function packageVersion (): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

export function buildProgram (): Command {
  const program = new Command('tokenim')
    .description('Peer-to-peer messenger whose history can never be lost, forged or silently rolled back.')
    .version(packageVersion(), '-V, --version', 'print the version of tokenim')
    .option('--data-dir <dir>', 'data directory (default: $TOKENIM_HOME, else ~/.tokenim)')
    .option('--json', 'print exactly one JSON document on stdout (errors as {"error":{"code","message"}})')
    .option('--password-file <file>', 'read the keystore password from this file (else $TOKENIM_PASSWORD, else a prompt)')
    .option('--chain <file>', 'chain profile JSON {rpc, chainId, registry} (else $TOKENIM_CHAIN, else DATA_DIR/chain.json)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      // with --json, commander's own usage errors must not print text on stdout
      writeErr: (str) => process.stderr.write(str),
      writeOut: (str) => process.stdout.write(str)
    })
  for (const register of commands) register(program)
  program.commands.forEach(c => c.exitOverride())
  return program
}

/** Run the CLI and return the exit code (never calls process.exit itself). */
export async function runCli (argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return takeExitCode()
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT.OK // --help, --version
      // commander already printed the usage error on stderr; --json also needs it on stdout
      if (argv.includes('--json')) createOutput(true).error(err)
      return EXIT.USAGE
    }
    return createOutput(argv.includes('--json')).error(err)
  }
}
