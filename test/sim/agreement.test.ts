/**
 * Mesh-wide agreement on the deterministic simulator: a member with another N that joins through a member
 * of an older build (which publishes no N and checks nothing, so it admits anyone) is still never listed by
 * a member of this build, however often the older member gossips or push-pulls it; each member reports the
 * refusal once, not per message. MESHKV_SEED overrides the seed.
 */
import { describe, expect, it } from 'vitest'
import { type MeshAgreement, agreementMeta, compatibility } from '../../src/core/agreement.js'
import { testSwimConfig } from '../../src/core/membership/config.js'
import { RING_HASH_SCHEME } from '../../src/core/ring/hash.js'
import { SimCluster, type SimMember } from './cluster.js'

const seedOr = (fallback: number): number => Number(process.env.MESHKV_SEED ?? fallback)
const config = testSwimConfig()
const base: MeshAgreement = { proto: 2, protoMin: 2, n: 3, minDurable: 1, durableAcks: 1, ringScheme: RING_HASH_SCHEME }

function checking (a: Partial<MeshAgreement> = {}): SimMember {
  const local = { ...base, ...a }
  return { meta: { kind: 'node', vnodes: 256, ...agreementMeta(local) }, options: { compatibility: remote => compatibility(local, remote) } }
}

describe('agreement (simulated)', () => {
  const s1 = seedOr(15)
  it(`never admits an --n 5 member that joined through an older-build member, and reports it once per member (7 members, 30 s, seed ${s1})`, () => {
    const older = SimCluster.idOf(6)
    const olderBuild: SimMember = { meta: { kind: 'node', vnodes: 256, proto: 2 } }
    const sim = SimCluster.formed({ seed: s1, size: 7, config, member: id => (id === older ? olderBuild : checking()) })
    const checkers = sim.ids.filter(id => id !== older)
    sim.run(2_000)
    // Members of this build admit the older one (what it does not publish is taken as agreeing).
    for (const id of checkers) expect(sim.stateOf(id, older)).toBe('alive')

    const bad = SimCluster.idOf(7)
    sim.add(bad, 0, [older], checking({ n: 5 }))
    sim.runUntil(() => sim.stateOf(older, bad) === 'alive', 5_000, `seed ${s1}: the older member admits it`)
    sim.run(sim.now + 30_000) // many gossip rounds and push-pulls (every 2 s)

    for (const id of checkers) {
      expect(sim.stateOf(id, bad), `seed ${s1}: ${id} lists ${bad}`).toBeUndefined()
      expect(sim.stateOf(bad, id), `seed ${s1}: ${bad} lists ${id}`).toBeUndefined()
      expect(sim.nodes.get(id)!.swim.stats.incompatibleIgnored).toBeGreaterThan(0)
    }
    expect(sim.changes.filter(c => (checkers.includes(c.observer) && c.id === bad) || (c.observer === bad && checkers.includes(c.id)))).toEqual([])
    // Each checker reported the newcomer at most once (those that heard of it at all), with both values;
    // the newcomer reported each checker at most once.
    const byChecker = sim.refusals.filter(r => checkers.includes(r.observer))
    expect(byChecker.length).toBeGreaterThan(0)
    expect(byChecker.every(r => r.id === bad && r.reason === 'n=3 here, n=5 there')).toBe(true)
    expect(new Set(byChecker.map(r => r.observer)).size).toBe(byChecker.length)
    const byBad = sim.refusals.filter(r => r.observer === bad)
    expect(byBad.every(r => checkers.includes(r.id) && r.reason === 'n=5 here, n=3 there')).toBe(true)
    expect(new Set(byBad.map(r => r.id)).size).toBe(byBad.length)
    // Nobody was harmed: the mesh of this build and the older member all see each other alive.
    for (const x of [...checkers, older]) for (const y of [...checkers, older]) expect(sim.stateOf(x, y), `seed ${s1}: ${x} sees ${y}`).toBe('alive')
  })
})
