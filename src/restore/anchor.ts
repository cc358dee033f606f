/**
 * The anchor check: which bundle the chain vouches for. Without an explicit version only the owner's
 * latest anchor is acceptable; a CAR whose root is an older anchored version is a rollback and is refused,
 * naming both versions; a root that matches no anchor is DIGEST_MISMATCH.
 */
import type { CID } from 'multiformats/cid'
import { checksumAddress, digestOfRoot, readHeader, rootCidFromDigest } from '../backup/index.ts'
import type { BlockGetter } from '../backup/index.ts'
import { isTokenimError, TokenimError } from '../errors.ts'
import { RestoreErrorCode, restoreError } from './errors.ts'

/** What the anchor check needs from the chain (a RegistryClient fits). */
export interface AnchorReader {
  latest: (owner: string, opts?: { signal?: AbortSignal }) => Promise<{ version: number, digest: string }>
  digestOf: (owner: string, version: number, opts?: { signal?: AbortSignal }) => Promise<string | undefined>
}

export interface ResolveAnchorOptions {
  /** the chain; undefined when no chain profile applies */
  chain?: AnchorReader
  /** the owner's address (any case) */
  owner: string
  /** restore / verify this version deliberately (default: the chain's latest) */
  version?: number
  /** the root of a CAR file, when the bundle comes from one */
  carRoot?: CID
  /** where the CAR's blocks are (to read its header and explain a mismatch) */
  blockstore?: BlockGetter
  /** accept a CAR the chain cannot vouch for (chain unreachable, no profile, never anchored), with a warning */
  allowUnanchored?: boolean
  signal?: AbortSignal
}

export interface AnchorCheck {
  /** checksummed owner */
  owner: string
  /** root of the bundle to read */
  root: CID
  /** 0x-hex sha2-256 of the root block */
  digest: string
  /** the version the chain anchors for this root (undefined when unanchored) */
  version?: number
  /** the chain's latest anchored version (undefined when the chain was not consulted) */
  latest?: number
  /** true when the chain vouches for this root */
  anchored: boolean
  warnings: string[]
}

const CHAIN_DOWN = new Set(['CHAIN_UNREACHABLE', 'CHAIN_TIMEOUT', 'WRONG_CHAIN_ID', 'NO_REGISTRY', 'CHAIN_ERROR'])

/** True for chain errors that mean "the chain could not be asked" (not "the chain said no"). */
export function isChainDown (err: unknown): boolean {
  return isTokenimError(err) && CHAIN_DOWN.has(err.code)
}

/**
 * Decide which root to read and check it against the chain. Throws NO_CHAIN_PROFILE, NO_BACKUP,
 * ROLLBACK_REFUSED, DIGEST_MISMATCH, BACKUP_OWNER_MISMATCH or the chain's errors (CHAIN_UNREACHABLE, …).
 */
