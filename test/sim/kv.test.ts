import { describe, expect, it } from 'vitest'
import { ConfigError, InvalidContextError, InvalidKeyError, QuorumError, ValueTooLargeError } from '../../src/core/errors.js'
import { DETECTOR_STRETCH, HEALTH_RECOVERY_MS, MASS_EXPIRY_MIN, MASS_EXPIRY_SHARE } from '../../src/core/replication/health.js'
import { EXPIRY_CHECKS_MAX } from '../../src/core/replication/replication.js'
import { Ring } from '../../src/core/ring/ring.js'
import { encodeContext } from '../../src/core/version/context.js'
import { stateEquals } from '../../src/core/version/dvv.js'
import type { VersionVector } from '../../src/core/version/vv.js'
import { type PeerInfo, peerInfo } from '../../src/services/peer-info.js'
import { KvSim, degrade, replicasOf } from './kv-cluster.js'
import type { FaultNode } from './kv-faults.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `peer-${i}`)

/** A node that is not among the key's primaries, to check forwarding. */
function outsider (sim: KvSim, key: string): string {
  return [...sim.nodes.keys()].find(id => !sim.primaries(key).includes(id))!
}

/** Runs background rounds until `done` holds; fails after `max` rounds (the bound the test states). */
async function converge (sim: KvSim, done: () => boolean, max: number): Promise<number> {
  for (let round = 1; round <= max; round++) {
    await sim.backgroundRound()
    if (done()) return round
  }
  throw new Error(`not converged after ${max} rounds`)
}

/** Every key is held, with identical states, by all of its primaries. */
function replicated (sim: KvSim, keys: string[]): boolean {
  return keys.every(key => {
    const holders = sim.holders(key)
    const states = sim.primaries(key).map(id => holders.get(id))
    return states.every(s => s !== undefined && stateEquals(s, states[0]!))
  })
}

describe('kv: quorum reads and writes (simulated network, wire codec)', () => {
  it('puts and gets through any peer; the write is on all N primaries', async () => {
    const sim = await KvSim.create(ids(5))
    const key = 'user:1'
    const via = outsider(sim, key)
    const put = await sim.node(via).kv.put(key, enc('alice'))
    expect(put.acks).toBeGreaterThanOrEqual(2)
    for (const node of sim.nodes.values()) {
      const got = await node.kv.get(key)
      expect(got.values.map(dec)).toEqual(['alice'])
    }
    await converge(sim, () => replicated(sim, [key]), 2)
    expect([...sim.holders(key).keys()].sort()).toEqual([...sim.primaries(key)].sort())
    expect(sim.node(via).kv.stats.forwarded).toBeGreaterThan(0)
  })

  it("a put's result carries its context like a plain value (encoded when first read): spreads, JSON and a later get agree", async () => {
    const sim = await KvSim.create(ids(4))
    const key = 'ctx'
    const [a] = sim.primaries(key)
    const via = outsider(sim, key)
    for (const node of [a!, via]) { // coordinated here, and forwarded to a primary
      const put = await sim.node(node).kv.put(key, enc(node), { w: 3 })
      const got = await sim.node(node).kv.get(key, { r: 3 })
      expect(put.context).toBe(got.context)
      expect(Object.keys(put)).toEqual(['key', 'context', 'acks'])
      expect({ ...put }).toEqual({ key, context: got.context, acks: put.acks })
      expect(JSON.parse(JSON.stringify(put))).toEqual({ key, context: got.context, acks: put.acks })
      expect(structuredClone(put).context).toBe(got.context)
    }
  })

  it('keeps concurrent writes as siblings; a put with the context resolves them', async () => {
    const sim = await KvSim.create(ids(4))
    const key = 'doc'
    const [a, b] = sim.primaries(key)
    await sim.node(a!).kv.put(key, enc('one'))
    // Written without the first's context: concurrent.
    await sim.node(b!).kv.put(key, enc('two'), { w: 3 })
    const got = await sim.node(a!).kv.get(key, { r: 3 })
    expect(got.values.map(dec).sort()).toEqual(['one', 'two'])
    await sim.node(b!).kv.put(key, enc('merged'), { context: got.context, w: 3 })
    expect((await sim.node(a!).kv.get(key, { r: 3 })).values.map(dec)).toEqual(['merged'])
  })

  it('deletes with a tombstone; lww keeps only the newest', async () => {
    const sim = await KvSim.create(ids(3))
    const kv = sim.node('peer-0').kv
    const first = await kv.put('k', enc('v'))
    await kv.delete('k', { context: first.context })
    const got = await kv.get('k')
    expect(got.values).toEqual([])
    expect(got.deleted).toBe(true)
    await kv.put('hb', enc('1'), { lww: true })
    sim.clock.advance(5)
    await sim.node('peer-1').kv.put('hb', enc('2'), { lww: true })
    expect((await kv.get('hb', { r: 3 })).values.map(dec)).toEqual(['2'])
  })

  it('rejects bad input with typed errors, over the wire too', async () => {
    const sim = await KvSim.create(ids(5))
    const kv = sim.node('peer-0').kv
    await expect(kv.put('', enc('x'))).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(kv.put('k'.repeat(2000), enc('x'))).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(kv.put('k', new Uint8Array(1024 * 1024 + 1))).rejects.toBeInstanceOf(ValueTooLargeError)
    await expect(kv.put('k', enc('x'), { context: '@@not-a-context' })).rejects.toBeInstanceOf(InvalidContextError)
    await expect(kv.put('k', enc('x'), { w: 4 })).rejects.toBeInstanceOf(ConfigError)
    // A forged counter far ahead of the clock would make the key's context unusable for good.
    await expect(kv.put('k', enc('x'), { context: encodeContext(['peer-0', 2 ** 47] as VersionVector) })).rejects.toBeInstanceOf(InvalidContextError)
    await expect(kv.get('k', { r: 0 })).rejects.toBeInstanceOf(ConfigError)
    const bad = await sim.node('peer-1').kv.handle('peer-0', { type: 'read', key: '' })
    expect(bad).toMatchObject({ type: 'error', code: 'ERR_INVALID_KEY' })
    expect(sim.node('peer-1').kv.stats.badRequests).toBe(1)
  })

  it('a write that cannot reach W fails with the acked count and never reports success', async () => {
    const sim = await KvSim.create(ids(3))
    sim.setUp('peer-1', false)
    sim.setUp('peer-2', false)
    const error = await sim.node('peer-0').kv.put('k', enc('v')).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QuorumError)
    expect(error).toMatchObject({ acked: 1, required: 2 })
    await expect(sim.node('peer-0').kv.get('k')).rejects.toBeInstanceOf(QuorumError)
    // One replica is enough when asked for.
    await expect(sim.node('peer-0').kv.put('k', enc('v'), { w: 1 })).resolves.toMatchObject({ acks: 1 })
  })
})

