/**
 * `npm run demo` — tokenim's main job on embedded defaults, with nothing to configure: a local chain,
 * three nodes on 127.0.0.1 (Alice, Bob, and a replica), end-to-end encrypted messages both ways,
 * an anchored backup, an incremental one, and the checks a restore relies on. Everything runs in a
 * temporary directory that is removed at the end; the process exits 0 only if every step held.
 */
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startDevnet, RegistryClient, type Devnet } from '../src/chain/index.ts'
import { createIdentity, deriveBackupKey } from '../src/identity/index.ts'
import { TokenimNode } from '../src/node/index.ts'
import { buildBackup, writeCar, readCar, verifyBackup, readBackup } from '../src/backup/index.ts'
import { isTokenimError } from '../src/errors.ts'
import type { StoredMessage } from '../src/store/index.ts'
import { Wallet } from 'ethers'

const PASSWORD = 'demo password (not secret)'
const started = Date.now()
const rows: Array<[string, string]> = []

function step (text: string): void {
  process.stdout.write(`\n▸ ${text}\n`)
}
function note (text: string): void {
  process.stdout.write(`  ${text}\n`)
}
function record (what: string, value: string): void {
  rows.push([what, value])
}
async function until (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const root = await mkdtemp(join(tmpdir(), 'tokenim-demo-'))
let devnet: Devnet | undefined
const nodes: TokenimNode[] = []
let chain: RegistryClient | undefined

/** Older conversations with made-up peers, so the backups have a realistic shape. */
function generatedHistory (self: string, conversations: number, perConversation: number): StoredMessage[] {
  const out: StoredMessage[] = []
  const t0 = Date.now() - 90 * 86_400_000
  for (let c = 0; c < conversations; c++) {
    const peer = Wallet.createRandom().address.toLowerCase()
    for (let i = 0; i < perConversation; i++) {
      const incoming = i % 2 === 0
      out.push({
        id: `demo-${c}-${i}`,
        conversation: peer,
        from: incoming ? peer : self.toLowerCase(),
        to: incoming ? self.toLowerCase() : peer,
        ts: t0 + c * 3_600_000 + i * 60_000,
        text: `(${c}/${i}) ${'lorem ipsum dolor sit amet '.repeat(1 + (i * 7) % 5)}`,
        direction: incoming ? 'in' : 'out',
        status: incoming ? 'received' : 'delivered'
      })
    }
  }
  return out
}

async function newNode (name: string, bootstrap: string[] = []): Promise<TokenimNode> {
  const dataDir = join(root, name)
  await createIdentity(dataDir, { password: PASSWORD, scryptN: 1024 })
  const node = await TokenimNode.open({ dataDir, password: PASSWORD, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap })
  await node.start()
  nodes.push(node)
  return node
}

try {
  step('Starting a local EVM chain and deploying BackupRegistry')
  devnet = await startDevnet()
  note(`chain ${devnet.chainId} at ${devnet.rpc}, registry ${devnet.registry}`)

  step('Starting three nodes on 127.0.0.1: a replica, Alice and Bob')
  const replica = await newNode('replica')
  const bootstrap = replica.multiaddrs().slice(0, 1)
  const alice = await newNode('alice', bootstrap)
  const bob = await newNode('bob', bootstrap)
  note(`Alice ${alice.address}`)
  note(`Bob   ${bob.address}`)

  step('Alice and Bob find each other by wallet address and exchange end-to-end encrypted messages')
  const lines: Array<[TokenimNode, TokenimNode, string]> = [
    [alice, bob, 'Hi Bob! This is Alice, over tokenim.'],
    [bob, alice, 'Hi Alice. Found you by your wallet address.'],
    [alice, bob, 'Our history is backed up and anchored on-chain.'],
    [bob, alice, 'So nobody can roll it back without us noticing?'],
    [alice, bob, 'Exactly. Watch.']
  ]
  for (const [from, to, text] of lines) {
    const sent = await from.send(to.address, text)
    await until(`delivery of "${text}"`, async () => (await from.store.getMessage(sent.id))?.status === 'delivered')
    note(`${from === alice ? 'Alice' : 'Bob  '} → ${text}  [${(await from.store.getMessage(sent.id))?.status}]`)
  }
  await until('Bob to store every message', async () => (await bob.messages(alice.address)).length === lines.length)
  record('messages exchanged (E2E, delivered)', String(lines.length))

  step('Alice\'s phone also holds an older history: 3,000 messages in 30 conversations (generated for the demo)')
  await alice.store.addMessages(generatedHistory(alice.address, 30, 100))
  note(`${await alice.store.countMessages()} messages in ${(await alice.store.conversations()).length} conversations`)

  step('Alice backs up: encrypted bundle in Helia, digest anchored on-chain')
  const backupKey = (await deriveBackupKey(alice.identity.keys.backupRootKey)).key
  chain = new RegistryClient(devnet.profile, alice.identity.wallet)
  await chain.ensureFunds(alice.address)
  const v1 = await buildBackup({ store: alice.store, blockstore: alice.p2p.helia.blockstore, owner: alice.address, version: 1, backupKey })
  const tx1 = await chain.anchor(1, v1.digest)
  note(`version 1: ${v1.messages} messages, ${v1.bytesTotal} bytes, root ${v1.root.toString()}`)
  note(`anchored in tx ${tx1.txHash}`)
  record('backup v1 (bytesTotal / bytesNew)', `${v1.bytesTotal} / ${v1.bytesNew}`)

  step('More messages, then an incremental backup: only what changed is new')
  for (let i = 0; i < 20; i++) await alice.send(bob.address, `message ${i} after the first backup`)
  const v2 = await buildBackup({ store: alice.store, blockstore: alice.p2p.helia.blockstore, owner: alice.address, version: 2, backupKey, prevRoot: v1.root })
  await chain.anchor(2, v2.digest)
  note(`version 2: ${v2.messages} messages, ${v2.bytesTotal} bytes total, ${v2.bytesNew} bytes new (${(100 * v2.bytesNew / v2.bytesTotal).toFixed(1)}%)`)
  record('backup v2 (bytesTotal / bytesNew)', `${v2.bytesTotal} / ${v2.bytesNew}`)

  step('Writing version 2 as a CAR file and checking it against the chain')
  const carPath = join(root, 'alice-v2.car')
  await writeCar(v2.root, alice.p2p.helia.blockstore, carPath)
  const latest = await chain.latest(alice.address)
  const car = await readCar(carPath)
  const report = await verifyBackup({ root: car.root, blockstore: car.blockstore, backupKey })
  const rootDigestMatches = latest.digest.toLowerCase() === v2.digest.toLowerCase()
  note(`chain latest: version ${latest.version}, digest ${latest.digest}`)
  note(`CAR verified: ${report.ok ? 'intact' : 'PROBLEMS'}, root digest ${rootDigestMatches ? 'equals' : 'DIFFERS FROM'} the anchor`)
  if (!report.ok || !rootDigestMatches || latest.version !== 2) throw new Error('the fresh backup did not verify')
  const reader = await readBackup({ root: car.root, blockstore: car.blockstore, owner: alice.address, version: 2, backupKey })
  let restored = 0
  for await (const _ of reader.messages()) restored++
  record('messages read back from the CAR', String(restored))

  step('A tampered CAR is refused')
  const bytes = await readFile(carPath)
  bytes[bytes.length - 10] ^= 0xff
  const tamperedPath = join(root, 'tampered.car')
  await writeFile(tamperedPath, bytes)
  let tamperVerdict = 'accepted (BUG)'
  try {
    const t = await readCar(tamperedPath)
    const r = await verifyBackup({ root: t.root, blockstore: t.blockstore, backupKey })
    if (!r.ok) tamperVerdict = `refused: ${r.problems[0]?.code} ${r.problems[0]?.message ?? ''}`
  } catch (err) {
    tamperVerdict = `refused: ${isTokenimError(err) ? err.code : ''} ${(err as Error).message}`
  }
  note(tamperVerdict)
  record('tampered CAR', tamperVerdict.startsWith('refused') ? 'refused' : 'ACCEPTED')
  if (!tamperVerdict.startsWith('refused')) throw new Error('a tampered CAR was accepted')

  step('An older version is a rollback: its digest is not the newest anchor')
  const v1Digest = await chain.digestOf(alice.address, 1)
  const isRollback = v1Digest !== undefined && v1Digest.toLowerCase() !== latest.digest.toLowerCase()
  note(`version 1 digest ${v1Digest} ≠ latest anchor (version ${latest.version}): ${isRollback ? 'refused as a rollback' : 'NOT DETECTED'}`)
  record('older version offered as latest', isRollback ? 'refused (rollback)' : 'ACCEPTED')
  if (!isRollback) throw new Error('rollback not detected')

  process.stdout.write('\nSummary\n')
  const width = Math.max(...rows.map(r => r[0].length))
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`)
  process.stdout.write(`  ${'time'.padEnd(width)}  ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
} catch (err) {
  process.exitCode = 1
  process.stderr.write(`\ndemo failed: ${isTokenimError(err) ? `${err.code}: ` : ''}${(err as Error).message}\n`)
} finally {
  await chain?.close?.()
  for (const node of nodes.reverse()) await node.stop().catch(() => {})
  await devnet?.stop().catch(() => {})
  await rm(root, { recursive: true, force: true })
}
process.exit(process.exitCode ?? 0)
