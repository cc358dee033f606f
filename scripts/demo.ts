/**
 * `npm run demo` — tokenim's main job on embedded defaults, with nothing to configure: a local chain,
 * three nodes on 127.0.0.1 (Alice, Bob, and a replica that keeps Alice's backups), end-to-end
 * encrypted messages both ways, an anchored backup pinned by the replica, an incremental one, the
 * loss of Alice's device, and a restore on a new device from her mnemonic alone through the replica
 * and the chain — then a tampered CAR and an older version refused with their precise reasons.
 * Everything runs in a temporary directory removed at the end; exit 0 only if every step held.
 */
import { mkdtemp, rm, readFile, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import { Wallet } from 'ethers'
import { startDevnet, RegistryClient, type Devnet } from '../src/chain/index.ts'
import { createIdentity } from '../src/identity/index.ts'
import { TokenimNode } from '../src/node/index.ts'
import { runBackup, type RunBackupResult } from '../src/backup/job/index.ts'
import { startReplicaService, type ReplicaService } from '../src/backup/replica/index.ts'
import { restoreBackup, openNetworkSource, openCarSource } from '../src/restore/index.ts'
import { isTokenimError } from '../src/errors.ts'
import type { StoredMessage } from '../src/store/index.ts'

const PASSWORD = 'demo password (not secret)'
const CHEAP_KDF = 1024 // keystore scrypt cost for a demo; real keystores use 2^17
const started = Date.now()
const rows: Array<[string, string]> = []

const say = (text: string): void => { process.stdout.write(`${text}\n`) }
const step = (text: string): void => say(`\n▸ ${text}`)
const note = (text: string): void => say(`  ${text}`)
const record = (what: string, value: string): void => { rows.push([what, value]) }

async function until (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** Older conversations with made-up peers, so the backups have a realistic shape. */
function generatedHistory (self: string, conversations: number, perConversation: number): StoredMessage[] {
  const out: StoredMessage[] = []
  const t0 = Date.now() - 90 * 86_400_000
  const me = self.toLowerCase()
  for (let c = 0; c < conversations; c++) {
    const peer = Wallet.createRandom().address.toLowerCase()
    for (let i = 0; i < perConversation; i++) {
      const incoming = i % 2 === 0
      out.push({
        id: `demo-${c}-${i}`,
        conversation: peer,
        from: incoming ? peer : me,
        to: incoming ? me : peer,
        ts: t0 + c * 3_600_000 + i * 60_000,
        text: `(${c}/${i}) ${'lorem ipsum dolor sit amet '.repeat(1 + (i * 7) % 5)}`,
        direction: incoming ? 'in' : 'out',
        status: incoming ? 'received' : 'delivered'
      })
    }
  }
  return out
}

/** Restore into `dataDir`, expecting a refusal; returns "CODE: message". */
async function refusedRestore (dataDir: string, phrase: string, carPath: string, chain: RegistryClient): Promise<string> {
  const source = await openCarSource(carPath)
  try {
    await restoreBackup({ dataDir, phrase, password: PASSWORD, scryptN: CHEAP_KDF, source, chain })
    return 'ACCEPTED'
  } catch (err) {
    return isTokenimError(err) ? `${err.code}: ${err.message}` : `error: ${(err as Error).message}`
  } finally {
    await source.close()
  }
}

/** A small valid PNG (RGB, 96×64, a colourful pattern), made here so the demo needs no image file. */
function makePicture (width = 96, height = 64): Buffer {
  const rows: Buffer[] = []
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3) // filter byte 0, then RGB
    for (let x = 0; x < width; x++) {
      row[1 + x * 3] = (x * 255 / width) ^ (y * 7)
      row[2 + x * 3] = (y * 255 / height) ^ (x * 5)
      row[3 + x * 3] = ((x * y) ^ (x + y) * 13) & 0xff
    }
    rows.push(row)
  }
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8)
    head.writeUInt32BE(data.length, 0)
    head.write(type, 4, 'latin1')
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
    return Buffer.concat([head, data, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 2, 0, 0, 0], 8) // 8-bit RGB, deflate, no filter method extras, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0))
  ])
}

async function readAll (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}

async function isEmptyDir (dir: string): Promise<boolean> {
  return await readdir(dir).then(entries => entries.length === 0, () => true)
}

const root = await mkdtemp(join(tmpdir(), 'tokenim-demo-'))
let devnet: Devnet | undefined
const nodes: TokenimNode[] = []
const clients: RegistryClient[] = []
let replicaService: ReplicaService | undefined

async function startNode (name: string, bootstrap: string[] = []): Promise<TokenimNode> {
  const node = await TokenimNode.open({ dataDir: join(root, name), password: PASSWORD, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap })
  await node.start()
  nodes.push(node)
  return node
}

