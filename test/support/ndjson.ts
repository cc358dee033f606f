import type { ApiServer } from '../../src/api/index.ts'

/**
 * POST to a control API server with its token, asking for the streamed form (application/x-ndjson)
 * unless `plain`; every line of the answer parsed (as `L`).
 */
export async function postLines<L> (server: ApiServer, path: string, body: unknown, plain = false): Promise<{ status: number, type: string, lines: L[] }> {
  const res = await fetch(server.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, ...(plain ? {} : { accept: 'application/x-ndjson' }) },
    body: JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, type: res.headers.get('content-type') ?? '', lines: text.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as L) }
}
