/**
 * Whether a process with this pid runs (signal 0: nothing is sent). EPERM means it runs under another
 * user. Used by the pid lock files (daemon.lock, backup.lock) and api.json to tell a live owner from a
 * crashed one.
 */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
