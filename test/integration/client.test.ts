/**
 * meshkv/client against a real peer (siblings, contexts, typed errors for real error replies), and its
 * retry policy with a scripted fetch (which replies, how often, how long it waits, when it stops).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, HttpResponseError, InvalidContextError, InvalidCursorError, InvalidKeyError, MeshkvClient, QuorumError, TimeoutError, UnreachableError, ValueTooLargeError, AbortError } from '../../src/client.js'
import { type PeerProcess, peerGroup } from '../helpers/peers.js'

const group = peerGroup('meshkv-client-', ['--n', '2', '--r', '1', '--w', '1'])
let peer: PeerProcess
beforeAll(async () => { peer = await group.start('one', ['--bootstrap']) }, 60_000)
afterAll(async () => { await group.stopAll() })

const text = (v: Uint8Array | undefined): string => new TextDecoder().decode(v)

describe('meshkv/client against a peer', () => {
  it('writes, reads siblings, resolves them with the context, and deletes', async () => {
    const client = new MeshkvClient({ url: peer.http })
    await client.put('c:1', 'one')
    await client.put('c:1', new TextEncoder().encode('two'))
    const both = await client.get('c:1')
    expect(both.values.map(text).sort()).toEqual(['one', 'two'])
    expect(both.siblings.map(s => s.replica)).toEqual([peer.id, peer.id])
    const { context, acks } = await client.put('c:1', 'resolved', { context: both.context })
    expect(acks).toBe(1)
    expect(await client.getText('c:1')).toBe('resolved')
    expect(await client.list({ prefix: 'c:' })).toMatchObject({ keys: ['c:1'], cursor: null, membersFailed: [] })
    await expect(client.list({ prefix: 'c:', cursor: '%%%' })).rejects.toBeInstanceOf(InvalidCursorError)
    await client.delete('c:1', { context })
    expect(await client.get('c:1')).toMatchObject({ values: [], deleted: true })
    expect(await client.getText('c:never')).toBeNull()
    // Keys that are dot segments cannot be a URL path segment (URL parsing resolves them away, %2E too):
    // refused, rather than sent to another path.
    for (const key of ['.', '..']) await expect(client.put(key, 'x')).rejects.toThrow(/cannot be addressed over HTTP/)
    expect((await client.get('c:never')).deleted).toBe(false)
    // A missing key named like a route's last segment is still a missing key, not an error reply.
    expect(await client.get('placement')).toMatchObject({ values: [], deleted: false })
    expect(await client.getText('placement')).toBeNull()
  })

  it('refuses bad input locally with the typed error, without sending it', async () => {
    const client = new MeshkvClient({ url: peer.http, retries: 3 })
    // A lone surrogate has no UTF-8 form, so no URL.
    await expect(client.get('\uD800')).rejects.toBeInstanceOf(InvalidKeyError)
    // A context is base64url: anything else (a header fetch would refuse) is not a network failure to retry.
    for (const context of ['a\nb', 'a b', 'ab==']) await expect(client.put('c:ctx', 'x', { context })).rejects.toBeInstanceOf(InvalidContextError)
    expect(await client.getText('c:ctx')).toBeNull()
  })

  it('throws the library\'s typed errors for error replies, with the server\'s message', async () => {
    const client = new MeshkvClient({ url: peer.http, retries: 0 })
    const big = new Uint8Array(2 * 1024 * 1024)
    await expect(client.put('c:big', big)).rejects.toBeInstanceOf(ValueTooLargeError)
    // A 503: N=2 with one member, so a write that needs two acknowledgements gets one.
    const quorum = await client.put('c:w', 'x', { w: 2 }).catch((e: unknown) => e)
    expect(quorum, String(quorum)).toBeInstanceOf(QuorumError)
    expect(quorum).toMatchObject({ code: 'ERR_QUORUM', acked: 1, required: 2 })
    await expect(client.put('c:w', 'x', { w: 3 })).rejects.toBeInstanceOf(ConfigError)
    await expect(client.get('c:x', { r: 17 })).rejects.toBeInstanceOf(ConfigError)
    await expect(client.get('')).rejects.toBeInstanceOf(InvalidKeyError)
    // A reply with no library class for it: status and code kept.
    const notFound = await new MeshkvClient({ url: `${peer.http}/nowhere` }).members().catch((e: unknown) => e)
    expect(notFound).toBeInstanceOf(HttpResponseError)
    expect(notFound).toMatchObject({ status: 404, code: 'ERR_NOT_FOUND', message: 'not found' })
    expect(() => new MeshkvClient({ url: 'ftp://x' })).toThrow(ConfigError)
    expect(() => new MeshkvClient({ retries: 11 })).toThrow(ConfigError)
  })
})

/** A fetch that answers from a script and records when it was called. */
function scripted (replies: Array<() => Response>): { fetch: typeof fetch; calls: number[] } {
  const calls: number[] = []
  return {
    calls,
    fetch: async (_url, init) => {
      calls.push(performance.now())
      const next = replies.shift()
      if (next === undefined) throw new Error('script exhausted')
      if (init?.signal?.aborted === true) throw init.signal.reason
      return next()
    }
  }
}
const unavailable = (headers: Record<string, string> = {}): Response => new Response(JSON.stringify({ error: 'overloaded', code: 'ERR_OVERLOADED' }), { status: 503, headers })

