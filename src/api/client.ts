import { TokenimError } from '../errors.ts'

export interface ApiEndpoint {
  url: string
  token: string
}

/**
 * Call the daemon's control API. Errors come back as the TokenimError the daemon raised (same code
 * and message), so a command behaves the same whether it ran in the daemon or in process.
 */
export async function callApi<T> (endpoint: ApiEndpoint, method: 'GET' | 'POST', path: string, body?: unknown, { signal }: { signal?: AbortSignal } = {}): Promise<T> {
  let res: Response
  try {
    res = await fetch(endpoint.url + path, {
      method,
      headers: { authorization: `Bearer ${endpoint.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal
    })
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    throw new TokenimError('DAEMON_UNREACHABLE', `the daemon at ${endpoint.url} does not answer; is it still running?`, { url: endpoint.url }, { cause: err })
  }
  const payload = await res.json().catch(() => undefined) as { result?: T, error?: { code: string, message: string, info?: Record<string, unknown> } } | undefined
  if (payload?.error !== undefined) throw new TokenimError(payload.error.code, payload.error.message, payload.error.info ?? {})
  if (!res.ok || payload === undefined) throw new TokenimError('DAEMON_ERROR', `the daemon answered HTTP ${res.status}`)
  return payload.result as T
}
