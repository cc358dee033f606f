import { TokenimError } from '../errors.ts'

/**
 * Stable error codes raised by src/messaging. They are part of the public contract (the CLI prints
 * them), so never rename one.
 */
export const MessagingErrorCode = {
  /** a frame is not a well-formed tokenim frame (bad cbor, wrong shape, wrong types or lengths, unknown version) */
  MALFORMED_FRAME: 'MALFORMED_FRAME',
  /** a frame is larger than {@link MAX_FRAME_BYTES} */
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  /** the envelope did not authenticate under the keys of its claimed sender and recipient */
  DECRYPT_FAILED: 'DECRYPT_FAILED',
  /** the envelope names a sender whose published messaging key is not the key it was sealed with */
  FORGED_SENDER: 'FORGED_SENDER',
  /** the envelope is addressed to someone else */
  WRONG_RECIPIENT: 'WRONG_RECIPIENT',
  /** a receipt does not authenticate, or does not match the message it acknowledges */
  FORGED_RECEIPT: 'FORGED_RECEIPT',
  /** the recipient did not acknowledge in time, or the stream failed */
  DELIVERY_FAILED: 'DELIVERY_FAILED',
  /** a peer sent more than its share of frames */
  RATE_LIMITED: 'RATE_LIMITED',
  /** a bad argument (not an address, empty message, too long text, …) */
  INVALID_MESSAGE_ARGUMENT: 'INVALID_MESSAGE_ARGUMENT',
  /** the messaging service (or node) is not started */
  MESSAGING_NOT_STARTED: 'MESSAGING_NOT_STARTED'
} as const

export type MessagingErrorCode = typeof MessagingErrorCode[keyof typeof MessagingErrorCode]

/** An error raised on purpose by src/messaging. `code` is one of {@link MessagingErrorCode}. */
export class MessagingError extends TokenimError {
  constructor (code: MessagingErrorCode, message: string, info: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, info, options)
    this.name = 'MessagingError'
  }
}

export function malformed (message: string, info: Record<string, unknown> = {}): MessagingError {
  return new MessagingError(MessagingErrorCode.MALFORMED_FRAME, `malformed frame: ${message}`, info)
}
