import { logger } from '@libp2p/logger'
import type { Logger } from '@libp2p/logger'

export type { Logger }

/** A scoped debug logger (enable with DEBUG=tokenim:*). Never log secrets. */
export function log (component: string): Logger {
  return logger(`tokenim:${component}`)
}
