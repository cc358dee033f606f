import type { Command } from 'commander'
import { registerInit } from './init.ts'
import { registerId } from './id.ts'

/** Every command, in the order `tokenim --help` lists them. */
export const commands: Array<(program: Command) => void> = [
  registerInit,
  registerId
]
