import type { Command } from 'commander'
import { registerInit } from './init.ts'
import { registerId } from './id.ts'
import { registerDaemon } from './daemon.ts'
import { registerSend } from './send.ts'
import { registerAttachment } from './attachment.ts'
import { registerMessages } from './messages.ts'
import { registerContacts } from './contacts.ts'
import { registerStatus } from './status.ts'
import { registerDevnet } from './devnet.ts'
import { registerExport } from './export.ts'
import { registerVerify } from './verify.ts'
import { registerRestore } from './restore.ts'
import { registerBackup } from './backup.ts'
import { registerBackups } from './backups.ts'
import { registerAnchorRequest } from './anchor-request.ts'
import { registerRelay } from './relay.ts'
import { registerRepair } from './repair.ts'
import { registerDoctor } from './doctor.ts'

/** Every command, in the order `tokenim --help` lists them. */
export const commands: Array<(program: Command) => void> = [
  registerInit,
  registerId,
  registerDaemon,
  registerSend,
  registerAttachment,
  registerMessages,
  registerContacts,
  registerStatus,
  registerBackup,
  registerBackups,
  registerAnchorRequest,
  registerRelay,
  registerExport,
  registerVerify,
  registerRestore,
  registerRepair,
  registerDoctor,
  registerDevnet
]
