/**
 * Section 6: start-up. TokenimNode.start() (store, libp2p + Helia, device record, resolver, messaging)
 * against a bare P2PNode start (libp2p + Helia + level stores only) in the same kind of fresh data dir;
 * and `tokenim daemon` from spawn to api.json against `tokenim --help` (loading the CLI only).
 */
import { spawn } from 'node:child_process'
import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createIdentity, loadOrCreateDeviceKey } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { createP2PNode } from '../../src/p2p/index.ts'
import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
import { CHEAP_KDF, PASSWORD, REPO_ROOT, median, run, until } from './util.ts'

const SECTION = 'startup'
const BIN = join(REPO_ROOT, 'bin', 'tokenim.js')

export async function benchStartup (scale: Scale, rec: Recorder): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'tokenim-bench-start-'))
  try {
    const nodeMs: number[] = []
    const bareMs: number[] = []
    for (let i = 0; i < scale.startSamples; i++) {
      const dir = join(root, `node-${i}`)
      await createIdentity(dir, { password: PASSWORD, scryptN: CHEAP_KDF })
      const node = await TokenimNode.open({ dataDir: dir, password: PASSWORD })
      let t0 = performance.now()
      await node.start()
      nodeMs.push(performance.now() - t0)
      await node.stop()

      const bareDir = join(root, `bare-${i}`)
      const bare = await createP2PNode({ dataDir: bareDir, privateKey: await loadOrCreateDeviceKey(bareDir) })
      t0 = performance.now()
      await bare.start()
      bareMs.push(performance.now() - t0)
      await bare.stop()
    }
    rec.figure({
      section: SECTION,
      name: 'TokenimNode.start() → ready',
      value: median(nodeMs),
      unit: 'ms',
      reference: { name: 'bare libp2p + Helia start', value: median(bareMs) },
      note: `median of ${scale.startSamples}; identity unlocked before (cheap keystore KDF)`
    })

    const daemonMs: number[] = []
    const cliMs: number[] = []
    for (let i = 0; i < scale.startSamples; i++) {
      const dir = join(root, `daemon-${i}`)
      await createIdentity(dir, { password: PASSWORD, scryptN: CHEAP_KDF })
      daemonMs.push(await daemonToApiJson(dir))
      const version = await run(process.execPath, [BIN, '--help'], { timeoutMs: 60_000 })
      if (version.code !== 0) throw new Error(`tokenim --help exited ${String(version.code)}`)
      cliMs.push(version.ms)
    }
    rec.figure({
      section: SECTION,
      name: 'daemon spawn → api.json',
      value: median(daemonMs),
      unit: 'ms',
      reference: { name: 'tokenim --help (spawn → exit)', value: median(cliMs) },
      note: `median of ${scale.startSamples}; child process \`node bin/tokenim.js daemon\`, keystore with a cheap KDF (a real one adds its scrypt time)`
    })
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** Spawn the daemon, time until api.json exists, stop it with SIGTERM and wait for its exit. */
async function daemonToApiJson (dataDir: string): Promise<number> {
  const t0 = performance.now()
  const child = spawn(process.execPath, [BIN, 'daemon', '--data-dir', dataDir], {
    env: { ...process.env, TOKENIM_PASSWORD: PASSWORD, TOKENIM_LISTEN: '', TOKENIM_BOOTSTRAP: '' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const exited = new Promise<number | null>(resolve => { child.on('close', resolve) })
  let exitCode: number | null | undefined
  void exited.then(code => { exitCode = code })
  try {
    await until('the daemon to write api.json', async () => {
      if (exitCode !== undefined) throw new Error(`the daemon exited ${String(exitCode)}: ${stderr.trim().slice(-300)}`)
      return await access(join(dataDir, 'api.json')).then(() => true, () => false)
    }, 60_000)
    return performance.now() - t0
  } finally {
    if (exitCode === undefined) child.kill('SIGTERM')
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 15_000)
    await exited
    clearTimeout(timer)
  }
}
