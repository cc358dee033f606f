/**
 * src/p2p — one libp2p node per device (TCP, noise, yamux, identify, ping, kad-dht) with Helia on it,
 * and finding people by wallet address through wallet-signed device records.
 *
 * @example
 * ```ts
 * const node = await createP2PNode({ privateKey: deviceKey, dataDir, listen, bootstrap })
 * await node.start()
 * const publisher = new DeviceRecordPublisher(node, { address, messagingKey, signer: wallet })
 * await publisher.start()
 * const resolver = new Resolver(node)
 * resolver.start()
 * const { stream } = await resolver.dialProtocol(theirAddress, '/tokenim/msg/1.0.0', { signal })
 * const f = framed(stream, { maxFrameBytes: 256 * 1024 })
 * await f.write(bytes, { signal })
 * // … stop in reverse order
 * await resolver.stop(); await publisher.stop(); await node.stop()
 * ```
 */
export { P2PError, P2PErrorCode } from './errors.ts'
export { createP2PNode, P2PNode, DHT_PROTOCOL, DEFAULT_LISTEN, DEFAULT_DIAL_TIMEOUT_MS } from './node.ts'
export type { LocalBlocks, LocalKv, P2PNodeInit, P2PNodeEvents, P2PServices, P2PLibp2p, P2PHelia, DhtRecordHooks, DialOptions, DialTarget } from './node.ts'
export { blockBatcher, getBlock } from './blocks.ts'
export { dagBlocks, pinKey, pinnedBlockKey } from './local-pins.ts'
export type { KnownBlocks, LocalPins, LocalPinOptions } from './local-pins.ts'
export type { BlockBatchWriter, BlockGetter, BlockResult } from './blocks.ts'
export { fetchDag, fetchBlock, dagLinks, gateProviderLookups, DEFAULT_FETCH_CONCURRENCY, DEFAULT_LOOKUP_AFTER_MS, DEFAULT_FETCH_BLOCK_TIMEOUT_MS } from './fetch-dag.ts'
export type { FetchDagOptions, FetchDagResult, FetchDagProgress, FetchedBlock, FetchBlockOptions, FetchBlockRaceOptions, DagBlockstore, ProviderRouting } from './fetch-dag.ts'
export { fetchDagStream, serveDagStream, DAG_PROTOCOL, MAX_DAG_STREAM_BLOCK } from './dag-stream.ts'
export type { FetchDagStreamOptions, FetchDagStreamResult, DagStreamDialer, LocalBlockRead } from './dag-stream.ts'
export { framed, encodeVarint, DEFAULT_MAX_FRAME_BYTES } from './frames.ts'
export type { FramedStream, FramedOptions } from './frames.ts'
export { DeviceRecordPublisher, fetchPeerRecord, checkRecordBytes, RECORD_PROTOCOL, DEFAULT_REPUBLISH_INTERVAL_MS } from './records.ts'
export type { DeviceRecordPublisherInit, PublishResult } from './records.ts'
export { Resolver, DEFAULT_CACHE_TTL_MS, DEFAULT_RESOLVE_TIMEOUT_MS } from './resolver.ts'
export type { ResolvedPeer, ResolveOptions, ResolverInit, ResolveSource } from './resolver.ts'
export type { Stream, Connection, PeerId, StreamHandler } from '@libp2p/interface'
export type { Multiaddr } from '@multiformats/multiaddr'
