/**
 * Length-prefixed frames on a libp2p 3 stream: an unsigned varint byte length, then that many bytes.
 *
 * libp2p 3 streams are message streams (`send()` returns false when the muxer's buffer is full and
 * a 'drain' event follows; incoming data arrives as 'message' events). `framed()` wraps one so a
 * protocol can `await write(frame)` (waits for 'drain', i.e. respects backpressure) and
 * `await read()` one frame at a time with a size cap checked before the payload is buffered.
 *
 * @example
 * ```ts
 * // dialer
 * const f = framed(await node.dialProtocol(peer, PROTO, { signal }), { maxFrameBytes: 64 * 1024 })
 * await f.write(request, { signal })
 * const reply = await f.read({ signal })      // null: the remote closed without answering
 * await f.close({ signal })
 *
 * // listener
 * await node.handle(PROTO, async (stream) => {
 *   const f = framed(stream, { maxFrameBytes: 64 * 1024 })
 *   const signal = AbortSignal.timeout(10_000)
 *   for (let req = await f.read({ signal }); req != null; req = await f.read({ signal })) {
 *     await f.write(answer(req), { signal })
 *   }
 *   await f.close({ signal })
 * })
 * ```
 */
import type { AbortOptions, Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { concat } from 'uint8arrays/concat'
import { P2PError, P2PErrorCode } from './errors.ts'

/** Default cap of one frame. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
/** what byteStream buffers what the stream delivered in (a Uint8ArrayList) */
interface ReadBuffer {
  readonly byteLength: number
  get: (index: number) => number
  subarray: (start: number, end: number) => Uint8Array
  consume: (bytes: number) => void
}

/** A varint of more than 5 bytes would exceed 2^35: never a valid length for us. */
const MAX_VARINT_BYTES = 5

export interface FramedOptions {
  /** frames longer than this are refused with `MESSAGE_TOO_LARGE` and the stream is aborted */
  maxFrameBytes?: number
}

export interface FramedStream {
  /**
   * Read the next frame. Resolves `null` when the remote closed its writing side cleanly between frames.
   * Throws `MESSAGE_TOO_LARGE` (stream aborted) for an over-long frame; a truncated frame is `PROTOCOL_VIOLATION`; a reset or an
   * aborted signal reject with the underlying error.
   */
  read: (options?: AbortOptions) => Promise<Uint8Array | null>
  /** Write one frame; waits for 'drain' when the stream's send buffer is full (backpressure). */
  write: (frame: Uint8Array, options?: AbortOptions) => Promise<void>
  /** Close our writing side after everything queued is sent (the remote reads `null` next). */
  close: (options?: AbortOptions) => Promise<void>
  /** Reset the stream (both directions) with an error. */
  abort: (err: Error) => void
  /** the wrapped stream */
  readonly stream: Stream
}

/** Wrap a stream for length-prefixed frames. Use one wrapper per stream for its whole life. */
export function framed (stream: Stream, options: FramedOptions = {}): FramedStream {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
  const bytes = byteStream(stream, { maxBufferSize: Math.max(4 * 1024 * 1024, 2 * maxFrameBytes + 16) })

  const readByte = async (signal?: AbortSignal): Promise<number | null> => {
    try {
      const list = await bytes.read({ bytes: 1, signal })
      return list.get(0)
    } catch (err) {
      if ((err as Error)?.name === 'UnexpectedEOFError') return null
      throw err
    }
  }

  /**
   * The next frame when it is wholly in the read buffer already (the common case: a window of envelopes
   * arrives in one chunk), read synchronously — no promise per prefix byte and per payload — else
   * undefined, and read() waits for it as before. The same checks: a too long prefix or frame aborts the
   * stream with MESSAGE_TOO_LARGE.
   */
  const buf = (bytes as unknown as { readBuffer?: ReadBuffer }).readBuffer
  const buffered = (): Uint8Array | undefined => {
    if (buf === undefined) return undefined
    const have = buf.byteLength
    if (have === 0) return undefined
    let length = 0
    let prefix = 0
    for (;;) {
      if (prefix >= have) return undefined
      const b = buf.get(prefix)
      length += (b & 0x7f) * 2 ** (7 * prefix)
      prefix++
      if ((b & 0x80) === 0) break
      if (prefix >= MAX_VARINT_BYTES) throw tooLongPrefix(stream)
    }
    if (length > maxFrameBytes) throw tooLarge(stream, length, maxFrameBytes)
    if (have < prefix + length) return undefined
    const payload = buf.subarray(prefix, prefix + length)
    buf.consume(prefix + length)
    // a plain Uint8Array, not a Buffer view, whatever the transport handed us
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
  }

  return {
    stream,
    async read (opts: AbortOptions = {}) {
      const ready = buffered()
      if (ready !== undefined) return ready
      let length = 0
      for (let i = 0; ; i++) {
        const b = await readByte(opts.signal)
        if (b == null) {
          if (i === 0) return null
          throw truncated(stream)
        }
        length += (b & 0x7f) * 2 ** (7 * i)
        if ((b & 0x80) === 0) break
        if (i + 1 >= MAX_VARINT_BYTES) throw tooLongPrefix(stream)
      }
      if (length > maxFrameBytes) throw tooLarge(stream, length, maxFrameBytes)
      if (length === 0) return new Uint8Array(0)
      try {
        const payload = (await bytes.read({ bytes: length, signal: opts.signal })).subarray()
        // a plain Uint8Array, not a Buffer view, whatever the transport handed us
        return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
      } catch (err) {
        if ((err as Error)?.name === 'UnexpectedEOFError') throw truncated(stream, err)
        throw err
      }
    },
    async write (frame: Uint8Array, opts: AbortOptions = {}) {
      if (frame.byteLength > maxFrameBytes) {
        throw new P2PError(P2PErrorCode.MESSAGE_TOO_LARGE, `frame of ${frame.byteLength} bytes is larger than ${maxFrameBytes}`, { protocol: stream.protocol, length: frame.byteLength, maxFrameBytes })
      }
      await bytes.write(concat([encodeVarint(frame.byteLength), frame]), opts)
    },
    async close (opts: AbortOptions = {}) {
      await stream.close(opts)
    },
    abort (err: Error) {
      stream.abort(err)
    }
  }
}

/** MESSAGE_TOO_LARGE for a length prefix of more than MAX_VARINT_BYTES, the stream aborted */
function tooLongPrefix (stream: Stream): P2PError {
  const err = new P2PError(P2PErrorCode.MESSAGE_TOO_LARGE, 'frame length prefix is too long', { protocol: stream.protocol })
  stream.abort(err)
  return err
}

/** MESSAGE_TOO_LARGE for a frame over the cap, the stream aborted */
function tooLarge (stream: Stream, length: number, maxFrameBytes: number): P2PError {
  const err = new P2PError(P2PErrorCode.MESSAGE_TOO_LARGE, `frame of ${length} bytes is larger than ${maxFrameBytes}`, { protocol: stream.protocol, length, maxFrameBytes })
  stream.abort(err)
  return err
}

function truncated (stream: Stream, cause?: unknown): P2PError {
  return new P2PError(P2PErrorCode.PROTOCOL_VIOLATION, 'stream ended inside a frame', { protocol: stream.protocol }, { cause })
}

/** The unsigned-varint length prefix of a frame of `n` bytes (as {@link framed} writes it). */
export function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}
