/**
 * Deferred requests over real libp2p (TCP, noise, yamux) between two in-process nodes (RpcInit.deferMs, which
 * KvService uses for heartbeat refreshes): requests sent in separate turns share one frame while they wait,
 * the next frame to that peer takes them along whatever sends it, and a frame's worth of them goes at once.
 * The deferrals here are far longer than any test waits (a minute), so a deferred request that resolves was
 * carried by another frame or by the size bound, never by its timer; the frame counts are exact.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import '../../src/polyfills.js'
import type { KvReply, KvRequest } from '../../src/core/kv/messages.js'
import { createMeshLibp2p, type MeshLibp2p } from '../../src/services/mesh-node.js'
import { FRAME_TARGET_BYTES, RpcEndpoint } from '../../src/services/rpc.js'

const PROTOCOL = '/meshkv/test-coalesce/1.0.0'
const LONG_MS = 60_000
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
const OK: KvReply = { type: 'ok', acked: 1, required: 1 } as KvReply
const refresh = (i: number): KvRequest => ({ type: 'refresh', key: `heartbeat/svc-${i}`, digest: [i, 0], ts: { wall: 1_700_000_000_000 + i, logical: 0 }, ttlMs: 3000 })
const nextTurn = async (): Promise<void> => { await new Promise(resolve => { setImmediate(resolve) }) }

let a: MeshLibp2p
let b: MeshLibp2p
let server: RpcEndpoint

function endpoint (node: MeshLibp2p, deferMs?: (request: KvRequest) => number): RpcEndpoint {
  return new RpcEndpoint(node, {
    protocol: PROTOCOL,
    limits: { keyBytesMax: 1024, valueBytesMax: 1 << 20 },
    messageBytesMax: 1 << 21,
    requestTimeoutMs: 2 * LONG_MS,
    inFlightMax: 4096,
    handler: async () => OK,
    ...(deferMs === undefined ? {} : { deferMs }),
    log: silent
  })
}

/** A client of b on a's node, with its own outbound stream (a fresh frame count); it needs no handler of its own. */
async function client (deferMs?: (request: KvRequest) => number): Promise<RpcEndpoint> {
  const c = endpoint(a, deferMs)
  // Open the link (and let it settle) before counting frames.
  await c.request(b.peerId.toString(), { type: 'read', key: 'warm-up' })
  return c
}

beforeAll(async () => {
  [a, b] = await Promise.all([0, 1].map(async () => await createMeshLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], extraTransports: [tcp()] }))) as [MeshLibp2p, MeshLibp2p]
  server = endpoint(b)
  await server.start()
  await a.dial(b.getMultiaddrs()[0]!)
}, 60_000)

afterAll(async () => {
  await server.stop()
  await Promise.all([a, b].map(async n => { await n.stop() }))
})

describe('rpc deferred requests', () => {
  it('sends a request that is not deferred in a frame of its own turn', async () => {
    const c = await client()
    const before = c.stats.frames
    for (let i = 0; i < 5; i++) expect((await c.request(b.peerId.toString(), refresh(i))).type).toBe('ok')
    expect(c.stats.frames - before).toBe(5)
    await c.stop()
  }, 60_000)

  it('sends deferred requests of separate turns with the next frame, whatever sends it', async () => {
    const c = await client(r => r.type === 'refresh' ? LONG_MS : 0)
    const before = c.stats.frames
    const replies: Array<Promise<KvReply>> = []
    for (let i = 0; i < 5; i++) {
      replies.push(c.request(b.peerId.toString(), refresh(i)))
      await nextTurn()
    }
    // Nothing has gone out: the refreshes wait for company.
    expect(c.stats.frames - before).toBe(0)
    // A read is not deferred: its frame carries the five refreshes along.
    const read = await c.request(b.peerId.toString(), { type: 'read', key: 'k' })
    expect(read.type).toBe('ok')
    expect((await Promise.all(replies)).map(r => r.type)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok'])
    expect(c.stats.frames - before).toBe(1)
    await c.stop()
  }, 60_000)

  it('sends deferred requests after their deferral when nothing else goes', async () => {
    const c = await client(r => r.type === 'refresh' ? 50 : 0)
    const before = c.stats.frames
    const replies: Array<Promise<KvReply>> = []
    for (let i = 0; i < 3; i++) replies.push(c.request(b.peerId.toString(), refresh(i)))
    expect((await Promise.all(replies)).map(r => r.type)).toEqual(['ok', 'ok', 'ok'])
    expect(c.stats.frames - before).toBe(1)
    await c.stop()
  }, 60_000)

  it('does not hold more than a frame\'s worth: a full frame goes at once', async () => {
    const c = await client(r => r.type === 'refresh' ? LONG_MS : 0)
    const key = (i: number): string => `heartbeat/${String(i).padStart(6, '0')}-${'x'.repeat(1000)}`
    const count = Math.ceil(FRAME_TARGET_BYTES / 1000) + 10
    const replies: Array<Promise<KvReply>> = []
    for (let i = 0; i < count; i++) replies.push(c.request(b.peerId.toString(), { ...refresh(i), key: key(i) } as KvRequest))
    // All of them resolve long before the deferral: once a frame's worth was queued it went, and the rest
    // (queued while it was being written) went with the frames after it.
    expect((await Promise.all(replies)).length).toBe(count)
    expect(c.stats.frames).toBeGreaterThan(2)
    await c.stop()
  }, 60_000)
})