describe('kv: sloppy quorum, hinted handoff, read repair', () => {
  it('a fallback takes the write for a down primary and hands it back, then drops it', async () => {
    const sim = await KvSim.create(ids(5))
    const key = 'hinted'
    const [p0, p1, p2] = sim.primaries(key)
    sim.setUp(p2!, false)
    await sim.node(p0!).kv.put(key, enc('v'), { w: 3 })
    const holders = [...sim.holders(key).keys()]
    const fallback = holders.find(id => !sim.primaries(key).includes(id))!
    expect(fallback).toBeDefined()
    expect(sim.node(fallback).kv.stats.hintsPending).toBe(1)
    // While the primary is down the hint stays.
    await sim.node(fallback).kv.handoff()
    expect(sim.holders(key).has(fallback)).toBe(true)
    sim.setUp(p2!, true)
    const turn = await sim.node(fallback).kv.handoff()
    expect(turn.dropped).toBe(1)
    expect([...sim.holders(key).keys()].sort()).toEqual([p0!, p1!, p2!].sort())
    expect(sim.node(fallback).kv.stats.hintsPending).toBe(0)
    // Strict quorum refuses fallbacks.
    sim.setUp(p2!, false)
    sim.setUp(p1!, false)
    await expect(sim.node(p0!).kv.put(key, enc('w'), { strict: true })).rejects.toMatchObject({ acked: 1, required: 2 })
  })

  it('read repair brings a stale replica up to date', async () => {
    const sim = await KvSim.create(ids(3))
    sim.setUp('peer-2', false)
    await sim.node('peer-0').kv.put('k', enc('new'), { strict: true })
    sim.setUp('peer-2', true)
    expect(sim.node('peer-2').engine.state('k')).toBeUndefined()
    const got = await sim.node('peer-0').kv.get('k', { r: 3 })
    expect(got.values.map(dec)).toEqual(['new'])
    await sim.settle()
    expect(sim.node('peer-2').engine.get('k')?.values.map(s => dec(s.value!))).toEqual(['new'])
    expect(sim.node('peer-0').kv.stats.readRepairs).toBe(1)
  })
})

describe('kv: a read asks R replicas, the rest when needed', () => {
  /** Requests sent while `fn` runs (reads, read repairs), and its result. */
  async function requestsDuring<T> (sim: KvSim, fn: () => Promise<T>): Promise<{ reads: number; result: T }> {
    const before = sim.faults.stats.messages
    const result = await fn()
    await sim.settle()
    return { reads: sim.faults.stats.messages - before, result }
  }

  it('R=2 of 3 asks one other replica; kv.readAll asks both', async () => {
    for (const readAll of [false, true]) {
      const sim = await KvSim.create(ids(3), { readAll })
      await sim.node('peer-0').kv.put('k', enc('v'), { w: 3 })
      const { reads, result } = await requestsDuring(sim, async () => await sim.node('peer-0').kv.get('k'))
      expect(result.values.map(dec)).toEqual(['v'])
      expect(reads).toBe(readAll ? 2 : 1)
    }
  })

  it('when the replicas asked all say not-found, the spare is asked and its value returned', async () => {
    const sim = await KvSim.create(ids(3))
    // Only the replica a read from peer-0 holds back has the key (as if the others missed the write).
    const spare = sim.primaries('k').filter(id => id !== 'peer-0')[1]!
    await sim.node(spare).engine.put('k', enc('only here'))
    sim.refresh()
    const { reads, result } = await requestsDuring(sim, async () => await sim.node('peer-0').kv.get('k'))
    expect(result.values.map(dec)).toEqual(['only here'])
    expect(reads).toBe(3) // two reads, then the read repair of the replica asked first (the coordinator's own is local)
    for (const id of sim.primaries('k')) expect(sim.node(id).engine.get('k')?.values.map(v => dec(v.value!))).toEqual(['only here'])
    // notFoundOk answers after R: the spare is not asked, so the key is not found.
    const lenient = await KvSim.create(ids(3), { notFoundOk: true })
    await lenient.node(spare).engine.put('k', enc('only here'))
    lenient.refresh()
    const miss = await requestsDuring(lenient, async () => await lenient.node('peer-0').kv.get('k'))
    expect(miss.result.values).toEqual([])
    expect(miss.reads).toBe(1)
  })

  it('durable replicas are asked before tabs', async () => {
    const place = (id: string): { location: string; durable: boolean } => ({ location: id, durable: id.startsWith('d') })
    const sim = await KvSim.create(['d0', 'd1', 'v0', 'v1'], {}, { placement: place })
    // A key d0 coordinates whose other primaries are a tab and then, later in the list, a durable member.
    const key = Array.from({ length: 500 }, (_, i) => `k${i}`).find(k => {
      const p = sim.primaries(k)
      const others = p.filter(id => id !== 'd0')
      return p.includes('d0') && others[0]!.startsWith('v') && others[1]!.startsWith('d')
    })!
    expect(key).toBeDefined()
    const tab = sim.primaries(key).filter(id => id !== 'd0')[0]!
    await sim.node('d0').kv.put(key, enc('v'), { w: 3 })
    sim.faults.overloaded.set(tab, new Set(['read'])) // asked first, it would fail the read over to another
    const { reads, result } = await requestsDuring(sim, async () => await sim.node('d0').kv.get(key))
    expect(result.values.map(dec)).toEqual(['v'])
    expect(reads).toBe(1)
    expect(sim.node('d0').kv.stats.hedged).toBe(0)
  })

  it('a silent replica asked gets the spare after its hedge wait, in a strict read too; with hedging off all are asked', async () => {
    for (const [config, options] of [[{}, {}], [{}, { strict: true }], [{ hedgeMultiplier: 0 }, {}]] as const) {
      const sim = await KvSim.create(ids(3), { ...config, requestTimeoutMs: 10_000 })
      await sim.node('peer-0').kv.put('k', enc('v'), { w: 3 })
      sim.faults.silent.add(sim.primaries('k').filter(id => id !== 'peer-0')[0]!)
      const t0 = sim.clock.nowMs()
      const got = await sim.node('peer-0').kv.get('k', options)
      expect(got.values.map(dec)).toEqual(['v'])
      expect(sim.clock.nowMs() - t0, JSON.stringify({ config, options })).toBeLessThan(1000) // not the 10 s timeout
    }
  })

  it('a tab primary is asked before a durable fallback (which holds only hints)', async () => {
    const place = (id: string): { location: string; durable: boolean } => ({ location: id, durable: id.startsWith('d') })
    const sim = await KvSim.create(['d0', 'd1', 'v0', 'v1', 'v2', 'v3'], {}, { placement: place })
    // A key with d0 and two tabs as primaries and d1 not among them: with one tab down, d0's preference
    // list is [tab, d0, d1 as the fallback] in some order.
    const key = Array.from({ length: 500 }, (_, i) => `k${i}`).find(k => {
      const p = sim.primaries(k)
      return p.includes('d0') && !p.includes('d1') && p.filter(id => id.startsWith('v')).length === 2
    })!
    expect(key).toBeDefined()
    const [tabUp, tabDown] = sim.primaries(key).filter(id => id.startsWith('v')) as [string, string]
    sim.setUp(tabDown, false)
    const placement = await sim.node('d0').kv.placement(key)
    expect(placement.replicas.some(x => x.role === 'fallback' && x.up && x.id.startsWith('d'))).toBe(true)
    // Concurrent writes: one only d0 holds, one only the tab primary holds.
    await sim.node('d0').engine.put(key, enc('on d0'))
    await sim.node(tabUp).engine.put(key, enc('on the tab'))
    sim.refresh()
    const got = await sim.node('d0').kv.get(key)
    expect(got.values.map(dec).sort()).toEqual(['on d0', 'on the tab'])
  })

  it('a replica asked that fails gets the spare, before any fallback; a strict read too', async () => {
    for (const strict of [false, true]) {
      const sim = await KvSim.create(ids(5))
      const key = 'k'
      // Every member durable: the coordinator asks the next primary first and holds back the last.
      const [coordinator, asked, held] = sim.primaries(key) as [string, string, string]
      await sim.node(coordinator).kv.put(key, enc('v'), { w: 3 })
      sim.faults.overloaded.set(asked, new Set(['read']))
      const { reads, result } = await requestsDuring(sim, async () => await sim.node(coordinator).kv.get(key, { strict }))
      expect(result.values.map(dec)).toEqual(['v'])
      expect(result.replies).toBe(2)
      expect(reads).toBe(2) // the one refused, then the spare: no fallback was asked
      expect(sim.holders(key).has(held)).toBe(true)
      if (!strict) expect(sim.node(coordinator).kv.stats.hedged).toBe(1)
    }
  })
})

