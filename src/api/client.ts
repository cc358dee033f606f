import { TokenimError } from '../errors.ts'
import { NDJSON } from './server.ts'

export interface ApiEndpoint {
  url: string
  token: string
}

export interface CallApiOptions<P> {
  signal?: AbortSignal
  /**
   * Ask for the streamed form (`Accept: application/x-ndjson`, see server.ts) and get each progress
   * report the daemon streams. A route without progress, or a daemon without the streamed form,
   * answers plain JSON: the result is the same, with no reports. A callback that throws is ignored.
   */
  onProgress?: (p: P) => void
}

type Answer<T> = { result?: T, error?: { code: string, message: string, info?: Record<string, unknown> } }

/**
 * Call the daemon's control API. Errors come back as the TokenimError the daemon raised (same code
 * and message), so a command behaves the same whether it ran in the daemon or in process.
 */
export async function callApi<T, P = unknown> (endpoint: ApiEndpoint, method: 'GET' | 'POST', path: string, body?: unknown, { signal, onProgress }: CallApiOptions<P> = {}): Promise<T> {
  let res: Response
  try {
    res = await fetch(endpoint.url + path, {
      method,
      headers: {
        authorization: `Bearer ${endpoint.token}`,
        'content-type': 'application/json',
        ...(onProgress !== undefined ? { accept: `${NDJSON}, application/json` } : {})
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal
    })
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    throw new TokenimError('DAEMON_UNREACHABLE', `the daemon at ${endpoint.url} does not answer; is it still running?`, { url: endpoint.url }, { cause: err })
  }
  const streamed = (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase() === NDJSON
  const payload = streamed && res.ok
    ? await readStream<T, P>(endpoint, res, onProgress, signal)
    : await res.json().catch(() => undefined) as Answer<T> | undefined
  if (payload?.error !== undefined) throw new TokenimError(payload.error.code, payload.error.message, payload.error.info ?? {})
  if (!res.ok || payload === undefined) throw new TokenimError('DAEMON_ERROR', `the daemon answered HTTP ${res.status}`)
  return payload.result as T
}

/**
 * Read a streamed answer line by line: progress reports go to `onProgress`, keep-alives and unknown
 * lines are skipped, and the final `{result}` or `{error}` line is the answer. A stream that ends
 * without one is DAEMON_ERROR; a connection lost on the way is DAEMON_UNREACHABLE.
 */
async function readStream<T, P> (endpoint: ApiEndpoint, res: Response, onProgress: ((p: P) => void) | undefined, signal: AbortSignal | undefined): Promise<Answer<T>> {
  let final: Answer<T> | undefined
  const line = (text: string): void => {
    if (text.trim() === '' || final !== undefined) return
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      throw new TokenimError('DAEMON_ERROR', 'the daemon sent a line that is not JSON')
    }
    if (value === null || typeof value !== 'object') return
    const v = value as Answer<T> & { progress?: P }
    if ('error' in v || 'result' in v) {
      final = v
    } else if ('progress' in v && onProgress !== undefined) {
      try {
        onProgress(v.progress as P)
      } catch {
        // showing progress never fails the operation
      }
    }
  }
  const decoder = new TextDecoder()
  let buffered = ''
  try {
    for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true })
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        line(buffered.slice(0, nl))
        buffered = buffered.slice(nl + 1)
      }
    }
    line(buffered + decoder.decode())
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    if (err instanceof TokenimError) throw err
    throw new TokenimError('DAEMON_UNREACHABLE', `the daemon at ${endpoint.url} stopped answering before the result; is it still running?`, { url: endpoint.url }, { cause: err })
  }
  if (final === undefined) throw new TokenimError('DAEMON_ERROR', 'the daemon\'s answer ended before its result')
  return final
}
