import type { Command } from 'commander'
import { acquireDaemonLock, createRoutes, displayAddress, startApiServer } from '../../api/index.ts'
import type { BackupServices } from '../../api/backup-routes.ts'
import type { ApiServer, DaemonLock } from '../../api/index.ts'
import { readIdentityPublic } from '../../identity/index.ts'
import type { TokenimNode } from '../../node/index.ts'
import type { StoredMessage } from '../../store/index.ts'
import { action, collect } from '../command.ts'
import { removeApiInfo, writeApiInfo } from '../daemon-client.ts'
import { relativeTime } from '../format.ts'
import { resolveNodeSettings } from '../node-config.ts'
import type { NodeFlags } from '../node-config.ts'
import { readSecret, readSecretFile } from '../password.ts'

/** A clean shutdown step that takes longer than this is abandoned (the process exits anyway). */
const STOP_STEP_TIMEOUT_MS = 5_000

interface DaemonOptions extends NodeFlags {
  passphraseFile?: string
}

export function registerDaemon (program: Command): void {
  program.command('daemon')
    .description('run the node in the foreground: network, messaging and the loopback control API the other commands use')
    .option('--listen <multiaddr>', 'listen address (repeatable; default /ip4/127.0.0.1/tcp/0)', collect)
    .option('--bootstrap <multiaddr>', 'peer to join the network through, …/p2p/<peerId> (repeatable)', collect)
    .option('--mdns', 'discover peers on the local network (mDNS)')
    .option('--replica <address>', 'wallet address of a node asked to keep our backups (repeatable)', collect)
    .option('--replica-for <address>', 'keep the backups of this owner (repeatable)', collect)
    .option('--backup-every <duration>', 'make a backup this often, e.g. 24h (at least 1m)')
    .option('--passphrase-file <file>', 'backup passphrase for scheduled backups (read once, kept in memory only)')
    .addHelpText('after', `
Once ready it writes DATA_DIR/api.json {url, token, peerId, multiaddrs, pid} (mode 0600) and prints
its address, peer id and multiaddrs (--json: {address, peerId, multiaddrs, api}). Other commands
(send, messages, contacts, status, id) then go through it. Ctrl-C or SIGTERM stops it cleanly.
One daemon per data dir: a second one is refused (DAEMON_RUNNING).

Settings: flags > environment (TOKENIM_LISTEN, TOKENIM_BOOTSTRAP: comma-separated) > DATA_DIR/config.json
("listen", "bootstrap", "mdns", "replicas", "replicaFor", "backupEvery") > defaults.
By default it listens on 127.0.0.1 only (other programs on this machine can reach it, nobody else).
To be reachable on the LAN, listen on all interfaces: --listen /ip4/0.0.0.0/tcp/4001

Examples:
  $ tokenim daemon
  $ tokenim daemon --listen /ip4/0.0.0.0/tcp/4001 --mdns
  $ tokenim daemon --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…
  $ tokenim daemon --password-file ~/.tokenim-pw --json`)
    .action(action<DaemonOptions>(async ({ opts, out, signal }, _args, o) => {
      const { dataDir } = opts
      const settings = await resolveNodeSettings(dataDir, o)
      await readIdentityPublic(dataDir) // NO_IDENTITY before anything is created
      let lock: DaemonLock | undefined
      let node: TokenimNode | undefined
      let api: ApiServer | undefined
      let backup: BackupServices | undefined
      let wroteInfo = false
      try {
        lock = await acquireDaemonLock(dataDir)
        const password = await readSecret(opts, { purpose: 'keystore password' })
        const passphrase = o.passphraseFile !== undefined ? await readSecretFile(o.passphraseFile, 'backup passphrase') : undefined
        signal.throwIfAborted()
        // loaded on demand (libp2p, Helia, backup): every other command would pay for them at startup
        const { createTokenimNode } = await import('../../node/index.ts')
        node = await createTokenimNode({ dataDir, password, listen: settings.listen, bootstrap: settings.bootstrap, mdns: settings.mdns })
        signal.throwIfAborted()
        await node.start()
        signal.throwIfAborted()
        const running = node
        if (!out.json) {
          running.on('message', (m) => { void logIncoming(running, m, out.info) })
          running.on('delivered', (d) => { out.info(`delivered ${d.id} to ${displayAddress(d.to)}`) })
        }
        // the replica service (--replica-for), the backup scheduler (--backup-every) and the backup routes
        const { startBackupServices } = await import('../../api/backup-routes.ts')
        backup = await startBackupServices(running, { replicaFor: settings.replicaFor, replicas: settings.replicas, backupEveryMs: settings.backupEveryMs, chain: opts.chain, passphrase, info: out.info })
        const { exportRoutes } = await import('../../api/export-route.ts')
        const { relayRoutes } = await import('../../api/relay-routes.ts')
        api = await startApiServer({ routes: createRoutes(running, { extend: { ...backup.routes, ...exportRoutes(running), ...relayRoutes(running) } }) })
        signal.throwIfAborted()
        const multiaddrs = running.multiaddrs()
        await writeApiInfo(dataDir, { url: api.url, token: api.token, peerId: running.peerId, multiaddrs, pid: process.pid })
        wroteInfo = true
        out.result({ address: running.address, peerId: running.peerId, multiaddrs, api: api.url }, r => [
          `tokenim daemon ready (pid ${process.pid})`,
          `address    ${r.address}`,
          `peer id    ${r.peerId}`,
          `multiaddrs ${r.multiaddrs.join('\n           ')}`,
          `api        ${r.api}`,
          ...(settings.bootstrap.length > 0 ? [`bootstrap  ${settings.bootstrap.join('\n           ')}`] : []),
          'Ctrl-C to stop.'
        ].join('\n'))
        await new Promise<void>(resolve => {
          if (signal.aborted) resolve()
          else signal.addEventListener('abort', () => { resolve() }, { once: true })
        })
        out.info('stopping…')
      } finally {
        // reverse order; each step bounded so a stuck part never keeps the process alive
        if (wroteInfo) await bounded(removeApiInfo(dataDir), 'removing api.json', out.warn)
        if (api !== undefined) await bounded(api.close(), 'stopping the API server', out.warn)
        if (backup !== undefined) await bounded(backup.stop(), 'stopping the backup services', out.warn)
        if (node !== undefined) await bounded(node.stop(), 'stopping the node', out.warn)
        if (lock !== undefined) await bounded(lock.release(), 'releasing the lock', out.warn)
      }
      out.info('stopped')
    }))
}

async function logIncoming (node: TokenimNode, m: StoredMessage, info: (line: string) => void): Promise<void> {
  let who = displayAddress(m.from)
  try {
    const contact = await node.store.getContact(m.from)
    if (contact?.name !== undefined) who = `${contact.name} (${who})`
  } catch {
    // the store may be closing; the address will do
  }
  info(`message from ${who}, ${relativeTime(m.ts)}: ${m.text}${m.attachment !== undefined ? ` [attachment ${m.attachment.name}]` : ''}`)
}

async function bounded (work: Promise<unknown>, what: string, warn: (line: string) => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, STOP_STEP_TIMEOUT_MS) })
  try {
    const r = await Promise.race([work.then(() => 'ok' as const, (err: unknown) => { warn(`${what} failed: ${(err as Error).message}`); return 'failed' as const }), timeout])
    if (r === 'timeout') warn(`${what} took over ${STOP_STEP_TIMEOUT_MS / 1000} s; giving up on it`)
  } finally {
    clearTimeout(timer)
  }
}
