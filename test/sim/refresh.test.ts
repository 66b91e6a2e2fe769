// Heartbeats that refresh instead of writing (src/core/replication/refresh.ts), on the simulated network with
// the wire codec: what a refresh costs (nothing logged, no new version), which replicas get the state instead,
// and that a replica that missed refreshes never expires a service the others saw beat.
import { describe, expect, it } from 'vitest'
import { type ServiceView, beatRecord, parseServices } from '../../src/core/kv/heartbeat.js'
import { DETECTOR_STRETCH } from '../../src/core/replication/health.js'
import { REFRESH_REWRITE_MS } from '../../src/core/replication/refresh.js'
import { stateEquals } from '../../src/core/version/dvv.js'
import { KvSim, type SimNode, degrade, replicasOf, simIds, sweepUntilExpired } from './kv-cluster.js'

const TTL_MS = 3000
const BEAT = { lww: true, ttlMs: TTL_MS }
/** A beat's record without metadata: the same bytes every beat. */
const RECORD = beatRecord(TTL_MS, null, 60_000)


/** The services a replica lists from its own records (its answer to a 'services' request). */
async function servicesOf (n: SimNode): Promise<ServiceView[]> {
  const reply = await n.kv.handle(n.id, { type: 'services' })
  if (reply.type !== 'info') throw new Error(`services answered ${reply.type}`)
  return parseServices(reply.json)
}

/**
 * The replicas of `key` after a beat written to all three and five more that only refreshed it, one a second,
 * while c was unreachable (still down on return): the refreshes c missed changed no version, so nothing
 * anti-entropy or a read could show it is newer; its credits run out first.
 */
async function missedRefreshes (key: string): Promise<Awaited<ReturnType<typeof replicasOf>>> {
  const cluster = await replicasOf(key)
  const { sim, a, b, c } = cluster
  await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
  await sim.settle()
  sim.setUp(c.id, false)
  for (let i = 0; i < 5; i++) {
    sim.clock.advance(1000)
    await a.kv.put(key, RECORD, { ...BEAT, w: 2 })
    await sim.settle()
    for (const n of [a, b]) await n.kv.sweep()
  }
  return cluster
}

