/**
 * `tokenim doctor`: check a data dir and its surroundings, each check with an actionable message. No
 * password is needed: nothing here decrypts anything.
 *
 * Each check has a level: `ok`; `warn` (works, but something is worth doing: `ok: true`, the message says
 * what); `fail` (broken or at risk: `ok: false`); `skip` (cannot be checked now, e.g. peers while no daemon
 * runs: `ok: true`, the message says why). The command exits 0 when no check failed, else with the exit
 * code of the first failure's error code (see README, "Exit codes"), or 6.
 */
import { constants } from 'node:fs'
import { access, rm, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { callApi } from '../../api/index.ts'
import { isTokenimError, TokenimError } from '../../errors.ts'
import {
  checkPrivateFileMode, identityExists, readIdentityPublic, DEVICE_KEY_FILE, IDENTITY_FILE, KEYSTORE_FILE
} from '../../identity/index.ts'
import type { PublicIdentity } from '../../identity/index.ts'
import { exists } from '../../util/fs.ts'
import { storeLossError } from '../../node/health.ts'
import { formatBytes } from '../../util/format.ts'
import { action } from '../command.ts'
import { readApiInfo } from '../daemon-client.ts'
import type { ApiInfo } from '../daemon-client.ts'
import { EXIT, exitCodeFor } from '../exit-codes.ts'
import { STORE_DIR } from '../node-access.ts'

export type CheckLevel = 'ok' | 'warn' | 'fail' | 'skip'

export interface DoctorCheck {
  name: string
  /** false only for level 'fail' */
  ok: boolean
  level: CheckLevel
  message: string
  /** the error code behind a failure (CHAIN_UNREACHABLE, INSECURE_FILE_MODE, STORE_CORRUPT, …) */
  code?: string
}

export interface DoctorReport {
  ok: boolean
  dataDir: string
  address?: string
  checks: DoctorCheck[]
}

export interface DoctorOptions {
  dataDir: string
  /** --chain FILE */
  chain?: string
  /** below this much free space the data-dir check fails (default 100 MiB); below 10× it warns */
  minFreeBytes?: number
  /** a chain call that takes longer fails the check (default 5 s) */
  chainTimeoutMs?: number
  /** the latest backup older than this is stale (default 7 days) */
  staleAfterMs?: number
  signal?: AbortSignal
}

const DAY = 86_400_000

function check (name: string, level: CheckLevel, message: string, code?: string): DoctorCheck {
  return { name, ok: level !== 'fail', level, message, ...(code !== undefined ? { code } : {}) }
}

function describe (err: unknown): { code: string, message: string } {
  if (isTokenimError(err)) return { code: err.code, message: err.message }
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) }
}

async function timed<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new TokenimError('CHAIN_TIMEOUT', `${what} did not answer within ${ms} ms`)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** Run every check; never throws for a failed check (only for bad options or an abort). */
export async function runDoctor (o: DoctorOptions): Promise<DoctorReport> {
  const checks: DoctorCheck[] = []
  const dir = o.dataDir
  const add = (c: DoctorCheck): void => { checks.push(c) }

  // identity and private files
  let identity: PublicIdentity | undefined
  if (!await identityExists(dir)) {
    add(check('identity', 'fail', `no identity in ${dir}: create one with \`tokenim init\`, or bring one back with \`tokenim restore --mnemonic-file F\``, 'NO_IDENTITY'))
  } else {
    try {
      identity = await readIdentityPublic(dir)
      add(check('identity', 'ok', `${identity.address} (peer ${identity.peerId})`))
    } catch (err) {
      const e = describe(err)
      add(check('identity', 'fail', `${e.message}: restore the identity from the mnemonic into a fresh data dir (\`tokenim restore\`)`, e.code))
    }
  }
  const insecure: string[] = []
  const present: string[] = []
  for (const f of [KEYSTORE_FILE, DEVICE_KEY_FILE, IDENTITY_FILE, 'api.json']) {
    const path = join(dir, f)
    if (!await exists(path)) continue
    present.push(f)
    const { ok, mode } = await checkPrivateFileMode(path)
    if (!ok) insecure.push(`${f} (mode ${mode.toString(8)})`)
  }
  if (insecure.length > 0) {
    add(check('keystore', 'fail', `readable by other users: ${insecure.join(', ')}; fix with: chmod 600 ${insecure.map(i => join(dir, i.split(' ')[0])).join(' ')}`, 'INSECURE_FILE_MODE'))
  } else if (present.includes(KEYSTORE_FILE)) {
    add(check('keystore', 'ok', `${present.join(', ')}: mode 0600 (only you can read them)`))
  } else {
    add(check('keystore', identity === undefined ? 'skip' : 'fail', identity === undefined ? 'skipped: no identity' : `${join(dir, KEYSTORE_FILE)} is missing: restore the identity from the mnemonic (\`tokenim restore\`)`, identity === undefined ? undefined : 'NO_IDENTITY'))
  }

  // data dir: writable, free space
  add(await dataDirCheck(dir, o.minFreeBytes ?? 100 * 1024 * 1024))

  // the daemon (and through it peers)
  const api = await readApiInfo(dir).catch(() => undefined)
  add(api !== undefined
    ? check('daemon', 'ok', `running (pid ${api.pid ?? '?'}), control API ${api.url}`)
    : check('daemon', 'ok', 'not running: commands read the store directly; start it with `tokenim daemon` to send and receive'))
  add(await peersCheck(api, o.signal))

  // chain: profile, RPC, registry, wallet
  const chain = await chainChecks(o, identity)
  checks.push(...chain.checks)

  // backups: local index vs the chain's latest anchor; replicas
  checks.push(...await backupChecks(o, api, identity, chain.latest))

  // the store
  add(await storeCheck(dir, api))

  return { ok: checks.every(c => c.ok), dataDir: dir, ...(identity !== undefined ? { address: identity.address } : {}), checks }
}

