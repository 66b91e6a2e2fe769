/**
 * A tab's leave grace over real libp2p (TCP, noise, yamux), with in-process peers: two durable peers (with a
 * data directory) and a volatile one (none: a tab's kind of member). The volatile peer leaves; it is down at
 * once, so writes go around it, but it keeps its ring tokens: when it comes back with the same identity (a
 * reload) no peer has rebuilt its ring. Left alone past the grace, it leaves the ring. A durable peer that
 * leaves is out of the ring at once.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, describe, expect, it } from 'vitest'
import { type Peer, createPeer } from '../../src/node.js'
import { waitUntil } from '../helpers/peers.js'

const GRACE_MS = 4000
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-leave-grace-'))
const peers: Peer[] = []
afterAll(async () => {
  await Promise.all(peers.map(async p => { await p.stop().catch(() => {}) }))
  fs.rmSync(root, { recursive: true, force: true })
})

const swim = { probeIntervalMs: 300, probeTimeoutMs: 150, gossipIntervalMs: 60 }
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }

async function start (options: Parameters<typeof createPeer>[0]): Promise<Peer> {
  const peer = await createPeer({ swim, log: silent, kv: { leaveGraceMs: GRACE_MS }, ...options })
  peers.push(peer)
  return peer
}

const stateIn = (peer: Peer, id: string): string | undefined => peer.members().find(m => m.id === id)?.state
const tcpOf = (peer: Peer): string => peer.addresses().find(a => a.includes('/tcp/') && !a.includes('/ws'))!

describe('leave grace', () => {
  it('keeps a volatile member that left in the ring for the grace, and a reload changes no ring', async () => {
    const a = await start({ dataDir: path.join(root, 'a') })
    const b = await start({ dataDir: path.join(root, 'b') })
    await b.join([tcpOf(a)])
    const key = await generateKeyPair('Ed25519')
    const tab = await start({ privateKey: key, location: 'browser-1', incarnation: 1 })
    await tab.join([tcpOf(a)])
    const everyone = [a, b, tab]
    await waitUntil(async () => everyone.every(p => everyone.every(q => stateIn(p, q.id) === 'alive')), 30_000, 'all three alive everywhere')
    expect(a.ring().member(tab.id)?.durable).toBe(false)
    const ringsBefore = [a.ring(), b.ring()]

    // The tab leaves: down at once (writes go around it), its tokens kept. It holds nothing for others, so it
    // sends nothing away: its own ranges stay with it.
    for (let i = 0; i < 20; i++) await a.put(`before-${i}`, 'v', { w: 3 })
    expect(await tab.leave()).toEqual({ delivered: 0, failed: 0 })
    await waitUntil(async () => stateIn(a, tab.id) === 'left' && stateIn(b, tab.id) === 'left', 30_000, 'the leave reached both durable peers')
    expect(a.ring()).toBe(ringsBefore[0])
    expect(b.ring()).toBe(ringsBefore[1])
    for (let i = 0; i < 20; i++) expect((await a.put(`while-away-${i}`, 'v', { w: 2 })).acks).toBeGreaterThanOrEqual(2)

    // It comes back as itself (a reload): same ring objects, so nothing was rebuilt or moved.
    const back = await start({ privateKey: key, location: 'browser-1', incarnation: 2 })
    await back.join([tcpOf(a)])
    await waitUntil(async () => stateIn(a, back.id) === 'alive' && stateIn(b, back.id) === 'alive', 30_000, 'the tab is alive again')
    expect(a.ring()).toBe(ringsBefore[0])
    expect(b.ring()).toBe(ringsBefore[1])
    // What it missed comes back to it (the fallbacks' hints, then anti-entropy).
    await waitUntil(async () => (await Promise.all(Array.from({ length: 20 }, async (_, i) => (await a.get(`while-away-${i}`, { r: 2 })).values.length === 1))).every(Boolean), 30_000, 'the writes made while it was away read back with R=2')

    // It leaves for good: out of the ring once the grace is over, not before the leave was seen.
    const leftAt = Date.now()
    await back.leave()
    await waitUntil(async () => stateIn(a, back.id) === 'left', 30_000, 'the second leave reached a')
    await waitUntil(async () => a.ring().member(back.id) === undefined && b.ring().member(back.id) === undefined, 30_000, 'the tab is out of the ring after the grace')
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(GRACE_MS - 1000)
  }, 120_000)

  it('takes a durable member that left out of the ring at once', async () => {
    const a = await start({ dataDir: path.join(root, 'd-a') })
    const b = await start({ dataDir: path.join(root, 'd-b') })
    const c = await start({ dataDir: path.join(root, 'd-c') })
    await b.join([tcpOf(a)])
    await c.join([tcpOf(a)])
    await waitUntil(async () => [a, b, c].every(p => [a, b, c].every(q => stateIn(p, q.id) === 'alive')), 30_000, 'all three alive everywhere')
    await c.leave()
    await waitUntil(async () => stateIn(a, c.id) === 'left', 30_000, 'the leave reached a')
    // Its ring changed with the leave (rebuilt in the same turn), not a grace later.
    expect(a.ring().member(c.id)).toBeUndefined()
  }, 120_000)
})