describe('kv: heartbeats that only refresh', () => {
  it('a beat of the same record renews every replica\'s credits with nothing logged and no new version, and the service expires once beats stop', async () => {
    const key = 'heartbeat/svc'
    const { sim, a, b, c, expired } = await replicasOf(key)
    await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    await sim.settle()
    const nodes = [a, b, c]
    const states = nodes.map(n => n.engine.state(key))
    const logged = nodes.map(n => n.engine.walBytes())
    // Ten beats a second apart, each replica sweeping every second: 3 credits each, so without the
    // refreshes the key would have expired after the third sweep.
    for (let i = 0; i < 10; i++) {
      sim.clock.advance(1000)
      const put = await a.kv.put(key, RECORD, BEAT)
      expect(put.acks).toBeGreaterThanOrEqual(2)
      await sim.settle()
      for (const n of nodes) await n.kv.sweep()
      await sim.settle()
    }
    expect(expired).toEqual([])
    nodes.forEach((n, i) => {
      expect(n.engine.state(key)).toBe(states[i])
      expect(n.engine.walBytes()).toBe(logged[i])
      expect(n.kv.stats.refreshes).toBe(10)
    })
    // The listing's last beat is the last refresh, on every replica.
    const lastRefresh = a.engine.refreshedWall(key)
    expect(lastRefresh).toBeGreaterThan(0)
    for (const n of nodes) expect((await servicesOf(n))[0]).toMatchObject({ id: 'svc', state: 'alive', lastBeat: lastRefresh })
    // The beats stop: it expires within the TTL and a sweep or two (here as a tombstone: the simulator's
    // engines have no expired-record hook; the record's last beat is a unit test's).
    for (let i = 0; i < 6 && expired.length === 0; i++) {
      sim.clock.advance(1000)
      for (const n of nodes) await n.kv.sweep()
      await sim.settle()
    }
    expect(expired.length).toBeGreaterThanOrEqual(1)
    for (const n of nodes) expect(n.engine.get(key)!.deleted).toBe(true)
    // The next beat revives it with a write (the record is not the alive one any more).
    sim.clock.advance(1000)
    await a.kv.put(key, RECORD, BEAT)
    await sim.settle()
    for (const n of nodes) expect((await servicesOf(n))[0]).toMatchObject({ id: 'svc', state: 'alive' })
    expect(a.kv.stats.refreshes).toBe(10)
  })

  it('a replica that missed the write answers the refresh with what it holds, and the beat is written instead', async () => {
    const key = 'heartbeat/missed'
    const { sim, a, c } = await replicasOf(key)
    sim.setUp(c.id, false)
    await a.kv.put(key, RECORD, { ...BEAT, w: 2 })
    sim.setUp(c.id, true)
    expect(c.engine.state(key)).toBeUndefined()
    const first = a.engine.state(key)
    const put = await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    expect(put.acks).toBe(3)
    await sim.settle()
    expect(a.kv.stats.refreshes).toBe(1)
    expect(c.kv.stats.refreshes).toBe(0)
    // Written: a new version, on every replica.
    expect(a.engine.state(key)).not.toBe(first)
    expect(stateEquals(c.engine.state(key)!, a.engine.state(key)!)).toBe(true)
    expect(c.engine.ttl(key)).toBe(TTL_MS)
  })

  it('a replica holding a newer version (an expiry the coordinator missed) gets the beat written over it: the service is revived at once', async () => {
    const key = 'heartbeat/newer'
    const { sim, a, b, c } = await replicasOf(key)
    await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    await sim.settle()
    // b writes something newer that a does not see (here a plain write of another RECORD, as an expiry
    // written while a was cut off would be).
    sim.setUp(a.id, false)
    sim.clock.advance(1000)
    await b.kv.put(key, beatRecord(TTL_MS, { moved: true }, 60_000), { ...BEAT, w: 2 })
    sim.setUp(a.id, true)
    sim.clock.advance(1000)
    const put = await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    expect(put.acks).toBe(3)
    await sim.settle()
    // The beat is the newest write everywhere, its record the one a beat carried.
    for (const n of [a, b, c]) {
      expect(stateEquals(n.engine.state(key)!, a.engine.state(key)!)).toBe(true)
      expect((await servicesOf(n))[0]).toMatchObject({ state: 'alive', meta: null })
    }
  })

  it('another beat record, a record written REFRESH_REWRITE_MS ago, or a context makes the beat a write', async () => {
    const key = 'heartbeat/rewrite'
    const { sim, a } = await replicasOf(key)
    await a.kv.put(key, beatRecord(TTL_MS, null, 60_000), BEAT)
    await sim.settle()
    const first = a.engine.state(key)
    await a.kv.put(key, beatRecord(TTL_MS, { zone: 'b' }, 60_000), BEAT)
    await sim.settle()
    expect(a.engine.state(key)).not.toBe(first)
    const second = a.engine.state(key)
    await a.kv.put(key, beatRecord(TTL_MS, { zone: 'b' }, 60_000), { ...BEAT, context: (await a.kv.get(key)).context })
    await sim.settle()
    expect(a.engine.state(key)).not.toBe(second)
    const third = a.engine.state(key)
    // Kept alive by refreshes for longer than REFRESH_REWRITE_MS: then one beat writes the record again.
    const refreshes = a.kv.stats.refreshes
    for (let t = 0; t < REFRESH_REWRITE_MS + 2000; t += 1000) {
      sim.clock.advance(1000)
      await a.kv.put(key, beatRecord(TTL_MS, { zone: 'b' }, 60_000), BEAT)
      await sim.settle()
    }
    expect(a.engine.state(key)).not.toBe(third)
    expect(a.kv.stats.refreshes - refreshes).toBeGreaterThan(REFRESH_REWRITE_MS / 1000 - 5)
  })

  it('a replica that missed the refreshes asks the others before expiring, and keeps the service they saw beat', async () => {
    const key = 'heartbeat/cut-off'
    const { sim, a, b, c, expired } = await missedRefreshes(key)
    sim.setUp(c.id, true)
    for (let i = 0; i < 4; i++) {
      await c.kv.sweep()
      await sim.settle()
    }
    expect(expired).toEqual([])
    expect(c.engine.refreshedWall(key)).toBe(a.engine.refreshedWall(key))
    expect((await servicesOf(c))[0]).toMatchObject({ state: 'alive', lastBeat: a.engine.refreshedWall(key) })
    // Without beats, the credits it took run out with the TTL of that last beat: it expires as usual.
    await sweepUntilExpired(sim, [a, b, c], expired, 6)
    expect(expired.length).toBeGreaterThanOrEqual(1)
  })

  it('while another replica is degraded, a replica that learns of a refresh it missed holds the key DETECTOR_STRETCH TTLs from it, rather than asking again every few sweeps', async () => {
    const key = 'heartbeat/held'
    const { sim, a, b, c, expired } = await missedRefreshes(key)
    // a, the coordinator, is overloaded (an overloaded peer also notes the beats it refuses, KvNode.refreshRefused).
    degrade(sim, a.id)
    sim.setUp(c.id, true)
    const lastRefresh = a.engine.refreshedWall(key)
    for (let i = 0; i < 4 && c.engine.expiryHeldUntil(key) === 0; i++) {
      await c.kv.sweep()
      await sim.settle()
    }
    expect(expired).toEqual([])
    // Held until DETECTOR_STRETCH TTLs after the refresh a took (on c's clock, which is the simulator's), not
    // given the second or two left of that TTL, after which it would ask a and b again.
    expect(c.engine.expiryHeldUntil(key)).toBeGreaterThanOrEqual(lastRefresh + DETECTOR_STRETCH * TTL_MS - 1000)
    // And c remembers that beat (without credits for it): were a's answer lost at the next check, the hold
    // would still run from it.
    expect(c.engine.lastAliveWall(key)).toBe(lastRefresh)
    expect(c.kv.stats.expiryPostponedDegraded).toBeGreaterThanOrEqual(1)
    // No more beats: once the hold is over and a is healthy again, the service expires.
    await sweepUntilExpired(sim, [a, b, c], expired, 30)
    expect(expired.length).toBeGreaterThanOrEqual(1)
  })

  it('a refresh target that does not answer within its hedge delay gets the beat written instead, with the write\'s stand-in', async () => {
    const key = 'heartbeat/silent'
    const sim = await KvSim.create(simIds(4))
    const [a, b, c] = sim.primaries(key).map(id => sim.node(id)) as [SimNode, SimNode, SimNode]
    await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    await sim.settle()
    const first = a.engine.state(key)
    // b stays up for SWIM but answers nothing: W=3 needs an answer for it, so its hedge fires.
    sim.faults.silent.add(b.id)
    const put = await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    expect(put.acks).toBe(3)
    // Written (a new version), which the stand-in and c hold: no ack came from a copy of the old version.
    expect(a.engine.state(key)).not.toBe(first)
    expect(stateEquals(c.engine.state(key)!, a.engine.state(key)!)).toBe(true)
    expect(a.kv.stats.hedged).toBeGreaterThan(0)
  })

  it('a replica older than refreshes (ERR_UNSUPPORTED) gets the beat written, and later beats are writes while it is remembered', async () => {
    const key = 'heartbeat/older'
    const { sim, a, b } = await replicasOf(key)
    sim.faults.older.set(b.id, new Set(['refresh', 'beat-check']))
    await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    await sim.settle()
    const unsupported = sim.faults.stats.unsupported
    const first = a.engine.state(key)
    const put = await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    expect(put.acks).toBe(3)
    expect(sim.faults.stats.unsupported).toBe(unsupported + 1)
    expect(a.kv.stats.refreshes).toBe(1)
    // Written after all: b's credits are renewed by the write, as before refreshes existed.
    const written = a.engine.state(key)
    expect(written).not.toBe(first)
    await sim.settle()
    expect(stateEquals(b.engine.state(key)!, written!)).toBe(true)
    sim.clock.advance(1000)
    await a.kv.put(key, RECORD, { ...BEAT, w: 3 })
    await sim.settle()
    // A write: b's credits are renewed by it, as before refreshes existed.
    expect(a.engine.state(key)).not.toBe(written)
    expect(a.kv.stats.refreshes).toBe(1)
    expect(sim.faults.stats.unsupported).toBe(unsupported + 1)
    expect(stateEquals(b.engine.state(key)!, a.engine.state(key)!)).toBe(true)
  })
})
