/**
 * One socket write per send on a secured connection. Noise hands the connection below it a list of
 * buffers for each send (every packet's 2-byte length, then its ciphertext), and the TCP connection writes
 * each buffer of the list with its own `socket.write`: with no Nagle delay that is one system call, one
 * loopback delivery and often one wake-up of the peer per buffer — per window of 64 messages the sender
 * made ~10 writes (half of them 2-byte lengths) and the receiver ~7. Here the encrypter's connection joins
 * the list into one buffer first (a copy of what is about to be written anyway), so the socket takes each
 * send in one write; the bytes on the wire are the same.
 */
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'

type Sendable = Parameters<MessageStream['send']>[0]

/** `stream` with its `send` taking one buffer for a list (the stream object itself, changed in place). */
function coalesceSends<S extends MessageStream> (stream: S): S {
  const send = stream.send.bind(stream)
  stream.send = (data: Sendable): boolean => send(data instanceof Uint8Array ? data : data.subarray())
  return stream
}

/** The encrypter made by `factory`, securing connections whose sends are joined into one write each. */
export function coalescingEncrypter<C> (factory: (components: C) => ConnectionEncrypter): (components: C) => ConnectionEncrypter {
  return (components) => {
    const encrypter = factory(components)
    const outbound = encrypter.secureOutbound.bind(encrypter)
    const inbound = encrypter.secureInbound.bind(encrypter)
    encrypter.secureOutbound = async (connection, options) => await outbound(coalesceSends(connection), options)
    encrypter.secureInbound = async (connection, options) => await inbound(coalesceSends(connection), options)
    return encrypter
  }
}
