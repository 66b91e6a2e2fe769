/**
 * Request deadlines over real libp2p (TCP, noise, yamux) between two in-process nodes: an unanswered request
 * fails with TimeoutError, an answered one resolves, and the deadline check runs only while a request waits
 * (an idle peer, a tab above all, wakes for nothing), starting again with the next request.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { afterAll, describe, expect, it } from 'vitest'
import '../../src/polyfills.js'
import { TimeoutError } from '../../src/core/errors.js'
import type { KvReply, KvRequest } from '../../src/core/kv/messages.js'
import { createMeshLibp2p, type MeshLibp2p } from '../../src/services/mesh-node.js'
import { RpcEndpoint } from '../../src/services/rpc.js'
import { waitUntil } from '../helpers/peers.js'

const PROTOCOL = '/meshkv/test-deadlines/1.0.0'
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
const nodes: MeshLibp2p[] = []
afterAll(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

function endpoint (node: MeshLibp2p, handler: (from: string, request: KvRequest) => Promise<KvReply>): RpcEndpoint {
  return new RpcEndpoint(node, { protocol: PROTOCOL, limits: { keyBytesMax: 1024, valueBytesMax: 1 << 20 }, messageBytesMax: 1 << 21, requestTimeoutMs: 400, inFlightMax: 64, handler, log: silent })
}

describe('rpc request deadlines', () => {
  it('times out unanswered requests, and checks deadlines only while a request waits', async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => await createMeshLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], extraTransports: [tcp()] })))
    nodes.push(a!, b!)
    // b answers reads of 'fast' at once and never answers anything else.
    const server = endpoint(b!, async (_from, request) => request.type === 'read' && request.key === 'fast'
      ? { type: 'error', code: 'ERR_NOT_FOUND', message: 'none', acked: 0, required: 0 } as KvReply
      : await new Promise<KvReply>(() => {}))
    const client = endpoint(a!, async () => await new Promise<KvReply>(() => {}))
    await server.start()
    await client.start()
    await a!.dial(b!.getMultiaddrs()[0]!)
    expect(client.checkingDeadlines).toBe(false)

    const answered = await client.request(b!.peerId.toString(), { type: 'read', key: 'fast' })
    expect(answered.type).toBe('error')
    // Nothing waits any more: the check stops by itself within a check period or two.
    await waitUntil(async () => !client.checkingDeadlines, 10_000, 'deadline check stopped after the reply')

    for (let round = 0; round < 2; round++) {
      const started = Date.now()
      const pending = client.request(b!.peerId.toString(), { type: 'read', key: `slow-${round}` })
      const outcome = pending.then(() => null, (error: unknown) => error)
      await waitUntil(async () => client.checkingDeadlines, 10_000, 'deadline check started by the request')
      expect(await outcome).toBeInstanceOf(TimeoutError)
      // At most one check period (0.5 s) after the 400 ms limit, with room for a loaded machine.
      expect(Date.now() - started).toBeGreaterThanOrEqual(400)
      await waitUntil(async () => !client.checkingDeadlines, 10_000, 'deadline check stopped after the timeout')
    }
    expect(client.stats.timeouts).toBe(2)
    await client.stop()
    await server.stop()
  }, 60_000)
})
