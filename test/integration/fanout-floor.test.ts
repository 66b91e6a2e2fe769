/**
 * The HTTP benchmark's fan-out floor (`PUT`/`GET /debug/floor/<key>`, --debug-api), with real processes: a
 * request goes over the KV RPC layer to the key's other primaries and is answered with their reply, nothing
 * is stored, and bad requests get their 4xx; alone, a peer has no replica to send to and answers 503.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const group = peerGroup('meshkv-floor-', ['--debug-api'])
afterAll(group.stopAll)

async function call (p: PeerProcess, method: string, path: string, body?: Uint8Array<ArrayBuffer> | string): Promise<{ status: number; body: Uint8Array; json: { code?: string } | null }> {
  const res = await fetch(`${p.http}${path}`, { method, ...(body === undefined ? {} : { body }), signal: AbortSignal.timeout(20_000) })
  const bytes = new Uint8Array(await res.arrayBuffer())
  const json = (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(new TextDecoder().decode(bytes)) as { code?: string } : null
  return { status: res.status, body: bytes, json }
}

async function rpcRequests (p: PeerProcess): Promise<number> {
  const res = await fetch(`${p.http}/stats`, { signal: AbortSignal.timeout(10_000) })
  return (await res.json() as { rpc: { requests: number } }).rpc.requests
}

describe('the fan-out floor (real processes)', () => {
  it('sends each request to the other primaries and stores nothing; refuses bad requests', async () => {
    const a = await group.start('fa', ['--bootstrap'])
    // Alone: no other primary to send to.
    const lone = await call(a, 'PUT', '/debug/floor/k1', 'x'.repeat(100))
    expect(lone.status).toBe(503)
    expect(lone.json?.code).toBe('ERR_UNREACHABLE')

    const b = await group.start('fb', ['--join', a.tcp])
    await waitUntil(async () => {
      for (const p of [a, b]) if ((await members(p)).filter(m => m.state === 'alive').length < 2) return false
      return true
    }, 60_000, 'two peers listing each other alive')

    const before = await rpcRequests(a)
    const value = new Uint8Array(100).fill(0x61)
    for (let i = 0; i < 10; i++) expect((await call(a, 'PUT', `/debug/floor/k${i}`, value)).status).toBe(204)
    const got = await call(a, 'GET', '/debug/floor/k1')
    expect(got.status).toBe(200)
    expect(got.body.length).toBe(100)
    // Eleven requests over the RPC layer (the ring may also send a few of its own meanwhile).
    expect(await rpcRequests(a) - before).toBeGreaterThanOrEqual(11)
    // Nothing stored: the floor's keys are not in the store.
    expect((await call(b, 'GET', '/kv/k1?r=2')).status).toBe(404)

    expect((await call(a, 'DELETE', '/debug/floor/k1')).status).toBe(405)
    expect((await call(a, 'PUT', '/debug/floor/k1', '')).json?.code).toBe('ERR_DECODE')
    const large = await call(a, 'PUT', '/debug/floor/k1', new Uint8Array(600))
    expect(large.status).toBe(413)
    const badKey = await call(a, 'GET', '/debug/floor/%zz')
    expect(badKey.status).toBe(400)
    expect(badKey.json?.code).toBe('ERR_DECODE')
    expect((await call(a, 'GET', `/debug/floor/${'k'.repeat(600)}`)).json?.code).toBe('ERR_INVALID_KEY')
    // Still answering afterwards.
    expect((await call(b, 'PUT', '/debug/floor/k2', value)).status).toBe(204)
  }, 120_000)
})
