import { TokenimError } from '../errors.ts'

/** Stable error codes raised by src/node (part of the public contract: never rename one). */
export const NodeErrorCode = {
  /** an operation needs a started node */
  NODE_NOT_STARTED: 'NODE_NOT_STARTED',
  /** a bad argument to TokenimNode (missing password and identity, …) */
  INVALID_NODE_ARGUMENT: 'INVALID_NODE_ARGUMENT'
} as const

export type NodeErrorCode = typeof NodeErrorCode[keyof typeof NodeErrorCode]

export class NodeError extends TokenimError {
  constructor (code: NodeErrorCode, message: string, info: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, info, options)
    this.name = 'NodeError'
  }
}
