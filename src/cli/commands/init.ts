import type { Command } from 'commander'
import { createIdentity } from '../../identity/index.ts'
import { TokenimError } from '../../errors.ts'
import { action, intOption } from '../command.ts'
import { readSecret, readSecretFile } from '../password.ts'
import { fastKdfForTests } from '../env.ts'

export function registerInit (program: Command): void {
  program.command('init')
    .description('create a new identity (wallet from a BIP-39 mnemonic) or import one')
    .option('--mnemonic-file <file>', 'import the mnemonic in this file instead of generating one')
    .option('--words <n>', 'words in a new mnemonic: 12 or 24', '12')
    .addHelpText('after', `
The mnemonic is your identity and the key to your backups: write it down and keep it offline.
It is stored encrypted with your password in DATA_DIR/keystore.json (mode 0600).

Examples:
  $ tokenim init                                  # new 12-word identity, password prompt
  $ tokenim init --words 24 --password-file pw.txt --json
  $ tokenim init --mnemonic-file words.txt        # import an existing mnemonic`)
    .action(action<{ mnemonicFile?: string, words: string }>(async ({ opts, out }, _args, o) => {
      const words = intOption(o.words, '--words')
      if (words !== 12 && words !== 24) throw new TokenimError('USAGE', '--words must be 12 or 24')
      const phrase = o.mnemonicFile !== undefined ? await readSecretFile(o.mnemonicFile, 'mnemonic') : undefined
      const password = await readSecret(opts, { purpose: 'new keystore password', confirm: true })
      const created = await createIdentity(opts.dataDir, { phrase, words, password, ...fastKdfForTests() })
      out.result(created, r => [
        `address  ${r.address}`,
        `peer id  ${r.peerId}`,
        `data dir ${opts.dataDir}`,
        ...(r.mnemonic !== undefined
          ? ['', 'Your mnemonic (write it down, keep it offline, never share it):', '', `  ${r.mnemonic}`, '']
          : [])
      ].join('\n'))
    }))
}
