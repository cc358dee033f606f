import assert from 'node:assert/strict'
import { ApiErrorCode } from '../../src/api/index.ts'
import { BackupErrorCode } from '../../src/backup/index.ts'
import { ExportErrorCode } from '../../src/backup/export/index.ts'
import { BackupJobErrorCode } from '../../src/backup/job/index.ts'
import { ReplicaErrorCode } from '../../src/backup/replica/index.ts'
import { ChainErrorCode } from '../../src/chain/index.ts'
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts'
import { CryptoErrorCode } from '../../src/crypto/index.ts'
import { TokenimError } from '../../src/errors.ts'
import { IdentityErrorCode } from '../../src/identity/index.ts'
import { AttachmentErrorCode, MessagingErrorCode } from '../../src/messaging/index.ts'
import { NodeErrorCode } from '../../src/node/index.ts'
import { P2PErrorCode } from '../../src/p2p/index.ts'
import { RestoreErrorCode } from '../../src/restore/index.ts'
import { StoreErrorCode } from '../../src/store/index.ts'

const tables = {
  ApiErrorCode,
  BackupErrorCode,
  ExportErrorCode,
  BackupJobErrorCode,
  ReplicaErrorCode,
  ChainErrorCode,
  CryptoErrorCode,
  IdentityErrorCode,
  AttachmentErrorCode,
  MessagingErrorCode,
  NodeErrorCode,
  P2PErrorCode,
  RestoreErrorCode,
  StoreErrorCode
}

describe('cli exit codes', () => {
  it('maps every error code a domain declares to a specific exit code (1 is kept for bugs)', () => {
    const unmapped: string[] = []
    for (const [table, codes] of Object.entries(tables)) {
      for (const code of Object.values(codes as Record<string, string>)) {
        if (exitCodeFor(new TokenimError(code, 'x')) === EXIT.FAILURE) unmapped.push(`${table}.${code}`)
      }
    }
    assert.deepEqual(unmapped, [])
  })

  it('maps codes raised as literals, and leaves unknown codes and plain errors at 1', () => {
    assert.equal(exitCodeFor(new TokenimError('NO_SUCH_FILE', 'x')), EXIT.STATE)
    assert.equal(exitCodeFor(new TokenimError('DAEMON_ERROR', 'x')), EXIT.NETWORK)
    assert.equal(exitCodeFor(new TokenimError('PASSWORD_REQUIRED', 'x')), EXIT.AUTH)
    assert.equal(exitCodeFor(new TokenimError('INTERRUPTED', 'x')), EXIT.INTERRUPTED)
    assert.equal(exitCodeFor(new TokenimError('INTERNAL', 'x')), EXIT.FAILURE)
    assert.equal(exitCodeFor(new Error('boom')), EXIT.FAILURE)
  })
})
