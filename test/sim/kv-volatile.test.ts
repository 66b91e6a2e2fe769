// Tabs among the replicas: randomized runs with volatile members that vanish (kv-random.ts, runVolatileSeed),
// and the durable-acknowledgement rule when no durable member is up.
import { describe, expect, it } from 'vitest'
import { NoDurableReplicaError } from '../../src/core/errors.js'
import { KvSim } from './kv-cluster.js'
import { BUG, FIRST_SEED, ONE_SEED, SEEDS, VOLATILE_STEPS, runVolatileSeed } from './kv-random.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('kv: volatile replicas (tabs) that vanish', () => {
  const seeds = ONE_SEED !== undefined ? [Number(ONE_SEED)] : Array.from({ length: SEEDS }, (_, i) => FIRST_SEED + i)
  it(`${seeds.length} seeds x ${VOLATILE_STEPS} events: 3 durable and 6 volatile members; volatile ones reload or lose their storage and are replaced; no acknowledged write is lost${BUG === undefined ? '' : ` (bug injected: ${BUG})`}`, async () => {
    const failed: Array<{ seed: number; violations: string[] }> = []
    let acked = 0
    let writes = 0
    let replaced = 0
    for (const seed of seeds) {
      const result = await runVolatileSeed(seed)
      acked += result.acked
      writes += result.writes
      replaced += result.replaced
      if (result.violations.length > 0) failed.push({ seed, violations: result.violations })
    }
    const report = failed.map(f => `seed ${f.seed} (replay: MESHKV_SIM_SEED=${f.seed}): ${f.violations.slice(0, 3).join('; ')}`)
    console.log(`kv volatile: ${seeds.length} seeds, ${writes} writes, ${acked} acknowledged, ${replaced} volatile members lost their storage; ${failed.length} seeds failed${failed.length > 0 ? `: ${failed.slice(0, 300).map(f => f.seed).join(', ')}` : ''}`)
    // The run must exercise what it claims: writes acknowledged and volatile members replaced.
    expect(acked).toBeGreaterThan(seeds.length * 20)
    expect(replaced).toBeGreaterThan(seeds.length)
    expect(report).toEqual([])
  }, 600_000)

  it('with every durable member down, writes fail with NoDurableReplicaError and no replica takes them', async () => {
    const place = (id: string): { location: string; durable: boolean } => ({ location: id.startsWith('d') ? 'host' : 'browser', durable: id.startsWith('d') })
    const sim = await KvSim.create(['d0', 'd1', 'v0', 'v1', 'v2'], { n: 3, r: 2, w: 2 }, { placement: place })
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`)
    // While a durable member is up every write is acknowledged, and by a durable replica among its W.
    for (const key of keys) await expect(sim.node('v0').kv.put(key, enc('before'))).resolves.toMatchObject({ acks: 2 })
    for (const key of keys) expect(sim.ring().primaries(sim.ring().position(key), 3).some(id => id.startsWith('d'))).toBe(true)
    sim.setUp('d0', false)
    sim.setUp('d1', false)
    for (const key of keys) {
      for (const via of ['v0', 'v1', 'v2']) {
        const error = await sim.node(via).kv.put(key, enc(`after via ${via}`)).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(NoDurableReplicaError)
        expect((error as NoDurableReplicaError).code).toBe('ERR_NO_DURABLE_REPLICA')
        expect((error as NoDurableReplicaError).message).toContain('no durable member')
      }
      await expect(sim.node('v1').kv.delete(key)).rejects.toBeInstanceOf(NoDurableReplicaError)
    }
    // Nothing was written anywhere: every tab still holds only the acknowledged value (or nothing).
    for (const via of ['v0', 'v1', 'v2']) {
      for (const key of keys) {
        const values = sim.node(via).engine.get(key)?.values.map(v => new TextDecoder().decode(v.value!)) ?? []
        expect(values.every(v => v === 'before')).toBe(true)
      }
    }
    // Reads still take any R replies.
    await expect(sim.node('v0').kv.get('k0')).resolves.toMatchObject({ replies: 2 })
  })
})

describe('kv: hedged requests', () => {
  const ids = ['a', 'b', 'c', 'd', 'e']
  // Replica requests time out after 5 s of simulated time; hedges wait 4x a replica's p99, within 5..50 ms.
  const config = { n: 3, r: 2, w: 2, requestTimeoutMs: 5000, hedgeMinMs: 5, hedgeMaxMs: 50 }

  it('a replica that went silent while still listed up costs a write and a read one hedge delay, not the request timeout: a stand-in answers for it', async () => {
    const sim = await KvSim.create(ids, config)
    // Round trips to learn every replica's p99.
    for (let i = 0; i < 60; i++) await sim.node(ids[i % 5]!).kv.put(`warm-${i}`, enc('x'))
    const key = 'hedged'
    const [coordinator, other, silent] = sim.primaries(key) as [string, string, string]
    sim.faults.silent.add(silent)
    const t0 = sim.clock.nowMs()
    // W=3 needs the silent replica's ack, or a stand-in's.
    await expect(sim.node(coordinator).kv.put(key, enc('v'), { w: 3 })).resolves.toMatchObject({ acks: 3 })
    const writeMs = sim.clock.nowMs() - t0
    expect(writeMs).toBeLessThan(500)
    expect(sim.node(coordinator).kv.stats.hedged).toBeGreaterThanOrEqual(1)
    const standIns = [...sim.holders(key).keys()].filter(id => ![coordinator, other, silent].includes(id))
    expect(standIns).toHaveLength(1)
    // R=3: the read's stand-in answers too.
    const t1 = sim.clock.nowMs()
    await expect(sim.node(coordinator).kv.get(key, { r: 3 })).resolves.toMatchObject({ replies: 3 })
    expect(sim.clock.nowMs() - t1).toBeLessThan(500)
    // A missing key: not-found answers wait for every replica asked, the silent one until its request
    // times out (a stand-in's not-found cannot speak for it).
    const missing = Array.from({ length: 200 }, (_, i) => `missing-${i}`).find(k => sim.primaries(k)[0] === coordinator && sim.primaries(k).includes(silent))!
    const t2 = sim.clock.nowMs()
    await expect(sim.node(coordinator).kv.get(missing, { r: 1 })).resolves.toMatchObject({ values: [] })
    expect(sim.clock.nowMs() - t2).toBeGreaterThanOrEqual(5000)
    await sim.settle()
  })

  it('a key only a slow replica holds reads back with r=1: its hedge and the empty answers do not make a not-found', async () => {
    const sim = await KvSim.create(ids, config)
    for (let i = 0; i < 60; i++) await sim.node(ids[i % 5]!).kv.put(`warm-${i}`, enc('x'))
    const key = Array.from({ length: 200 }, (_, i) => `only-${i}`).find(k => !sim.primaries(k).includes('a'))!
    const [holder] = sim.primaries(key) as [string]
    // Only the holder has the key (in its engine alone), and it answers 400 ms late: far past its hedge.
    sim.node(holder).engine.writeLocal(key, enc('held'), { durability: 'async' })
    sim.faults.slow.set(holder, 400)
    for (const via of ['a', ...sim.primaries(key).filter(id => id !== holder)]) {
      const got = await sim.node(via).kv.get(key, { r: 1 })
      expect(got.values.map(v => new TextDecoder().decode(v))).toEqual(['held'])
    }
    expect([...sim.nodes.values()].reduce((sum, n) => sum + n.kv.stats.hedged, 0)).toBeGreaterThan(0)
    sim.faults.slow.clear()
    await sim.settle()
  })

  it('with hedging off (hedgeMultiplier 0) the same write waits for the request timeout', async () => {
    const sim = await KvSim.create(ids, { ...config, hedgeMultiplier: 0 })
    const key = 'hedged'
    const [coordinator, , silent] = sim.primaries(key) as [string, string, string]
    sim.faults.silent.add(silent)
    const t0 = sim.clock.nowMs()
    await expect(sim.node(coordinator).kv.put(key, enc('v'), { w: 3 })).rejects.toThrow(/3 replicas|reached 2/)
    expect(sim.clock.nowMs() - t0).toBeGreaterThanOrEqual(5000)
  })
})