describe('meshkv/client retries', () => {
  it('retries a 503 with backoff and succeeds', async () => {
    const s = scripted([() => unavailable(), () => unavailable(), () => new Response(null, { status: 204, headers: { 'x-meshkv-acks': '2', 'x-meshkv-context': 'abc' } })])
    const result = await new MeshkvClient({ fetch: s.fetch }).put('k', 'v')
    expect(result).toEqual({ key: 'k', context: 'abc', acks: 2 })
    expect(s.calls.length).toBe(3)
  })

  it('honours Retry-After and gives up after `retries` with the typed error', async () => {
    const s = scripted([() => unavailable({ 'retry-after': '0.2' }), () => unavailable({ 'retry-after': '0.2' })])
    const error = await new MeshkvClient({ fetch: s.fetch, retries: 1 }).get('k').catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_OVERLOADED', message: 'overloaded' })
    expect(s.calls.length).toBe(2)
    expect(s.calls[1]! - s.calls[0]!).toBeGreaterThanOrEqual(150)
  })

  it('never retries a put that may have been stored (a quorum error, a timeout), and does retry a read', async () => {
    const quorum = (): Response => new Response(JSON.stringify({ error: 'reached 1 of 2', code: 'ERR_QUORUM', acked: 1, required: 2 }), { status: 503 })
    const s = scripted([quorum, quorum])
    await expect(new MeshkvClient({ fetch: s.fetch }).put('k', 'v')).rejects.toBeInstanceOf(QuorumError)
    expect(s.calls.length).toBe(1)
    const r = scripted([quorum, () => new Response('v', { status: 200 })])
    expect(await new MeshkvClient({ fetch: r.fetch }).getText('k')).toBe('v')
    expect(r.calls.length).toBe(2)
    const hang: typeof fetch = async (_url, init) => await new Promise((_resolve, reject) => { init?.signal?.addEventListener('abort', () => { reject(init.signal!.reason) }) })
    let calls = 0
    const counting: typeof fetch = async (url, init) => { calls++; return await hang(url, init) }
    await expect(new MeshkvClient({ fetch: counting, timeoutMs: 50 }).put('k', 'v')).rejects.toBeInstanceOf(TimeoutError)
    expect(calls).toBe(1)
  })

  it('never retries other errors', async () => {
    const s = scripted([() => new Response(JSON.stringify({ error: 'bad key', code: 'ERR_INVALID_KEY' }), { status: 400 })])
    await expect(new MeshkvClient({ fetch: s.fetch }).get('k')).rejects.toBeInstanceOf(InvalidKeyError)
    expect(s.calls.length).toBe(1)
  })

  it('reports an unreachable peer after its retries, and stops waiting when aborted', async () => {
    const refused = (): Response => { throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') }) }
    const s = scripted([refused, refused])
    const error = await new MeshkvClient({ fetch: s.fetch, retries: 1 }).get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnreachableError)
    expect(String((error as Error).message)).toMatch(/ECONNREFUSED/)
    const slow = scripted([() => unavailable({ 'retry-after': '10' }), () => unavailable()])
    const controller = new AbortController()
    const pending = new MeshkvClient({ fetch: slow.fetch }).get('k', { signal: controller.signal }).catch((e: unknown) => e)
    setTimeout(() => { controller.abort() }, 50)
    expect(await pending).toBeInstanceOf(AbortError)
    expect(slow.calls.length).toBe(1)
  })

  it('times an attempt out', async () => {
    const hang: typeof fetch = async (_url, init) => await new Promise((_resolve, reject) => { init?.signal?.addEventListener('abort', () => { reject(init.signal!.reason) }) })
    await expect(new MeshkvClient({ fetch: hang, retries: 0, timeoutMs: 100 }).get('k')).rejects.toBeInstanceOf(TimeoutError)
  })
})
