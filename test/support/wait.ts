/** Poll `check` until it returns a truthy value or the deadline passes (tests never sleep a fixed time). */
export async function waitFor<T> (check: () => T | Promise<T>, what: string, timeoutMs = 30_000, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value != null && value !== false) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}
