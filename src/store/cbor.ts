/** The store's CBOR records: the shared fast path (src/util/cbor.ts), cborg's bytes in insertion order. */
export { NOT_DECODED, decodeRecord, encodeRecord } from '../util/cbor.ts'
