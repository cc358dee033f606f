// Public surface of the chain domain: BackupRegistry client, chain profiles, local devnet.
export {
  RegistryClient, anchorDomain, anchorTypedData, cidFromDigest,
  DEV_CHAIN_ID, ROOT_CODEC, ROOT_HASH_CODE, DEFAULT_READ_TIMEOUT_MS, DEFAULT_SEND_TIMEOUT_MS
} from './client.ts'
export type {
  AnchorEvent, AnchorInfo, AnchorResult, ChainCallOptions, EnsureFundsOptions, EnsureFundsResult,
  RegistryClientOptions, TypedDataSigner
} from './client.ts'
export {
  CHAIN_PROFILE_FILE, loadChainProfile, parseChainProfile, resolveChainProfile, resolveChainProfilePath,
  writeChainProfile
} from './profile.ts'
export type { ChainProfile, ResolveChainProfileOptions } from './profile.ts'
export { deployRegistry } from './deploy.ts'
export type { DeployRegistryOptions } from './deploy.ts'
export { startDevnet } from './devnet.ts'
export type { Devnet, DevnetOptions } from './devnet.ts'
export { ChainErrorCode, toChainError } from './errors.ts'
export { checkAnchorRequest, createAnchorRequest, parseAnchorRequest, readAnchorRequest, relayAnchorRequest } from './relay.ts'
export type { AnchorRequest, RelayResult } from './relay.ts'
export { registryArtifact } from './registry-artifact.ts'