async function dataDirCheck (dir: string, minFree: number): Promise<DoctorCheck> {
  if (!await exists(dir)) return check('data-dir', 'fail', `${dir} does not exist: \`tokenim init --data-dir ${dir}\` creates it`, 'NO_SUCH_DIRECTORY')
  const probe = join(dir, `.doctor-${process.pid}.tmp`)
  try {
    await access(dir, constants.W_OK)
    await writeFile(probe, 'ok', { mode: 0o600 })
  } catch (err) {
    return check('data-dir', 'fail', `${dir} is not writable (${(err as NodeJS.ErrnoException).code ?? String(err)}): fix its owner or permissions`, 'PERMISSION_DENIED')
  } finally {
    await rm(probe, { force: true }).catch(() => {})
  }
  const fs = await statfs(dir)
  const free = Number(fs.bavail) * Number(fs.bsize)
  if (free < minFree) return check('data-dir', 'fail', `only ${formatBytes(free)} free on the disk of ${dir}: messages and backups will fail (DISK_FULL); free some space`, 'DISK_FULL')
  if (free < 10 * minFree) return check('data-dir', 'warn', `writable, but only ${formatBytes(free)} free: free some space before the next backup`)
  return check('data-dir', 'ok', `writable, ${formatBytes(free)} free`)
}

async function peersCheck (api: ApiInfo | undefined, signal?: AbortSignal): Promise<DoctorCheck> {
  if (api === undefined) return check('peers', 'skip', 'skipped: the daemon is not running')
  try {
    const s = await callApi<{ peers: number, routingTable: number }>(api, 'GET', '/v1/status', undefined, { signal: anySignal(signal, 5_000) })
    if (s.peers === 0) return check('peers', 'warn', 'the daemon has no connected peers: messages stay queued until one connects; give it a --bootstrap peer (or --mdns on a LAN)')
    return check('peers', 'ok', `${s.peers} connected, ${s.routingTable} in the DHT routing table`)
  } catch (err) {
    const e = describe(err)
    return check('peers', 'fail', `the daemon (${api.url}) does not answer: ${e.message}; restart it`, e.code === 'INTERNAL' ? 'DAEMON_UNREACHABLE' : e.code)
  }
}

function anySignal (signal: AbortSignal | undefined, ms: number): AbortSignal {
  const t = AbortSignal.timeout(ms)
  return signal === undefined ? t : AbortSignal.any([signal, t])
}

interface ChainResult { checks: DoctorCheck[], latest?: number }

