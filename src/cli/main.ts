import { runCli } from './program.ts'

const code = await runCli(process.argv)
// Flush stdout, then exit: a library timer left behind must never keep a finished command alive.
process.stdout.write('', () => process.exit(code))
