import { keccak_256 } from '@noble/hashes/sha3.js'

const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/

export function isAddressLike (v: unknown): v is string {
  return typeof v === 'string' && ADDRESS_RE.test(v)
}

/** EIP-55 checksummed form of an address (any case in, mixed case out). */
export function checksumAddress (address: string): string {
  const lower = address.slice(2).toLowerCase()
  const hash = Buffer.from(keccak_256(new TextEncoder().encode(lower))).toString('hex')
  let out = '0x'
  for (let i = 0; i < 40; i++) {
    out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i]
  }
  return out
}

/** True when `v` is an address written exactly in its EIP-55 checksummed form. */
export function isChecksummedAddress (v: unknown): v is string {
  return isAddressLike(v) && checksumAddress(v) === v
}