async function chainChecks (o: DoctorOptions, identity: PublicIdentity | undefined): Promise<ChainResult> {
  const timeoutMs = o.chainTimeoutMs ?? 5_000
  const { resolveChainProfile, RegistryClient, DEV_CHAIN_ID } = await import('../../chain/index.ts')
  let profile
  try {
    profile = await resolveChainProfile({ chain: o.chain, dataDir: o.dataDir })
  } catch (err) {
    const e = describe(err)
    return { checks: [check('chain-profile', 'fail', `${e.message}: fix the file, or point --chain / TOKENIM_CHAIN at a valid one`, e.code)] }
  }
  if (profile === undefined) {
    return {
      checks: [check('chain-profile', 'warn', 'no chain profile (--chain FILE, TOKENIM_CHAIN, or DATA_DIR/chain.json): backups cannot be anchored, so a new device cannot prove it restored the newest history; `tokenim devnet` writes one for a local chain')]
    }
  }
  const checks: DoctorCheck[] = [check('chain-profile', 'ok', `chain ${profile.chainId}, registry ${profile.registry}, RPC ${profile.rpc}`)]
  const client = new RegistryClient(profile, undefined, { readTimeoutMs: timeoutMs })
  let latest: number | undefined
  try {
    try {
      await client.checkDeployed({ signal: o.signal, timeoutMs })
      checks.push(check('chain-rpc', 'ok', `${profile.rpc} answers with chain id ${profile.chainId}`))
      checks.push(check('registry', 'ok', `BackupRegistry deployed at ${profile.registry}`))
    } catch (err) {
      const e = describe(err)
      if (e.code === 'NO_REGISTRY') {
        checks.push(check('chain-rpc', 'ok', `${profile.rpc} answers with chain id ${profile.chainId}`))
        checks.push(check('registry', 'fail', `${e.message}`, e.code))
      } else {
        const advice = e.code === 'WRONG_CHAIN_ID' ? 'fix "chainId" in the chain profile or point it at the right RPC' : 'check the network and the "rpc" in the chain profile (for a local chain: `tokenim devnet`); backups made meanwhile stay pending and are anchored later with `tokenim backup --anchor-pending`'
        checks.push(check('chain-rpc', 'fail', `${e.message}: ${advice}`, e.code))
        checks.push(check('registry', 'skip', 'skipped: the chain is not reachable'))
      }
      checks.push(check('wallet', 'skip', 'skipped: the chain is not usable'))
      return { checks }
    }
    if (identity === undefined) {
      checks.push(check('wallet', 'skip', 'skipped: no identity'))
      return { checks }
    }
    try {
      const balance = await timed(client.provider.getBalance(identity.address), timeoutMs, 'the balance query')
      latest = (await client.latest(identity.address, { signal: o.signal, timeoutMs })).version
      const { formatEther } = await import('ethers')
      if (balance > 0n) checks.push(check('wallet', 'ok', `${identity.address} holds ${formatEther(balance)} ETH for anchoring`))
      else if (profile.chainId === DEV_CHAIN_ID) checks.push(check('wallet', 'ok', `${identity.address} holds 0 ETH; on this dev chain the node funds itself when it anchors`))
      else checks.push(check('wallet', 'warn', `${identity.address} holds no ETH: anchoring will fail with INSUFFICIENT_FUNDS; fund the wallet, or have a relayer anchor for you: \`tokenim anchor-request --out FILE\` signs a request (you sign, the relayer pays the gas), someone with a funded wallet runs \`tokenim relay FILE\`, then \`tokenim backup --anchor-pending\` records it`))
    } catch (err) {
      const e = describe(err)
      checks.push(check('wallet', 'fail', `${e.message}: check the chain RPC`, e.code))
    }
  } finally {
    client.close()
  }
  return { checks, latest }
}

interface HealthLike {
  last?: { version: number, createdAt: number, anchored: boolean, status: string }
  lastAnchored?: { version: number, createdAt: number }
  pending: number[]
  problem?: { version: number, code: string, message: string }
}

