/**
 * Sections 2 and 3: a full backup of a generated history, then +1% messages (incremental), then a
 * restore of the latest version from a replica over 127.0.0.1 — each against restic on the same
 * history exported as files (one JSONL file per conversation), in a fresh restic repository.
 *
 * The tokenim backup is the real job (`runBackup`: build, pin, anchor on a local devnet, backup
 * index); the restore is the real one (`restoreBackup` with `openNetworkSource` dialling a replica
 * that pinned the version, every block hash-checked, every segment decrypted, counts checked).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runBackup } from '../../src/backup/job/index.ts'
import type { RunBackupResult } from '../../src/backup/job/index.ts'
import { requestReplicaPin, startReplicaService } from '../../src/backup/replica/index.ts'
import type { ReplicaService } from '../../src/backup/replica/index.ts'
import { RegistryClient, startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { createIdentity } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { openNetworkSource, restoreBackup } from '../../src/restore/index.ts'
import { addHistory, exportJsonl, moreMessages, newHistory, pick } from './history.ts'
import type { Recorder } from './results.ts'
import { findRestic, resticBackup, resticFixedCost, resticIn, resticInit, resticRestore } from './restic.ts'
import type { Restic, ResticBackup } from './restic.ts'
import type { Scale } from './scale.ts'
import { CHEAP_KDF, PASSWORD } from './util.ts'

const SECTION = 'backup'
const RESTORE = 'restore'

export async function benchBackup (scale: Scale, rec: Recorder): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'tokenim-bench-backup-'))
  let devnet: Devnet | undefined
  const nodes: TokenimNode[] = []
  const clients: RegistryClient[] = []
  let replicaService: ReplicaService | undefined
  try {
    // restic first: its install (when missing) must not be timed with anything
    const found = await findRestic(scale.resticTimeoutMs, scale.name !== 'tiny')
    let restic: Restic | undefined
    let resticSkip = found.reason
    if (found.restic !== undefined) {
      restic = resticIn(join(root, 'restic'), found.restic, scale.resticTimeoutMs)
      await resticInit(restic)
    }
    const skipRestic = (what: string, reason: string): void => {
      restic = undefined
      resticSkip = reason
      rec.skip(SECTION, what, reason)
    }
    if (resticSkip !== undefined) rec.skip(SECTION, 'restic references', resticSkip)

    devnet = await startDevnet()
    const readChain = new RegistryClient(devnet.profile)
    clients.push(readChain)
    const created = await createIdentity(join(root, 'alice'), { password: PASSWORD, scryptN: CHEAP_KDF })
    await createIdentity(join(root, 'replica'), { password: PASSWORD, scryptN: CHEAP_KDF })
    const phrase = created.mnemonic
    if (phrase === undefined) throw new Error('a new identity comes with its mnemonic')
    const alice = await TokenimNode.open({ dataDir: join(root, 'alice'), password: PASSWORD })
    await alice.start()
    nodes.push(alice)
    const aliceChain = new RegistryClient(devnet.profile, alice.identity.wallet)
    clients.push(aliceChain)

    // the history: in the store, and exported as files for restic
    const history = newHistory(alice.address, scale.conversations)
    const all = Array.from({ length: scale.conversations }, (_, i) => i)
    const files = join(root, 'export', 'history')
    await addHistory(alice.store, history, scale.messages, all, { onBatch: async batch => { await exportJsonl(files, batch, true) } })
    const textBytes = await alice.store.countMessages()
    if (textBytes !== scale.messages) throw new Error(`the store holds ${textBytes} messages, not ${scale.messages}`)

    // full backup
    const full = await timedBackup(alice, aliceChain)
    let r1: ResticBackup | undefined
    if (restic !== undefined) r1 = await resticBackup(restic, join(root, 'export'), 'history').catch((err: Error) => { skipRestic('full backup', err.message); return undefined })
    rec.figure({
      section: SECTION,
      name: `full backup time (${scale.messages.toLocaleString('en-US')} msgs, ${scale.conversations} convs)`,
      value: full.ms,
      unit: 'ms',
      ...(r1 !== undefined ? { reference: { name: 'restic backup', value: r1.ms } } : {}),
      targets: [{ of: 'ratio', op: '<=', limit: 1.0 }],
      note: 'runBackup: segments, zstd, AES-GCM, blocks in Helia, pin, anchor on the local devnet, backup index'
    })
    rec.figure({
      section: SECTION,
      name: 'full backup stored bytes',
      value: full.result.bytesTotal,
      unit: 'B',
      ...(r1 !== undefined ? { reference: { name: 'restic data_added', value: r1.dataAdded } } : {}),
      note: r1 !== undefined ? `exported files: ${r1.bytesProcessed} bytes of JSONL` : undefined
    })

    // +1%: new messages in a share of the conversations (the active ones)
    const activeCount = Math.max(1, Math.round(scale.conversations * scale.incrementConversationShare))
    const active = pick(all, activeCount, history.rand)
    const added = moreMessages(history, Math.max(1, Math.round(scale.messages * scale.incrementShare)), active)
    await alice.store.addMessages(added)
    await exportJsonl(files, added, true)
    const inc = await timedBackup(alice, aliceChain)
    let r2: ResticBackup | undefined
    if (restic !== undefined) r2 = await resticBackup(restic, join(root, 'export'), 'history').catch((err: Error) => { skipRestic('incremental backup', err.message); return undefined })
    const share = 100 * inc.result.bytesNew / inc.result.bytesTotal
    rec.figure({
      section: SECTION,
      name: `+${added.length} msgs in ${activeCount} convs: new bytes share`,
      value: share,
      unit: '%',
      ...(r2 !== undefined && r1 !== undefined ? { reference: { name: 'restic 2nd snapshot data_added / 1st', value: 100 * r2.dataAdded / r1.dataAdded } } : {}),
      targets: [{ of: 'value', op: '<=', limit: 3 }],
      note: `bytesNew ${inc.result.bytesNew} of bytesTotal ${inc.result.bytesTotal}`
    })
    rec.figure({
      section: SECTION,
      name: 'incremental backup time',
      value: inc.ms,
      unit: 'ms',
      ...(r2 !== undefined ? { reference: { name: 'restic backup (2nd snapshot)', value: r2.ms } } : {}),
      targets: [{ of: 'ratio', op: '<=', limit: 1.0 }]
    })

    // a replica pins the latest version, then a new device restores it over 127.0.0.1
    const replica = await TokenimNode.open({ dataDir: join(root, 'replica'), password: PASSWORD, bootstrap: alice.multiaddrs().slice(0, 1) })
    await replica.start()
    nodes.push(replica)
    replicaService = await startReplicaService(replica, { owners: [alice.address], chain: readChain })
    const p0 = performance.now()
    await requestReplicaPin(alice, replica.address, { owner: alice.address, version: inc.result.version, cid: inc.result.cid }, { timeout: 600_000 })
    const pinMs = performance.now() - p0
    rec.note(`restore: the replica fetched (a DAG stream from the owner, bitswap for the rest) and pinned version ${inc.result.version} (${inc.result.bytesTotal} bytes) in ${Math.round(pinMs)} ms (not part of any figure)`)
    const bootstrap = replica.multiaddrs().slice(0, 1)
    // the replica alone serves the blocks: the owner's node goes away (its device is "lost")
    await alice.stop()
    nodes.splice(nodes.indexOf(alice), 1)

    const r0 = performance.now()
    const source = await openNetworkSource({ bootstrap })
    let restored
    try {
      restored = await restoreBackup({ dataDir: join(root, 'restored'), phrase, password: PASSWORD, scryptN: CHEAP_KDF, source, chain: readChain })
    } finally {
      await source.close()
    }
    const restoreMs = performance.now() - r0
    if (!restored.ok || restored.messages !== scale.messages + added.length) {
      throw new Error(`restore: ok=${String(restored.ok)}, ${restored.messages} messages instead of ${scale.messages + added.length}`)
    }
    let resticRestoreMs: number | undefined
    if (restic !== undefined) {
      resticRestoreMs = await resticRestore(restic, join(root, 'restic-restored')).catch((err: Error) => {
        rec.skip(RESTORE, 'restic restore', err.message)
        return undefined
      })
    } else {
      rec.skip(RESTORE, 'restic restore', resticSkip ?? 'restic unavailable')
    }
    rec.figure({
      section: RESTORE,
      name: `restore from a replica (${restored.messages.toLocaleString('en-US')} msgs)`,
      value: restoreMs,
      unit: 'ms',
      ...(resticRestoreMs !== undefined ? { reference: { name: 'restic restore (local repo)', value: resticRestoreMs } } : {}),
      targets: [{ of: 'ratio', op: '<=', limit: 1.0 }],
      note: 'openNetworkSource + restoreBackup: chain anchor, DAG stream from the replica (bitswap for the rest), every block hash-checked, segments decrypted, counts checked, import, new keystore (cheap KDF)'
    })
    if (found.restic !== undefined) rec.note(`backup/restore reference: ${found.restic}, fresh repository in a temp dir, history exported as one JSONL file per conversation`)
    if (restic !== undefined) {
      const fixed = await resticFixedCost(restic).catch(() => undefined)
      if (fixed !== undefined) rec.note(`restic's fixed cost per command (opening the repository and deriving its key: \`restic cat config\`, median of 3): ${Math.round(fixed)} ms, part of each restic figure above`)
    }
  } finally {
    await replicaService?.stop().catch(() => {})
    for (const node of nodes.reverse()) await node.stop().catch(() => {})
    for (const c of clients) c.close()
    await devnet?.stop().catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

async function timedBackup (node: TokenimNode, chain: RegistryClient): Promise<{ ms: number, result: RunBackupResult }> {
  const t0 = performance.now()
  const result = await runBackup({ node, chain }) as RunBackupResult
  const ms = performance.now() - t0
  if (!result.anchored) throw new Error(`the backup was not anchored: ${result.warnings.map(w => w.message).join('; ')}`)
  return { ms, result }
}