describe('kv: anti-entropy, partitions, membership changes', () => {
  it('anti-entropy repairs differences in both directions', async () => {
    const sim = await KvSim.create(ids(3))
    const a = sim.node('peer-0')
    const b = sim.node('peer-1')
    // Writes only one replica knows of (as if the others missed them).
    for (let i = 0; i < 50; i++) {
      await a.engine.put(`a${i}`, enc('x'))
      await b.engine.put(`b${i}`, enc('y'))
    }
    sim.refresh() // rebuild indexes
    const result = await a.kv.syncRound('peer-1')
    expect(result).toMatchObject({ equal: false, pushed: 50, pulled: 50 })
    expect(await a.kv.syncRound('peer-1')).toMatchObject({ equal: true })
    expect(b.engine.state('a7')).toBeDefined()
    expect(a.engine.state('b7')).toBeDefined()
  })

  it('writes on both sides of a partition converge after healing; a key written on both keeps both as siblings', async () => {
    const sim = await KvSim.create(ids(6))
    const left = ['peer-0', 'peer-1', 'peer-2']
    const right = ['peer-3', 'peer-4', 'peer-5']
    sim.partition(left, right)
    const keys: string[] = []
    for (let i = 0; i < 60; i++) {
      const key = `p${i}`
      keys.push(key)
      await sim.node(i % 2 === 0 ? 'peer-0' : 'peer-3').kv.put(key, enc(`v${i}`))
    }
    await sim.node('peer-1').kv.put('contested', enc('left'))
    await sim.node('peer-4').kv.put('contested', enc('right'))
    keys.push('contested')
    sim.heal()
    // The bound: every replica converges within 6 rounds of handoff + anti-entropy on every peer.
    const rounds = await converge(sim, () => replicated(sim, keys) && keys.every(k => sim.holders(k).size === 3), 6)
    expect(rounds).toBeLessThanOrEqual(6)
    const got = await sim.node('peer-2').kv.get('contested', { r: 3 })
    expect(got.values.map(dec).sort()).toEqual(['left', 'right'])
    for (let i = 0; i < 60; i++) expect((await sim.node('peer-5').kv.get(`p${i}`)).values.map(dec)).toEqual([`v${i}`])
  })

  it('a joining member receives its ranges; old holders drop what they no longer own', async () => {
    const sim = await KvSim.create(ids(3))
    const keys = Array.from({ length: 500 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await sim.add('peer-3')
    const owned = keys.filter(k => sim.primaries(k).includes('peer-3'))
    expect(owned.length).toBeGreaterThan(200)
    await converge(sim, () => keys.every(k => [...sim.holders(k).keys()].sort().join() === [...sim.primaries(k)].sort().join()), 3)
    expect(sim.node('peer-3').engine.size).toBe(owned.length)
  })

  it('a ring change on a store larger than kv.indexRebuildKeysPerTurn rebuilds the key index over several ticks, then the moved ranges go', async () => {
    const sim = await KvSim.create(ids(3), { indexRebuildKeysPerTurn: 50 })
    const keys = Array.from({ length: 500 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await sim.add('peer-3')
    const machine = (id: string): FaultNode => sim.faults.nodes.get(id)!
    // Every old holder holds all 500 keys: each has a rebuild under way, and until it ends its index is the
    // old ring's (where it was a primary of everything: nothing held for others).
    for (const id of ids(3)) {
      expect(machine(id).kv.machine.nextWakeMs()).toBeLessThanOrEqual(sim.clock.nowMs()) // due at once
      expect(sim.node(id).kv.stats.hintsPending).toBe(0)
    }
    const ticks = new Map<string, number>()
    for (const id of ids(3)) {
      let n = 0
      while (machine(id).kv.machine.nextWakeMs() <= sim.clock.nowMs() && n < 100) { machine(id).kv.tick(); n++ }
      ticks.set(id, n)
      expect(sim.node(id).kv.stats.hintsPending).toBe(keys.filter(k => !sim.primaries(k).includes(id)).length)
    }
    // 500 keys at 50 a step (whole segments, so a step may take a few more): the first step ran with the
    // ring change, the rest one per tick.
    for (const n of ticks.values()) {
      expect(n).toBeGreaterThanOrEqual(5)
      expect(n).toBeLessThanOrEqual(10)
    }
    await converge(sim, () => keys.every(k => [...sim.holders(k).keys()].sort().join() === [...sim.primaries(k)].sort().join()), 3)
    expect(sim.node('peer-3').engine.size).toBe(keys.filter(k => sim.primaries(k).includes('peer-3')).length)
  })

  it('a peer whose key index is being rebuilt never answers a round "equal" from the old ring\'s hash tree', async () => {
    // One key a step: peer-0's rebuild for the ring with peer-3 is still under way when peer-3 asks.
    const sim = await KvSim.create(ids(3), { indexRebuildKeysPerTurn: 1 })
    const keys = Array.from({ length: 2000 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await sim.add('peer-3')
    const shared = keys.filter(k => sim.primaries(k).includes('peer-3') && sim.primaries(k).includes('peer-0'))
    expect(shared.length).toBeGreaterThan(100)
    expect(sim.faults.nodes.get('peer-0')!.kv.machine.nextWakeMs()).toBeLessThanOrEqual(sim.clock.nowMs()) // rebuilding
    // peer-3 holds nothing; peer-0's old-ring leaves for it are empty too, so the roots would match.
    const round = await sim.node('peer-3').kv.syncRound('peer-0')
    expect(round).toMatchObject({ peer: 'peer-0', equal: false, pushed: 0 })
    expect(round!.pulled).toBeGreaterThan(0)
    expect(sim.node('peer-3').engine.size).toBe(round!.pulled)
  })

  it('ring changes faster than a key index rebuild cannot hold it off: each restart doubles the step', async () => {
    const sim = await KvSim.create(ids(3), { indexRebuildKeysPerTurn: 10 })
    const keys = Array.from({ length: 1000 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    const machine = sim.faults.nodes.get('peer-0')!.kv
    const rebuilding = (): boolean => machine.machine.nextWakeMs() <= sim.clock.nowMs()
    // A member joins after every two ticks of peer-0; at 10 keys a step, a rebuild needs about 100 ticks.
    let changes = 0
    for (; changes < 20; changes++) {
      await sim.add(`peer-${3 + changes}`)
      expect(rebuilding()).toBe(true)
      machine.tick()
      machine.tick()
      if (!rebuilding()) break
    }
    // Without the doubling every change would start over: 20 changes, still rebuilding.
    expect(changes).toBeLessThan(10)
    const expected = keys.filter(k => !sim.primaries(k).includes('peer-0')).length
    expect(sim.node('peer-0').kv.stats.hintsPending).toBe(expected)
  })

  it('a round holds to kv.syncKeysPerRound on the asking side too: against an empty joiner it pushes a budget\'s worth, not everything', async () => {
    const sim = await KvSim.create(ids(3), { syncKeysPerRound: 50 })
    const keys = Array.from({ length: 500 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await sim.add('peer-3')
    // Anti-entropy between two peers covers the keys both are primaries of (the rest is the handoff loop's).
    const owned = keys.filter(k => sim.primaries(k).includes('peer-3') && sim.primaries(k).includes('peer-0'))
    expect(owned.length).toBeGreaterThan(100)
    const pushes: number[] = []
    while (owned.some(k => !sim.holders(k).has('peer-3')) && pushes.length < 40) {
      const round = await sim.node('peer-0').kv.syncRound('peer-3')
      expect(round).toMatchObject({ peer: 'peer-3', equal: false, pulled: 0 })
      pushes.push(round!.pushed)
    }
    // Each round at most the budget (peer-3, holding nothing, answered for every segment they share).
    expect(Math.max(...pushes)).toBeLessThanOrEqual(50)
    expect(pushes.length).toBeGreaterThanOrEqual(Math.ceil(owned.length / 50))
    expect(pushes.reduce((a, b) => a + b, 0)).toBe(owned.length)
    expect(await sim.node('peer-0').kv.syncRound('peer-3')).toMatchObject({ equal: true })
  })

  it('a round the asking side cut short pulls nothing from the segments it left out: each stale key is pulled once', async () => {
    const sim = await KvSim.create(ids(4), { syncKeysPerRound: 50 })
    const shared = (k: string): boolean => sim.primaries(k).includes('peer-3') && sim.primaries(k).includes('peer-0')
    const old = Array.from({ length: 400 }, (_, i) => `old-${i}`).filter(shared)
    const fresh = Array.from({ length: 400 }, (_, i) => `new-${i}`).filter(shared)
    for (const key of old) await sim.node('peer-0').kv.put(key, enc('v1'), { w: 3 })
    // peer-3 misses newer writes of the old keys and every new key: per segment it holds about half of what
    // peer-0 holds, all of it older, so its answer covers twice the segments peer-0's budget takes.
    sim.setUp('peer-3', false)
    for (const key of old) await sim.node('peer-0').kv.put(key, enc('v2'), { context: (await sim.node('peer-0').kv.get(key)).context })
    for (const key of fresh) await sim.node('peer-0').kv.put(key, enc('v2'))
    sim.setUp('peer-3', true)
    const rounds: Array<{ pushed: number; pulled: number }> = []
    for (let i = 0; i < 60; i++) {
      const round = await sim.node('peer-0').kv.syncRound('peer-3')
      if (round!.equal) break
      rounds.push({ pushed: round!.pushed, pulled: round!.pulled })
    }
    expect(rounds.length).toBeGreaterThanOrEqual(Math.ceil((old.length + fresh.length) / 50))
    for (const r of rounds) expect(r.pushed).toBeLessThanOrEqual(50)
    // A key both hold in different versions is pushed and pulled (the asker cannot tell which is newer), in
    // the round that covers its segment only; a key only the asker holds is pushed.
    expect(rounds.reduce((a, r) => a + r.pulled, 0)).toBe(old.length)
    expect(rounds.reduce((a, r) => a + r.pushed, 0)).toBe(old.length + fresh.length)
    for (const key of [...old, ...fresh]) expect(dec((await sim.node('peer-3').kv.get(key, { r: 1 })).values[0]!)).toBe('v2')
  })

  it("a leave's handoff completes a key index rebuild under way first: every key held for others by the current ring goes", async () => {
    const sim = await KvSim.create(ids(4), { indexRebuildKeysPerTurn: 10 })
    const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await converge(sim, () => replicated(sim, keys), 3)
    const holder = sim.node('peer-1')
    // peer-4 joins (the ring changes everywhere) and peer-1, its rebuild still under way, leaves within its
    // leave grace: what it holds for others is judged by the ring with peer-4.
    await sim.add('peer-4')
    expect(sim.faults.nodes.get('peer-1')!.kv.machine.nextWakeMs()).toBeLessThanOrEqual(sim.clock.nowMs()) // a rebuild under way
    const forOthers = [...holder.engine.keys()].filter(k => !sim.primaries(k).includes('peer-1'))
    expect(forOthers.length).toBeGreaterThan(10)
    const result = await holder.kv.handOffAll(sim.ring(), () => {}, true)
    expect(result).toEqual({ delivered: forOthers.length * 3, failed: 0 })
    for (const k of forOthers) for (const id of sim.primaries(k)) expect(sim.holders(k).has(id)).toBe(true)
  })

  it('a member leaving gracefully hands off first: nothing is under-replicated', async () => {
    const sim = await KvSim.create(ids(4))
    const keys = Array.from({ length: 400 }, (_, i) => `key-${i}`)
    for (const key of keys) await sim.node('peer-0').kv.put(key, enc(key), { w: 3 })
    await converge(sim, () => replicated(sim, keys), 3)
    const leaver = sim.node('peer-2')
    const without = Ring.build(sim.ring().members.filter(m => m.id !== 'peer-2'), sim.ring().hash)
    const result = await leaver.kv.handOffAll(without, () => {})
    expect(result.failed).toBe(0)
    // From the start of its handoff the leaver takes no writes (they could miss the handoff).
    expect(await leaver.kv.handle('peer-0', { type: 'merge', entries: [] })).toMatchObject({ type: 'error', code: 'ERR_LEAVING' })
    sim.remove('peer-2')
    // Immediately, before any background round: every key is on all N of its new primaries.
    expect(replicated(sim, keys)).toBe(true)
  })

  it('a member leaving within its leave grace hands off only the keys it holds for others', async () => {
    const sim = await KvSim.create(ids(5))
    const key = 'hinted'
    const [p0, , p2] = sim.primaries(key)
    sim.setUp(p2!, false)
    await sim.node(p0!).kv.put(key, enc('v'), { w: 3 })
    const fallback = [...sim.holders(key).keys()].find(id => !sim.primaries(key).includes(id))!
    // The fallback also holds keys of its own.
    const own = Array.from({ length: 200 }, (_, i) => `own-${i}`).filter(k => sim.primaries(k).includes(fallback))
    for (const k of own) await sim.node(fallback).kv.put(k, enc(k), { w: 3 })
    expect(own.length).toBeGreaterThan(20)
    expect(sim.node(fallback).kv.stats.hintsPending).toBe(1)
    // The others keep it in the ring: the hint goes to the key's up primaries (p0 and p1), nothing else moves.
    const result = await sim.node(fallback).kv.handOffAll(sim.ring(), () => {}, true)
    expect(result).toEqual({ delivered: 2, failed: 0 })
    for (const k of own) expect(sim.holders(k).has(fallback)).toBe(true)
  })

  it('a deleted key is reaped after the grace period and never comes back', async () => {
    const sim = await KvSim.create(ids(4), { tombstoneGraceMs: 60_000 })
    const key = 'gone'
    const [p0, p1, p2] = sim.primaries(key)
    const put = await sim.node(p0!).kv.put(key, enc('old'), { w: 3 })
    // One primary misses the delete; a fallback takes it instead.
    sim.setUp(p2!, false)
    await sim.node(p1!).kv.delete(key, { context: put.context, w: 3 })
    await sim.backgroundRound()
    sim.clock.advance(61_000)
    await sim.backgroundRound()
    // Not reaped while a primary is down: it still holds the old value.
    expect(sim.holders(key).size).toBeGreaterThan(0)
    sim.setUp(p2!, true)
    await converge(sim, () => sim.holders(key).size === 0, 5)
    for (let i = 0; i < 3; i++) await sim.backgroundRound()
    expect(sim.holders(key).size).toBe(0)
    expect((await sim.node(p2!).kv.get(key, { r: 3 })).values).toEqual([])
  })
})

describe('kv: peer info for dashboards', () => {
  it('reports keys, counters and latencies of any member over the wire', async () => {
    const sim = await KvSim.create(ids(3))
    for (let i = 0; i < 10; i++) await sim.node('peer-0').kv.put(`k${i}`, enc('v'), { w: 3 })
    const infoOf = async (from: string, id: string): Promise<PeerInfo> => {
      const node = sim.node(from)
      return await peerInfo(node.kv, () => node.figures.info(node.kv, node.engine), id)
    }
    const info = await infoOf('peer-1', 'peer-0')
    expect(info).toMatchObject({ id: 'peer-0', keys: 10, ops: 10, stats: { puts: 10 } })
    expect(info.latency.samples).toBe(10)
    expect((await infoOf('peer-1', 'peer-1')).keys).toBe(10)
  })
})

describe('kv: TTL expiry across replicas', () => {
  it('a replica that missed newer beats asks the others before expiring, and an expiry reaches every replica', async () => {
    const key = 'heartbeat/svc'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat 1'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(c!.id, false)
    sim.clock.advance(2000)
    await a!.kv.put(key, enc('beat 2'), { lww: true, ttlMs: 3000 })
    sim.setUp(c!.id, true)
    // c's credits for beat 1 run out (3 credits at a 1000 ms sweep): it must find beat 2 instead of expiring.
    for (let i = 0; i < 5; i++) {
      await c!.kv.sweep()
      await sim.settle()
    }
    expect(expired).toEqual([])
    expect(c!.engine.get(key)!.values.map(s => dec(s.value!))).toEqual(['beat 2'])
    // Nobody beats any more: the first replica to run out expires it, and every replica gets the expiry.
    for (let i = 0; i < 6 && expired.length === 0; i++) {
      for (const n of [a!, b!, c!]) await n.kv.sweep()
      await sim.settle()
    }
    expect(expired.length).toBeGreaterThanOrEqual(1)
    for (const n of [a!, b!, c!]) expect(n.engine.get(key)!.deleted).toBe(true)
  })

  it('expiry needs agreement: with its only other up replica degraded a replica postpones, and expires once that one is healthy again', async () => {
    const key = 'heartbeat/agree'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(c!.id, false)
    degrade(sim, b!.id)
    expect(await b!.kv.handle(a!.id, { type: 'expiry-check', key })).toMatchObject({ type: 'expiry-state', degraded: true, ttlMs: 3000 })
    // 3 credits at a 1000 ms sweep, then due: b cannot confirm the expiry, so a waits, without asking again
    // until DETECTOR_STRETCH TTLs after the beat, and at every sweep from then on while b stays degraded.
    const sweep = async (): Promise<void> => { sim.clock.advance(1000); await a!.kv.sweep(); await sim.settle() }
    for (let i = 0; i < 8; i++) { degrade(sim, b!.id); await sweep() }
    expect(expired).toEqual([])
    expect(a!.engine.get(key)!.deleted).toBe(false)
    expect(a!.kv.stats.expiryPostponedDegraded).toBe(1)
    for (let i = 0; i < 8; i++) { degrade(sim, b!.id); await sweep() }
    expect(expired).toEqual([])
    expect(a!.kv.stats.expiryPostponedDegraded).toBeGreaterThan(1)
    // b's signals stay under their thresholds from now on: HEALTH_RECOVERY_MS later it is healthy, and a's
    // next sweep expires the key.
    const postponed = a!.kv.stats.expiryPostponedDegraded
    sim.clock.advance(HEALTH_RECOVERY_MS - 1000)
    await sweep()
    expect(expired).toEqual([a!.id])
    expect(a!.kv.stats.expiryPostponedDegraded).toBe(postponed)
    for (const n of [a!, b!]) expect(n.engine.get(key)!.deleted).toBe(true)
  })

  it('a newer beat from a degraded replica still refreshes the key; once it runs out, that replica cannot confirm the expiry alone', async () => {
    const key = 'heartbeat/degraded-newer'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat 1'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(a!.id, false)
    sim.clock.advance(2000)
    await b!.kv.put(key, enc('beat 2'), { lww: true, ttlMs: 3000 })
    sim.setUp(a!.id, true)
    sim.setUp(c!.id, false)
    degrade(sim, b!.id)
    for (let i = 0; i < 5; i++) await a!.kv.sweep()
    expect(a!.engine.get(key)!.values.map(s => dec(s.value!))).toEqual(['beat 2'])
    expect(a!.kv.stats.expiryPostponedDegraded).toBe(0)
    // Nobody beats any more: beat 2's credits run out too, and b is still degraded.
    for (let i = 0; i < 5; i++) await a!.kv.sweep()
    expect(a!.kv.stats.expiryPostponedDegraded).toBeGreaterThan(0)
    expect(a!.engine.get(key)!.deleted).toBe(false)
    expect(expired).toEqual([])
  })

  it('a replica that refuses the expiry check as overloaded cannot confirm an expiry: it waits until that one answers', async () => {
    const key = 'heartbeat/overloaded'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(c!.id, false)
    sim.faults.overloaded.set(b!.id, new Set(['beat-check', 'expiry-check']))
    // Past DETECTOR_STRETCH TTLs after the beat, still held: the only other replica cannot vouch for it.
    const sweep = async (): Promise<void> => { sim.clock.advance(1000); await a!.kv.sweep(); await sim.settle() }
    for (let i = 0; i < 16; i++) await sweep()
    expect(expired).toEqual([])
    expect(a!.kv.stats.expiryPostponedDegraded).toBeGreaterThan(1)
    sim.faults.overloaded.delete(b!.id)
    await sweep()
    expect(expired).toEqual([a!.id])
  })

  it('a replica whose own link to another is full does not expire on the other\'s healthy answer, even past the hold: it decides once it can ask', async () => {
    const key = 'heartbeat/link-full'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    // a cannot ask b at all (its link to b is full: rpc.ts refuses before sending); c answers, healthy, with
    // no newer beat. b may hold the evidence (the beats it refused but noted): nothing is decided without it.
    sim.faults.linkFull.set(b!.id, new Set(['beat-check', 'expiry-check', 'read']))
    const sweep = async (): Promise<void> => { sim.clock.advance(1000); await a!.kv.sweep(); await sim.settle() }
    for (let i = 0; i < DETECTOR_STRETCH * 3 + 8; i++) await sweep()
    expect(expired).toEqual([])
    expect(a!.engine.get(key)!.deleted).toBe(false)
    expect(a!.kv.stats.expiryPostponedDegraded).toBeGreaterThan(1)
    expect(c!.engine.get(key)!.deleted).toBe(false)
    // The link drains: b answers (healthy, nothing newer) and so does c; the key expires at the next sweep.
    sim.faults.linkFull.delete(b!.id)
    await sweep()
    expect(expired).toEqual([a!.id])
  })

  it(`runs at most EXPIRY_CHECKS_MAX expiry checks at once: the keys due beyond wait their turn, and every one expires`, async () => {
    const { sim, a, b, c } = await replicasOf('heartbeat/queue-0')
    const keys = Array.from({ length: EXPIRY_CHECKS_MAX + 300 }, (_, i) => `heartbeat/queue-${i}`)
    // Three peers, N=3: every key is on all three.
    for (const key of keys) await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    let offered = 0
    for (let i = 0; i < 8 && offered === 0; i++) {
      sim.clock.advance(1000)
      // The sweep alone, not run to the end: what it started is still in flight.
      sim.faults.nodes.get(a.id)!.kv.sweep()
      offered = a.kv.stats.expiryChecksWaiting
      if (offered === 0) await sim.settle()
    }
    // One sweep found every key due: EXPIRY_CHECKS_MAX checks went out, the rest wait (none was sent yet).
    expect(offered).toBe(300)
    // b writes one waiting key anew: its check is dropped when its turn comes (it has credits again).
    await b.kv.put(keys[keys.length - 1]!, enc('beat 2'), { lww: true, ttlMs: 3000, w: 1 })
    await sim.settle()
    expect(a.kv.stats.expiryChecksWaiting).toBe(0)
    // Every key came due in one sweep: a mass expiry (health.ts), so each is held DETECTOR_STRETCH TTLs after
    // its last beat first, then expires.
    expect(sim.faults.nodes.get(a.id)!.kv.machine.health.state(sim.clock.nowMs()).reason).toMatch(/^mass expiry/)
    const expiredHere = (): string[] => keys.filter(k => a.engine.get(k)?.deleted === true)
    for (let i = 0; i < DETECTOR_STRETCH * 3 * 2 && expiredHere().length < keys.length - 1; i++) {
      sim.clock.advance(1000)
      await a.kv.sweep()
      await sim.settle()
    }
    const expired = expiredHere()
    expect(expired).toHaveLength(keys.length - 1)
    for (const k of expired) expect(c.engine.get(k)!.deleted).toBe(true)
  })

  it(`a sweep that finds more than ${MASS_EXPIRY_SHARE * 100}% of the services held due at once (at least ${MASS_EXPIRY_MIN}) holds them DETECTOR_STRETCH TTLs after their last beat: late together is a slow client or mesh, not stopped services`, async () => {
    const { sim, a, b, c, expired } = await replicasOf('heartbeat/mass-0')
    // 1,000 services; 150 of them (15%) beat late, all at once: more than 3 s after their last beat.
    const keys = Array.from({ length: 1000 }, (_, i) => `heartbeat/mass-${i}`)
    const late = keys.slice(0, 150)
    // Each second's beats go out together, so they take (simulated) milliseconds, not seconds.
    const beat = async (some: string[]): Promise<void> => { await Promise.all(some.map(async key => await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 }))) }
    await beat(keys)
    const lastBeat = sim.clock.nowMs()
    const sweep = async (): Promise<void> => {
      sim.clock.advance(1000)
      for (const n of [a, b, c]) await n.kv.sweep()
      await sim.settle()
    }
    // The others keep beating every second; the late ones come back after 9 s (3 TTLs).
    const reasons = new Set<string>()
    let answeredWhileMass = 0
    for (let second = 1; second <= 9; second++) {
      await beat(keys.slice(150))
      await sweep()
      for (const n of [a, b, c]) reasons.add(`${n.id}: ${sim.faults.nodes.get(n.id)!.kv.machine.health.state(sim.clock.nowMs()).reason ?? 'healthy'}`)
      // Degraded by the mass expiry, b still answers others' checks healthy: it is not slow, the beats are.
      if (sim.faults.nodes.get(b.id)!.kv.machine.health.state(sim.clock.nowMs()).reason?.startsWith('mass expiry') === true) {
        expect(await b.kv.handle(a.id, { type: 'beat-check', key: late[0]! })).toMatchObject({ type: 'beat-state', degraded: false })
        answeredWhileMass++
      }
    }
    expect(answeredWhileMass).toBeGreaterThan(0)
    expect(expired).toEqual([])
    for (const n of [a, b, c]) expect([...reasons].some(r => r.startsWith(`${n.id}: mass expiry (150 of 1000 keys due in one sweep`))).toBe(true)
    for (const key of late) expect(a.engine.get(key)!.deleted).toBe(false)
    // They beat again: alive, never expired. Had they stopped, they would expire once the hold is over.
    await beat(late)
    expect(sim.clock.nowMs() - lastBeat).toBeLessThan(DETECTOR_STRETCH * 3000)
    await sweep()
    expect(expired).toEqual([])
  })

  it('services that stop together are still detected: once DETECTOR_STRETCH TTLs after their last beat have passed, the replicas\' healthy answers expire them', async () => {
    const { sim, a, b, c } = await replicasOf('heartbeat/gone-0')
    const keys = Array.from({ length: 1000 }, (_, i) => `heartbeat/gone-${i}`)
    const stopped = keys.slice(0, 150)
    const beat = async (some: string[]): Promise<void> => { await Promise.all(some.map(async key => await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 }))) }
    await beat(keys)
    const lastBeat = sim.clock.nowMs()
    const gone = (): number => stopped.filter(k => [a, b, c].every(n => n.engine.get(k)!.deleted)).length
    let before = 0
    for (let second = 1; second <= DETECTOR_STRETCH * 3 + 6 && gone() < stopped.length; second++) {
      await beat(keys.slice(150))
      sim.clock.advance(1000)
      for (const n of [a, b, c]) await n.kv.sweep()
      await sim.settle()
      if (sim.clock.nowMs() - lastBeat < DETECTOR_STRETCH * 3000) before = gone()
    }
    // Held while the hold ran (a mass expiry on every replica), then detected within a few sweeps of its end.
    expect(before).toBe(0)
    expect(gone()).toBe(stopped.length)
    for (const k of keys.slice(150)) expect(a.engine.get(k)!.deleted).toBe(false)
  })

  it('a lone replica (no other up) degraded by a mass expiry holds its services DETECTOR_STRETCH TTLs after their last beat, then expires them alone', async () => {
    const { sim, a, b, c } = await replicasOf('heartbeat/lone-0')
    const keys = Array.from({ length: 1000 }, (_, i) => `heartbeat/lone-${i}`)
    const stopped = keys.slice(0, 150)
    const beat = async (some: readonly string[]): Promise<void> => { await Promise.all(some.map(async key => await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 }))) }
    await beat(keys)
    const lastBeat = sim.clock.nowMs()
    sim.setUp(b.id, false)
    sim.setUp(c.id, false)
    const gone = (): number => stopped.filter(k => a.engine.get(k)!.deleted).length
    let before = 0
    let mass = false
    for (let second = 1; second <= DETECTOR_STRETCH * 3 + 8 && gone() < stopped.length; second++) {
      await Promise.all(keys.slice(150).map(async key => await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 1 })))
      sim.clock.advance(1000)
      await a.kv.sweep()
      mass ||= sim.faults.nodes.get(a.id)!.kv.machine.health.state(sim.clock.nowMs()).reason?.startsWith('mass expiry') === true
      if (sim.clock.nowMs() - lastBeat < DETECTOR_STRETCH * 3000) before = gone()
    }
    expect(mass).toBe(true)
    expect(before).toBe(0)
    expect(gone()).toBe(stopped.length)
    expect(keys.slice(150).filter(k => a.engine.get(k)!.deleted)).toEqual([])
  })

  for (const [held, stop, prefix] of [[2000, 150, 'heartbeat/under-share-'], [300, 60, 'heartbeat/under-min-'], [1000, 200, 'cache/']] as const) {
    const why = prefix === 'cache/' ? 'other TTL keys (not services) expiring together' : stop >= MASS_EXPIRY_MIN ? `${stop} of ${held} services stopping (at most ${MASS_EXPIRY_SHARE * 100}%)` : `${stop} of ${held} services stopping (fewer than ${MASS_EXPIRY_MIN})`
    it(`${why}: no mass expiry, they expire by the normal rule`, async () => {
      const { sim, a, b, c } = await replicasOf(`${prefix}0`)
      const keys = Array.from({ length: held }, (_, i) => `${prefix}${i}`)
      const beat = async (some: readonly string[]): Promise<void> => { await Promise.all(some.map(async key => await a.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 }))) }
      await beat(keys)
      const stopped = keys.slice(0, stop)
      for (let second = 1; second <= 5; second++) {
        await beat(keys.slice(stop))
        sim.clock.advance(1000)
        for (const n of [a, b, c]) await n.kv.sweep()
        await sim.settle()
      }
      for (const n of [a, b, c]) expect(sim.faults.nodes.get(n.id)!.kv.machine.health.state(sim.clock.nowMs())).toMatchObject({ state: 'healthy', episodes: 0 })
      for (const n of [a, b, c]) expect(stopped.filter(k => n.engine.get(k)?.deleted === false)).toEqual([])
      expect(keys.slice(stop).filter(k => a.engine.get(k)!.deleted)).toEqual([])
    })
  }

  it('with one other replica degraded and one healthy, a replica waits DETECTOR_STRETCH TTLs after the last beat, then expires on the healthy answer', async () => {
    const key = 'heartbeat/one-degraded'
    const { sim, a, b, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    const beatAt = sim.clock.nowMs()
    degrade(sim, b!.id)
    const deadline = beatAt + DETECTOR_STRETCH * 3000
    while (expired.length === 0 && sim.clock.nowMs() < deadline + 5000) {
      sim.clock.advance(1000)
      // b stays degraded throughout (a stall every few seconds).
      degrade(sim, b!.id)
      await a!.kv.sweep()
      await sim.settle()
    }
    expect(expired).toEqual([a!.id])
    // Not before the stretched bound, and within a sweep or two after it.
    expect(sim.clock.nowMs()).toBeGreaterThanOrEqual(deadline)
    expect(sim.clock.nowMs()).toBeLessThanOrEqual(deadline + 2000)
    expect(a!.kv.stats.expiryPostponedDegraded).toBe(1)
  })

  it('a replica that SWIM lists up but that does not answer the expiry check holds the expiry as a degraded one does', async () => {
    const key = 'heartbeat/silent'
    const { sim, a, b, expired } = await replicasOf(key)
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    const beatAt = sim.clock.nowMs()
    sim.faults.silent.add(b!.id)
    while (expired.length === 0 && sim.clock.nowMs() < beatAt + DETECTOR_STRETCH * 3000 + 30_000) {
      // A second of simulated time, ticks included (the request to b times out in them), then a sweep.
      const until = sim.clock.nowMs() + 1000
      while (sim.clock.nowMs() < until) await sim.faults.step()
      await a!.kv.sweep()
    }
    expect(expired).toEqual([a!.id])
    expect(sim.clock.nowMs()).toBeGreaterThanOrEqual(beatAt + DETECTOR_STRETCH * 3000)
    // Within two sweeps after the hold, and the request timeout of the check that finds it over.
    expect(sim.clock.nowMs()).toBeLessThanOrEqual(beatAt + DETECTOR_STRETCH * 3000 + 2000 + sim.faults.config.requestTimeoutMs)
  })

  it('an older replica answers the expiry check ERR_UNSUPPORTED: it is read instead (and at once the next time), its newer beat merged, and it counts as healthy', async () => {
    const sim = await KvSim.create(ids(3))
    const key = 'heartbeat/mixed'
    const [a, b, c] = sim.primaries(key).map(id => sim.node(id))
    // Older than both checks ('beat-check' is newer still than 'expiry-check').
    sim.faults.older.set(b!.id, new Set(['beat-check', 'expiry-check']))
    const expired: string[] = []
    for (const n of [a!, b!, c!]) n.kv.events.on('change', e => { if (e.type === 'expired') expired.push(n.id) })
    await a!.kv.put(key, enc('beat 1'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(a!.id, false)
    sim.clock.advance(2000)
    await b!.kv.put(key, enc('beat 2'), { lww: true, ttlMs: 3000 })
    sim.setUp(a!.id, true)
    sim.setUp(c!.id, false)
    // Degraded, but an older peer cannot say so: it is taken as healthy, as every replica was before.
    degrade(sim, b!.id)
    for (let i = 0; i < 5; i++) await a!.kv.sweep()
    expect(sim.faults.stats.unsupported).toBe(2)
    expect(a!.engine.get(key)!.values.map(s => dec(s.value!))).toEqual(['beat 2'])
    expect(expired).toEqual([])
    for (let i = 0; i < 5 && expired.length === 0; i++) await a!.kv.sweep()
    // The second check read b at once: a remembers how old it is (older-peers.ts), no round trip more.
    expect(sim.faults.stats.unsupported).toBe(2)
    expect(expired).toEqual([a!.id])
    expect(a!.kv.stats.expiryPostponedDegraded).toBe(0)
  })

  it('read repair carries the TTL of the newest write, so an expiry does not pick up a stale TTL', async () => {
    const sim = await KvSim.create(ids(3))
    const key = 'heartbeat/repair'
    const [a, b] = sim.primaries(key).map(id => sim.node(id))
    await a!.kv.put(key, enc('beat'), { lww: true, ttlMs: 3000, w: 3 })
    sim.setUp(b!.id, false)
    for (let i = 0; i < 6 && a!.engine.get(key)?.deleted !== true; i++) {
      await a!.kv.sweep()
      await sim.settle()
    }
    expect(a!.engine.get(key)!.deleted).toBe(true)
    sim.setUp(b!.id, true)
    expect(b!.engine.ttl(key)).toBe(3000) // b missed the expiry
    await a!.kv.get(key, { r: 3 })
    await sim.settle()
    expect(b!.engine.get(key)!.deleted).toBe(true)
    expect(b!.engine.ttl(key)).toBe(0)
  })
})