async function backupChecks (o: DoctorOptions, api: ApiInfo | undefined, identity: PublicIdentity | undefined, chainLatest: number | undefined): Promise<DoctorCheck[]> {
  if (identity === undefined) return [check('backups', 'skip', 'skipped: no identity'), check('replicas', 'skip', 'skipped: no identity')]
  let health: HealthLike
  let replicaStatus: Array<{ address: string, ok: boolean, error?: string }> = []
  try {
    if (api !== undefined) {
      health = (await callApi<{ health: HealthLike }>(api, 'GET', '/v1/backup/status', undefined, { signal: anySignal(o.signal, 5_000) })).health
    } else {
      const storePath = join(o.dataDir, STORE_DIR)
      if (!await exists(storePath)) {
        health = { pending: [] }
      } else {
        const { openStore } = await import('../../store/index.ts')
        const { backupHealth } = await import('../../backup/job/index.ts')
        const store = await openStore(storePath, { createIfMissing: false })
        try {
          health = await backupHealth(store)
          replicaStatus = (await store.latestBackup())?.replicas ?? []
        } finally {
          await store.close()
        }
      }
    }
  } catch (err) {
    const e = describe(err)
    return [check('backups', 'skip', `skipped: the backup index cannot be read (${e.code}: ${e.message})`), check('replicas', 'skip', 'skipped: the backup index cannot be read')]
  }
  const out: DoctorCheck[] = []
  const stale = o.staleAfterMs ?? 7 * DAY
  if (health.pending.length > 0) {
    const why = health.problem !== undefined ? ` (last attempt: ${health.problem.code}: ${health.problem.message})` : ''
    const newest = Math.max(...health.pending)
    const todo = chainLatest !== undefined && chainLatest >= newest
      ? `the chain already has version ${chainLatest} (relayed, or from another device): run \`tokenim backup --anchor-pending\` to record what it anchored`
      : health.problem?.code === 'INSUFFICIENT_FUNDS'
        ? 'fund the wallet, or have it relayed (`tokenim anchor-request --out FILE` here, `tokenim relay FILE` on a node with a funded wallet), then run `tokenim backup --anchor-pending`'
        : 'run `tokenim backup --anchor-pending` once the chain is reachable'
    out.push(check('backups', 'fail', `version${health.pending.length > 1 ? 's' : ''} ${health.pending.join(', ')} ${health.pending.length > 1 ? 'are' : 'is'} pending: made and pinned here but NOT anchored on the chain${why}, so a restore elsewhere would not find ${health.pending.length > 1 ? 'them' : 'it'}; ${todo}`, 'BACKUP_PENDING'))
  } else if (health.last?.status === 'conflict') {
    out.push(check('backups', 'fail', `the chain anchors another bundle under version ${health.last.version} than the one made here (ANCHOR_CONFLICT): only a holder of this wallet's key can do that (another device with the same mnemonic, or a leaked key); check \`tokenim backups\`, then make a new backup`, 'ANCHOR_CONFLICT'))
  } else if (health.last === undefined) {
    out.push(check('backups', chainLatest !== undefined && chainLatest > 0 ? 'ok' : 'warn', chainLatest !== undefined && chainLatest > 0
      ? `no backup made on this device; the chain has version ${chainLatest} (from another device or before a restore)`
      : 'no backup yet: run `tokenim backup` (or `tokenim daemon --backup-every 24h`) so this history survives losing the device'))
  } else if (!health.last.anchored) {
    out.push(check('backups', 'warn', `the latest backup (version ${health.last.version}) is ${health.last.status}: not anchored, so it cannot be verified against the chain; \`tokenim backup\` makes an anchored one`))
  } else if (chainLatest !== undefined && chainLatest > health.last.version) {
    out.push(check('backups', 'warn', `the chain's latest version is ${chainLatest}, this device's is ${health.last.version}: another device backs up this identity (restore or merge it with \`tokenim repair\`)`))
  } else if (Date.now() - health.last.createdAt > stale) {
    out.push(check('backups', 'warn', `the latest backup (version ${health.last.version}) is ${Math.floor((Date.now() - health.last.createdAt) / DAY)} days old: run \`tokenim backup\` (or \`tokenim daemon --backup-every 24h\`)`))
  } else {
    out.push(check('backups', 'ok', `version ${health.last.version} anchored${chainLatest !== undefined ? ` (the chain's latest: ${chainLatest})` : ''}, made ${new Date(health.last.createdAt).toISOString()}`))
  }
  const failed = replicaStatus.filter(r => !r.ok)
  if (health.last === undefined) out.push(check('replicas', 'skip', 'skipped: no backup on this device yet'))
  else if (api !== undefined && replicaStatus.length === 0) out.push(check('replicas', 'skip', 'skipped: replica receipts are read from the store, which the daemon holds; see `tokenim backups`'))
  else if (replicaStatus.length === 0) out.push(check('replicas', 'warn', 'no replica keeps the latest backup: if this device is lost, the backup is only where you copied it; name one with `--replica ADDR` (it runs `tokenim daemon --replica-for YOUR_ADDRESS`)'))
  else if (failed.length > 0) out.push(check('replicas', 'warn', `${failed.map(r => `${r.address}${r.error !== undefined ? ` (${r.error})` : ''}`).join(', ')} did not confirm the latest backup: check that ${failed.length > 1 ? 'they run' : 'it runs'} \`tokenim daemon --replica-for ${identity.address}\` and ${failed.length > 1 ? 'are' : 'is'} online`))
  else out.push(check('replicas', 'ok', `${replicaStatus.length} replica(s) confirmed the latest backup`))
  return out
}

async function storeCheck (dir: string, api: ApiInfo | undefined): Promise<DoctorCheck> {
  if (api !== undefined) return check('store', 'skip', 'skipped: the daemon has the store open (it checked the store when it started)')
  const storePath = join(dir, STORE_DIR)
  const { markerPathFor, openStore, readMarker } = await import('../../store/index.ts')
  if (!await exists(storePath)) {
    // a store that is gone while its marker recorded messages was lost, not never created
    const marker = await readMarker(markerPathFor(storePath))
    if (marker !== undefined && marker.messages > 0) {
      return check('store', 'fail', `the message store ${storePath} is gone, but ${markerPathFor(storePath)} recorded ${marker.messages} message(s) on ${new Date(marker.updatedAt).toISOString()}: run \`tokenim repair\` to bring them back from your latest backup`, 'STORE_CORRUPT')
    }
    return check('store', 'ok', 'no message store yet (it is created on first use)')
  }
  let store
  try {
    store = await openStore(storePath, { createIfMissing: false })
  } catch (err) {
    const e = describe(err)
    if (e.code === 'STORE_LOCKED') return check('store', 'skip', `skipped: ${e.message}`)
    if (e.code === 'STORE_SCHEMA_UNKNOWN') return check('store', 'fail', e.message, e.code)
    return check('store', 'fail', `${e.message}${/repair/.test(e.message) ? '' : '; run `tokenim repair`'}`, e.code === 'STORE_IO' ? 'STORE_CORRUPT' : e.code)
  }
  try {
    const problems = await store.checkConsistency({ limit: 5 })
    const count = await store.countMessages()
    if (problems.length > 0) {
      return check('store', 'fail', `${problems.map(p => p.message).join('; ')}: run \`tokenim repair\` (rebuilds the indexes from the messages; with a chain profile it also merges the latest backup)`, 'STORE_CORRUPT')
    }
    // consistent but emptied (LevelDB can drop a damaged log silently): only the marker can tell
    const loss = storeLossError(store)
    if (loss !== undefined) return check('store', 'fail', loss.message, loss.code)
    return check('store', 'ok', `consistent: ${count} message(s) in ${(await store.conversations()).length} conversation(s)`)
  } catch (err) {
    const e = describe(err)
    return check('store', 'fail', `${e.message}; run \`tokenim repair\``, e.code)
  } finally {
    await store.close().catch(() => {})
  }
}

export function registerDoctor (program: Command): void {
  program.command('doctor')
    .description('check the keystore, permissions, disk, chain, daemon, peers, backups and the store; say what to do')
    .addHelpText('after', `
Needs no password. --json prints {ok, dataDir, address?, checks:[{name, ok, level, message, code?}]};
level is ok, warn (works, but worth doing what the message says; ok stays true), fail (ok false) or
skip (cannot be checked now, e.g. peers while the daemon is not running).
Checks: identity, keystore (private files mode 0600), data-dir (writable, free space), daemon, peers,
chain-profile, chain-rpc, registry, wallet (balance; without ETH: anchor-request + relay), backups
(pending / in conflict with the chain / unanchored / stale / behind the chain), replicas, store (consistency; messages lost since store.json recorded them).
Exit 0 when no check failed; otherwise the exit code of the first failure (e.g. 5 chain unreachable,
6 store damaged or backup pending).

Examples:
  $ tokenim doctor
  $ tokenim doctor --chain ~/chain.json --json`)
    .action(action(async (ctx) => {
      const report = await runDoctor({ dataDir: ctx.opts.dataDir, chain: ctx.opts.chain, signal: ctx.signal })
      const mark: Record<CheckLevel, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' }
      ctx.out.result(report, r => [
        ...r.checks.map(c => `${mark[c.level]}  ${c.name.padEnd(13)} ${c.message}`),
        '',
        r.ok ? 'no problems found' : `${r.checks.filter(c => !c.ok).length} problem(s) found: see FAIL above`
      ].join('\n'))
      const first = report.checks.find(c => !c.ok)
      if (first === undefined) return EXIT.OK
      const code = exitCodeFor(new TokenimError(first.code ?? 'STATE', first.message))
      return code === EXIT.FAILURE ? EXIT.STATE : code
    }))
}
