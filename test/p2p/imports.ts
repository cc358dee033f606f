import { isTokenimError } from '../../src/errors.ts'
export * from '../../src/p2p/index.ts'

export function isP2PNotStarted (err: unknown): boolean {
  return isTokenimError(err, 'P2P_NOT_STARTED')
}