export async function resolveAnchor (o: ResolveAnchorOptions): Promise<AnchorCheck> {
  const owner = checksumAddress(o.owner)
  const signal = o.signal
  const unanchored = (why: string): AnchorCheck => {
    const root = o.carRoot as CID
    return { owner, root, digest: digestOfRoot(root), anchored: false, warnings: [`${why}: restoring a backup the chain does not vouch for (--allow-unanchored)`] }
  }
  const canGoUnanchored = o.allowUnanchored === true && o.carRoot !== undefined

  if (o.chain === undefined) {
    if (canGoUnanchored) return unanchored('no chain profile')
    throw restoreError(RestoreErrorCode.NO_CHAIN_PROFILE, 'no chain profile: pass --chain FILE or set TOKENIM_CHAIN (or, for a CAR file, --allow-unanchored to skip the anchor check)')
  }
  let latest: { version: number, digest: string }
  try {
    latest = await o.chain.latest(owner, { signal })
  } catch (err) {
    if (canGoUnanchored && isChainDown(err)) return unanchored(`the chain cannot be reached (${(err as TokenimError).code})`)
    throw err
  }
  const latestDigest = latest.digest.toLowerCase()
  if (latest.version === 0) {
    if (canGoUnanchored) return unanchored(`no backup is anchored for ${owner}`)
    throw restoreError(RestoreErrorCode.NO_BACKUP, `no backup anchored for ${owner}: check the mnemonic (and the chain profile)`, { owner })
  }

  if (o.version !== undefined) {
    if (o.version > latest.version) {
      throw restoreError(RestoreErrorCode.NO_BACKUP, `version ${o.version} of ${owner} is not anchored (the latest anchored version is ${latest.version})`, { owner, version: o.version, latest: latest.version })
    }
    const anchored = o.version === latest.version ? latestDigest : (await o.chain.digestOf(owner, o.version, { signal }))?.toLowerCase()
    if (anchored === undefined) {
      throw restoreError(RestoreErrorCode.NO_BACKUP, `version ${o.version} of ${owner} was never anchored (the latest anchored version is ${latest.version})`, { owner, version: o.version, latest: latest.version })
    }
    if (o.carRoot !== undefined && digestOfRoot(o.carRoot) !== anchored) {
      const what = await describeCar(o, owner)
      throw restoreError(RestoreErrorCode.DIGEST_MISMATCH,
        `${what} does not have the digest anchored for version ${o.version} of ${owner} (${anchored})`,
        { owner, version: o.version, expected: anchored, actual: digestOfRoot(o.carRoot), cid: o.carRoot.toString() })
    }
    return { owner, root: rootCidFromDigest(anchored), digest: anchored, version: o.version, latest: latest.version, anchored: true, warnings: [] }
  }

  if (o.carRoot === undefined || digestOfRoot(o.carRoot) === latestDigest) {
    return { owner, root: rootCidFromDigest(latestDigest), digest: latestDigest, version: latest.version, latest: latest.version, anchored: true, warnings: [] }
  }

  // a CAR that is not the latest anchor: find out what it is, to name the real problem
  const carDigest = digestOfRoot(o.carRoot)
  let header: { owner: string, version: number }
  try {
    header = await readHeader({ root: o.carRoot, blockstore: o.blockstore as BlockGetter, signal })
  } catch (err) {
    if (!isTokenimError(err)) throw err
    throw restoreError(RestoreErrorCode.DIGEST_MISMATCH,
      `the bundle's root ${o.carRoot.toString()} is not the latest anchor of ${owner} (version ${latest.version}), and its root block cannot be read (${err.code})`,
      { owner, latest: latest.version, expected: latestDigest, actual: carDigest, cid: o.carRoot.toString() })
  }
  if (header.owner.toLowerCase() !== owner.toLowerCase()) {
    throw new TokenimError('BACKUP_OWNER_MISMATCH', `the bundle belongs to ${header.owner}, not ${owner}`, { expected: owner, actual: header.owner, cid: o.carRoot.toString() })
  }
  if (header.version < latest.version) {
    const anchored = (await o.chain.digestOf(owner, header.version, { signal }))?.toLowerCase()
    if (anchored === carDigest) {
      throw restoreError(RestoreErrorCode.ROLLBACK_REFUSED,
        `bundle is version ${header.version} but the chain's latest anchor for ${owner} is version ${latest.version}; pass --version ${header.version} to restore it deliberately`,
        { owner, version: header.version, latest: latest.version, cid: o.carRoot.toString() })
    }
    throw restoreError(RestoreErrorCode.DIGEST_MISMATCH,
      `the bundle says it is version ${header.version} of ${owner}, but its digest ${carDigest} is not the one anchored for that version (${anchored ?? 'none'})`,
      { owner, version: header.version, latest: latest.version, expected: anchored, actual: carDigest, cid: o.carRoot.toString() })
  }
  if (header.version > latest.version) {
    if (o.allowUnanchored === true) {
      return { ...unanchored(`bundle version ${header.version} is newer than the chain's latest anchor (version ${latest.version})`), latest: latest.version }
    }
    throw restoreError(RestoreErrorCode.DIGEST_MISMATCH,
      `the bundle is version ${header.version}, newer than the chain's latest anchor for ${owner} (version ${latest.version}): it was never anchored (pass --allow-unanchored to restore it anyway)`,
      { owner, version: header.version, latest: latest.version, actual: carDigest, cid: o.carRoot.toString() })
  }
  throw restoreError(RestoreErrorCode.DIGEST_MISMATCH,
    `the bundle says it is version ${header.version} of ${owner}, but its digest ${carDigest} is not the anchored one (${latestDigest}): it was modified or forged`,
    { owner, version: header.version, latest: latest.version, expected: latestDigest, actual: carDigest, cid: o.carRoot.toString() })
}

async function describeCar (o: ResolveAnchorOptions, owner: string): Promise<string> {
  try {
    const h = await readHeader({ root: o.carRoot as CID, blockstore: o.blockstore as BlockGetter, signal: o.signal })
    if (h.owner.toLowerCase() !== owner.toLowerCase()) return `the bundle (of ${h.owner}, version ${h.version})`
    return `the bundle (version ${h.version})`
  } catch {
    return `the bundle ${(o.carRoot as CID).toString()}`
  }
}
