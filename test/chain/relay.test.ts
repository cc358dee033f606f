import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Wallet } from 'ethers'
import { checkAnchorRequest, cidFromDigest, createAnchorRequest, parseAnchorRequest, readAnchorRequest } from '../../src/chain/index.ts'
import type { AnchorRequest } from '../../src/chain/index.ts'
import { isTokenimError } from '../../src/errors.ts'

const profile = { chainId: 10, registry: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }
const NOW = 1_900_000_000
const hex32 = (byte: string): string => '0x' + byte.repeat(32)

function hasCode (code: string, field?: string) {
  return (err: unknown): boolean => {
    assert.ok(isTokenimError(err, code), `expected ${code}, got ${String((err as { code?: string }).code)}: ${String(err)}`)
    if (field !== undefined) assert.equal(err.info.field, field)
    return true
  }
}

describe('chain: anchor requests (relayed anchoring)', () => {
  const owner = Wallet.createRandom()
  let request: AnchorRequest
  let dir: string

  before(async () => {
    request = await createAnchorRequest(profile, owner, { version: 7, digest: hex32('5a'), deadline: NOW + 3600 })
    dir = await mkdtemp(join(tmpdir(), 'tokenim-anchor-request-'))
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('is signed by the owner for one (version, digest, deadline) on one chain and registry, and checks out', () => {
    assert.deepEqual(request, {
      owner: owner.address,
      version: 7,
      digest: hex32('5a'),
      cid: cidFromDigest(hex32('5a')),
      deadline: NOW + 3600,
      chainId: 10,
      registry: profile.registry,
      signature: request.signature
    })
    const parsed = parseAnchorRequest(JSON.parse(JSON.stringify(request)))
    assert.deepEqual(parsed, request)
    checkAnchorRequest(parsed, profile, NOW)
    // a lowercase owner / registry in the file is the same request
    checkAnchorRequest(parseAnchorRequest({ ...request, owner: request.owner.toLowerCase(), registry: request.registry.toLowerCase() }), profile, NOW)
  })

  it('any changed signed field breaks the signature: INVALID_SIGNATURE', async () => {
    const other = hex32('77')
    for (const altered of [
      { ...request, digest: other, cid: cidFromDigest(other) },
      { ...request, version: 8 },
      { ...request, deadline: NOW + 7200 },
      { ...request, owner: Wallet.createRandom().address }
    ]) {
      assert.throws(() => { checkAnchorRequest(parseAnchorRequest(altered), profile, NOW) }, hasCode('INVALID_SIGNATURE'))
    }
    // signed by someone else for this owner
    const forged = await createAnchorRequest(profile, Wallet.createRandom(), { version: 7, digest: hex32('5a'), deadline: NOW + 3600 })
    assert.throws(() => { checkAnchorRequest({ ...forged, owner: owner.address }, profile, NOW) }, hasCode('INVALID_SIGNATURE'))
  })

  it('another chain id or registry than the relayer\'s profile: ANCHOR_REQUEST_WRONG_CHAIN', () => {
    assert.throws(() => { checkAnchorRequest(request, { ...profile, chainId: 11 }, NOW) }, hasCode('ANCHOR_REQUEST_WRONG_CHAIN'))
    assert.throws(() => { checkAnchorRequest(request, { ...profile, registry: owner.address }, NOW) }, hasCode('ANCHOR_REQUEST_WRONG_CHAIN'))
    // changing the request's own chain fields to the relayer's breaks the signature instead
    assert.throws(() => { checkAnchorRequest({ ...request, chainId: 11 }, { ...profile, chainId: 11 }, NOW) }, hasCode('INVALID_SIGNATURE'))
  })

  it('past its deadline: SIGNATURE_EXPIRED (the registry refuses it once the block time is past the deadline)', () => {
    checkAnchorRequest(request, profile, NOW + 3600)
    assert.throws(() => { checkAnchorRequest(request, profile, NOW + 3601) }, hasCode('SIGNATURE_EXPIRED'))
  })

  it('malformed or inconsistent requests: INVALID_ANCHOR_REQUEST naming the field', () => {
    assert.throws(() => parseAnchorRequest({ ...request, cid: cidFromDigest(hex32('77')) }), hasCode('INVALID_ANCHOR_REQUEST', 'cid'))
    assert.throws(() => parseAnchorRequest({ ...request, digest: hex32('00'), cid: cidFromDigest(hex32('00')) }), hasCode('INVALID_ANCHOR_REQUEST', 'digest'))
    assert.throws(() => parseAnchorRequest({ ...request, signature: '0x1234' }), hasCode('INVALID_ANCHOR_REQUEST', 'signature'))
    assert.throws(() => parseAnchorRequest({ ...request, version: 0 }), hasCode('INVALID_ANCHOR_REQUEST', 'version'))
    assert.throws(() => parseAnchorRequest({ ...request, owner: 'alice' }), hasCode('INVALID_ANCHOR_REQUEST', 'owner'))
    const { deadline: _, ...noDeadline } = request
    assert.throws(() => parseAnchorRequest(noDeadline), hasCode('INVALID_ANCHOR_REQUEST', 'deadline'))
    assert.throws(() => parseAnchorRequest([request]), hasCode('INVALID_ANCHOR_REQUEST'))
  })

  it('reads a request file: FILE_NOT_FOUND, INVALID_ANCHOR_REQUEST for anything but one JSON request', async () => {
    const good = join(dir, 'good.json')
    await writeFile(good, JSON.stringify(request, null, 2))
    assert.deepEqual(await readAnchorRequest(good), request)
    await assert.rejects(readAnchorRequest(join(dir, 'missing.json')), hasCode('FILE_NOT_FOUND'))
    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify(request).slice(0, -2))
    await assert.rejects(readAnchorRequest(bad), hasCode('INVALID_ANCHOR_REQUEST'))
  })
})
