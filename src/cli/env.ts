/**
 * TOKENIM_INSECURE_FAST_KDF=1 makes new keystores use a cheap scrypt cost so test suites that spawn
 * many CLI processes stay fast. It weakens the keystore: tests only. The cost is recorded in the
 * keystore itself, so unlocking never depends on this variable.
 */
export function fastKdfForTests (): { scryptN?: number } {
  return process.env.TOKENIM_INSECURE_FAST_KDF === '1' ? { scryptN: 1024 } : {}
}