try {
  step('Starting a local EVM chain and deploying BackupRegistry')
  devnet = await startDevnet()
  const readChain = new RegistryClient(devnet.profile)
  clients.push(readChain)
  note(`chain ${devnet.chainId} at ${devnet.rpc}, registry ${devnet.registry}`)

  step('Creating identities: each is a wallet from a BIP-39 mnemonic')
  const aliceId = await createIdentity(join(root, 'alice'), { password: PASSWORD, scryptN: CHEAP_KDF })
  await createIdentity(join(root, 'bob'), { password: PASSWORD, scryptN: CHEAP_KDF })
  await createIdentity(join(root, 'replica'), { password: PASSWORD, scryptN: CHEAP_KDF })
  const aliceMnemonic = aliceId.mnemonic
  if (aliceMnemonic === undefined) throw new Error('a new identity must come with its mnemonic')
  note(`Alice ${aliceId.address} (mnemonic: ${aliceMnemonic.split(' ').length} words, kept aside for later)`)

  step('Starting three nodes on 127.0.0.1: a replica that keeps Alice\'s backups, Alice and Bob')
  const replica = await startNode('replica')
  replicaService = await startReplicaService(replica, { owners: [aliceId.address], chain: readChain })
  const bootstrap = replica.multiaddrs().slice(0, 1)
  const alice = await startNode('alice', bootstrap)
  const bob = await startNode('bob', bootstrap)
  note(`replica ${replica.address}  ${bootstrap[0]}`)
  note(`Bob     ${bob.address}`)

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
    note(`${from === alice ? 'Alice' : 'Bob  '} → ${text}  [delivered]`)
  }
  await until('Bob to store every message', async () => (await bob.messages(alice.address)).length === lines.length)
  record('messages exchanged (E2E, delivered)', String(lines.length))

  step('Alice sends Bob a picture: encrypted with a fresh key, stored in IPFS (UnixFS); Bob\'s node fetches it over bitswap')
  const picture = makePicture()
  const picturePath = join(root, 'sunset.png')
  await writeFile(picturePath, picture)
  const fetchedByBob = new Set<string>()
  bob.on('attachment', (e) => { fetchedByBob.add(e.id) })
  const pic = await alice.sendFile(bob.address, picturePath, { caption: 'The sunset from the balcony.' })
  await until('Bob\'s node to fetch and verify the picture', () => fetchedByBob.has(pic.id))
  const atBob = await readAll(await bob.getAttachment(pic.id, { offline: true }))
  note(`Alice → ${pic.attachment.name} (${picture.length} bytes, ${pic.attachment.mime}, cid ${pic.attachment.cid.slice(0, 16)}…)  [${pic.status}]`)
  note(`Bob's node fetched it, checked size and SHA-256, pinned it: ${atBob.equals(picture) ? 'identical bytes' : 'DIFFERENT'}`)
  if (!atBob.equals(picture)) throw new Error('Bob got a different picture')
  record('picture (attachment) at Bob', `identical bytes, ${picture.length} bytes`)

  step('Alice\'s phone also holds an older history: 3,000 messages in 30 conversations (generated for the demo)')
  await alice.store.addMessages(generatedHistory(alice.address, 30, 100))
  note(`${await alice.store.countMessages()} messages in ${(await alice.store.conversations()).length} conversations`)

  step('Alice backs up: encrypted, pinned on her node, anchored on-chain, pinned by the replica')
  const aliceChain = new RegistryClient(devnet.profile, alice.identity.wallet)
  clients.push(aliceChain)
  const v1Car = join(root, 'alice-v1.car')
  const v1 = await runBackup({ node: alice, chain: aliceChain, replicas: [replica.address], out: v1Car }) as RunBackupResult
  note(`version ${v1.version}: ${v1.messages} messages, ${v1.bytesTotal} bytes, root ${v1.cid}`)
  note(`anchored in tx ${v1.txHash}; replicas: ${v1.replicas.map(r => `${r.address.slice(0, 10)}… ${r.ok ? 'pinned' : `FAILED ${r.error ?? ''}`}`).join(', ')}`)
  record('backup v1 (bytes total / new)', `${v1.bytesTotal} / ${v1.bytesNew}`)
  if (!v1.anchored || !v1.replicas.every(r => r.ok)) throw new Error('backup v1 was not anchored and replicated')

  step('More messages, then an incremental backup: only what changed is stored again')
  for (let i = 0; i < 20; i++) await alice.send(bob.address, `message ${i} after the first backup`)
  const v2Car = join(root, 'alice-v2.car')
  const v2 = await runBackup({ node: alice, chain: aliceChain, replicas: [replica.address], out: v2Car }) as RunBackupResult
  const share = (100 * v2.bytesNew / v2.bytesTotal).toFixed(1)
  note(`version ${v2.version}: ${v2.messages} messages, ${v2.bytesTotal} bytes total, ${v2.bytesNew} new (${share}%)`)
  record('backup v2 (bytes total / new)', `${v2.bytesTotal} / ${v2.bytesNew} (${share}%)`)
  record('replica confirmations', `${v1.replicas.filter(r => r.ok).length + v2.replicas.filter(r => r.ok).length} / 2`)
  const original = await alice.messages()

  step('Alice\'s device is lost: her node stops and its data dir is deleted')
  await alice.stop()
  nodes.splice(nodes.indexOf(alice), 1)
  await rm(join(root, 'alice'), { recursive: true, force: true })
  note('gone: keystore, device key, messages, blocks')

  step('A new device restores from the mnemonic alone, through the replica and the chain')
  const source = await openNetworkSource({ bootstrap })
  let restored
  try {
    restored = await restoreBackup({ dataDir: join(root, 'alice-new'), phrase: aliceMnemonic, password: PASSWORD, scryptN: CHEAP_KDF, source, chain: readChain })
  } finally {
    await source.close()
  }
  note(`restored version ${restored.version} (the chain's latest), ${restored.messages} messages in ${restored.conversations} conversations`)
  const aliceAgain = await startNode('alice-new', bootstrap)
  const history = await aliceAgain.messages()
  const same = history.length === original.length && history.every((m, i) => m.id === original[i].id && m.text === original[i].text && m.ts === original[i].ts)
  note(`history ${same ? 'identical' : 'DIFFERENT'}: ids, texts and order of ${history.length} messages`)
  record('restored on a new device (mnemonic only)', same ? `identical, ${history.length} messages, version ${restored.version}` : 'DIFFERENT')
  if (!same || restored.version !== v2.version) throw new Error('the restored history differs from the original')
  const restoredPicture = await readAll(await aliceAgain.getAttachment(pic.id, { offline: true })).catch((err: Error) => { note(`picture: ${err.message}`); return Buffer.alloc(0) })
  const pictureSame = restoredPicture.equals(picture)
  note(`the picture Alice sent, read on the new device from its own blockstore: ${pictureSame ? 'identical bytes' : 'DIFFERENT'}`)
  record('picture (attachment) after restore', pictureSame ? 'identical bytes' : 'DIFFERENT')
  if (!pictureSame) throw new Error('the restored picture differs from the original')
  await aliceAgain.send(bob.address, 'Back on a new phone, with everything.')
  note('Alice → Back on a new phone, with everything.  (her new device record is published)')

  step('A tampered CAR is refused, and nothing is written')
  const bytes = await readFile(v2Car)
  bytes[bytes.length - 10] ^= 0xff
  const tampered = join(root, 'tampered.car')
  await writeFile(tampered, bytes)
  const tamperVerdict = await refusedRestore(join(root, 'victim-1'), aliceMnemonic, tampered, readChain)
  note(tamperVerdict)
  const untouched = await isEmptyDir(join(root, 'victim-1'))
  record('tampered CAR', tamperVerdict === 'ACCEPTED' ? 'ACCEPTED' : `refused (${tamperVerdict.split(':')[0]})${untouched ? ', nothing written' : ''}`)
  if (tamperVerdict === 'ACCEPTED' || !untouched) throw new Error('a tampered CAR was accepted or left files behind')

  step('An older version is a rollback: refused unless asked for by number')
  const rollbackVerdict = await refusedRestore(join(root, 'victim-2'), aliceMnemonic, v1Car, readChain)
  note(rollbackVerdict)
  record('version 1 offered as the latest', rollbackVerdict.startsWith('ROLLBACK_REFUSED') ? 'refused (ROLLBACK_REFUSED)' : `NOT REFUSED AS A ROLLBACK: ${rollbackVerdict}`)
  if (!rollbackVerdict.startsWith('ROLLBACK_REFUSED')) throw new Error('rollback not refused')

  say('\nSummary')
  const width = Math.max(...rows.map(r => r[0].length))
  for (const [k, v] of rows) say(`  ${k.padEnd(width)}  ${v}`)
  say(`  ${'time'.padEnd(width)}  ${((Date.now() - started) / 1000).toFixed(1)} s`)
} catch (err) {
  process.exitCode = 1
  process.stderr.write(`\ndemo failed: ${isTokenimError(err) ? `${err.code}: ` : ''}${(err as Error).message}\n`)
} finally {
  await replicaService?.stop().catch(() => {})
  for (const node of nodes.reverse()) await node.stop().catch(() => {})
  for (const c of clients) c.close()
  await devnet?.stop().catch(() => {})
  await rm(root, { recursive: true, force: true })
}
process.exit(process.exitCode ?? 0)
