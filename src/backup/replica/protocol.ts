/**
 * Wire format of `/tokenim/pin/1.0.0`: one request frame, one receipt frame, each a canonical DAG-CBOR
 * map in a length-prefixed frame (src/p2p framed) of at most MAX_PIN_FRAME bytes.
 *
 *   request  { type: "pin", owner: <lowercase 0x address>, version: uint ≥ 1, cid: <root CID link> }
 *   receipt  { type: "receipt", owner, version, cid, ok: bool, peerId: string, code?: string, message?: string }
 *
 * The root CID must be CIDv1 dag-cbor sha2-256 (the form the chain's digest derives). Decoders refuse
 * any other key, a missing key or a wrong type.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { TokenimError } from '../../errors.ts'
import { ReplicaReason } from './errors.ts'

export const PIN_PROTOCOL = '/tokenim/pin/1.0.0'
export const MAX_PIN_FRAME = 4096

export interface PinRequest {
  /** owner address (any case on input; lowercase on the wire) */
  owner: string
  version: number
  /** the bundle's root CID */
  cid: CID | string
}

export interface PinReceipt {
  owner: string
  version: number
  cid: string
  ok: boolean
  /** the replica's peer id */
  peerId: string
  /** on refusal: a ReplicaReason */
  code?: string
  message?: string
}

/** A malformed frame: a TokenimError whose code is the ReplicaReason sent back (BAD_REQUEST). */
export class ProtocolError extends TokenimError {
  readonly reason: string
  constructor (reason: string, message: string) {
    super(reason, message, { reason })
    this.name = 'ProtocolError'
    this.reason = reason
  }
}

const ADDRESS = /^0x[0-9a-f]{40}$/

function bad (message: string): ProtocolError {
  return new ProtocolError(ReplicaReason.BAD_REQUEST, message)
}

/** A root CID as the format requires it (v1, dag-cbor, sha2-256), or a ProtocolError. */
export function checkRootCid (value: unknown): CID {
  let cid: CID | null
  try {
    cid = typeof value === 'string' ? CID.parse(value) : CID.asCID(value)
  } catch {
    cid = null
  }
  if (cid === null) throw bad('cid is not a CID')
  if (cid.version !== 1 || cid.code !== 0x71 || cid.multihash.code !== 0x12 || cid.multihash.digest.length !== 32) {
    throw bad('cid must be a CIDv1 dag-cbor sha2-256 root')
  }
  return cid
}

function checkVersion (v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw bad('version must be a positive integer')
  return v
}

function checkOwner (v: unknown): string {
  if (typeof v !== 'string' || !ADDRESS.test(v.toLowerCase())) throw bad('owner must be a 0x address')
  return v.toLowerCase()
}

function exactKeys (obj: unknown, required: string[], optional: string[] = []): Record<string, unknown> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj) || obj instanceof Uint8Array || CID.asCID(obj) !== null) throw bad('frame must be a map')
  const rec = obj as Record<string, unknown>
  for (const k of Object.keys(rec)) if (!required.includes(k) && !optional.includes(k)) throw bad(`unexpected key ${JSON.stringify(k).slice(0, 40)}`)
  for (const k of required) if (!(k in rec)) throw bad(`missing key ${k}`)
  return rec
}

function decode (bytes: Uint8Array): unknown {
  if (bytes.length > MAX_PIN_FRAME) throw bad('frame too large')
  try {
    return dagCbor.decode(bytes)
  } catch {
    throw bad('frame is not DAG-CBOR')
  }
}

export function encodePinRequest (req: PinRequest): Uint8Array {
  return dagCbor.encode({ type: 'pin', owner: checkOwner(req.owner), version: checkVersion(req.version), cid: checkRootCid(req.cid) })
}

export function decodePinRequest (bytes: Uint8Array): { owner: string, version: number, cid: CID } {
  const r = exactKeys(decode(bytes), ['type', 'owner', 'version', 'cid'])
  if (r.type !== 'pin') throw bad('type must be "pin"')
  return { owner: checkOwner(r.owner), version: checkVersion(r.version), cid: checkRootCid(r.cid) }
}

export function encodeReceipt (r: PinReceipt): Uint8Array {
  const out: Record<string, unknown> = {
    type: 'receipt', owner: r.owner.toLowerCase(), version: r.version, cid: CID.parse(r.cid), ok: r.ok, peerId: r.peerId
  }
  if (r.code !== undefined) out.code = r.code.slice(0, 64)
  if (r.message !== undefined) out.message = r.message.slice(0, 512)
  return dagCbor.encode(out)
}

export function decodeReceipt (bytes: Uint8Array): PinReceipt {
  const r = exactKeys(decode(bytes), ['type', 'owner', 'version', 'cid', 'ok', 'peerId'], ['code', 'message'])
  if (r.type !== 'receipt') throw bad('type must be "receipt"')
  if (typeof r.ok !== 'boolean') throw bad('ok must be a boolean')
  if (typeof r.peerId !== 'string' || r.peerId.length > 128) throw bad('peerId must be a string')
  const out: PinReceipt = { owner: checkOwner(r.owner), version: checkVersion(r.version), cid: checkRootCid(r.cid).toString(), ok: r.ok, peerId: r.peerId }
  if (r.code !== undefined) {
    if (typeof r.code !== 'string' || r.code.length > 64) throw bad('code must be a short string')
    out.code = r.code
  }
  if (r.message !== undefined) {
    if (typeof r.message !== 'string' || r.message.length > 512) throw bad('message must be a short string')
    out.message = r.message
  }
  return out
}
