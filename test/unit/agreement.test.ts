// Mesh-wide agreement (src/core/agreement.ts): which members can share a mesh, and the SWIM machine's
// refusal of the others (src/core/membership/swim.ts) on a join, in a push-pull, and in third parties' news.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type MeshAgreement, agreementMeta, compatibility, mismatches } from '../../src/core/agreement.js'
import { SeededRng } from '../../src/core/env.js'
import { testSwimConfig } from '../../src/core/membership/config.js'
import { type Effect, type Meta, REFUSED_MAX, Swim, type SwimMessage, type Update } from '../../src/core/membership/swim.js'
import { RING_HASH_SCHEME } from '../../src/core/ring/hash.js'

const base: MeshAgreement = { proto: 2, protoMin: 2, n: 3, minDurable: 1, durableAcks: 1, ringScheme: RING_HASH_SCHEME }
const meta = (a: Partial<MeshAgreement> = {}): Meta => ({ kind: 'node', vnodes: 256, ...agreementMeta({ ...base, ...a }) })

describe('agreement: compatibility(local, remote)', () => {
  it('agrees with a member of the same settings', () => {
    expect(compatibility(base, meta())).toBeNull()
    expect(mismatches(base, meta())).toEqual([])
  })

  it('names both values of every setting that differs, this side first', () => {
    expect(compatibility(base, meta({ n: 5 }))).toBe('n=3 here, n=5 there')
    expect(compatibility({ ...base, n: 5 }, meta())).toBe('n=5 here, n=3 there')
    expect(compatibility(base, meta({ minDurable: 2 }))).toBe('minDurable=1 here, minDurable=2 there')
    expect(compatibility(base, meta({ durableAcks: 0 }))).toBe('durableAcks=1 here, durableAcks=0 there')
    expect(compatibility(base, meta({ ringScheme: 'sha1/1' }))).toBe('ring="xxh64-top53/1" here, ring="sha1/1" there')
    expect(mismatches(base, meta({ n: 5, minDurable: 0, proto: 3, protoMin: 3 })).map(m => m.setting)).toEqual(['proto', 'n', 'minDurable'])
  })

  it('accepts another protocol version only when each side still works with the other\'s', () => {
    expect(compatibility(base, meta({ proto: 3, protoMin: 3 }))).toBe('proto=2 here, proto=3 there')
    expect(compatibility(base, meta({ proto: 1, protoMin: 1 }))).toBe('proto=2 here, proto=1 there')
    // A future build that still speaks 2 can share the mesh; one that speaks 2..3 meets one that needs 3.
    expect(compatibility(base, meta({ proto: 3, protoMin: 2 }))).toBeNull()
    expect(compatibility({ ...base, proto: 3, protoMin: 2 }, meta({ proto: 4, protoMin: 3 }))).toBeNull()
    expect(compatibility({ ...base, proto: 3, protoMin: 3 }, meta())).toBe('proto=3 here, proto=2 there')
    expect(compatibility({ ...base, proto: 3, protoMin: 2 }, meta({ proto: 4, protoMin: 4 }))).toBe('proto=3 (works with 2..3) here, proto=4 there')
  })

  it('takes what an older build does not publish as agreeing, but a missing protocol version as version 1', () => {
    // The previous build published kind, vnodes and proto only: N, minDurable, durableAcks and ring cannot
    // be compared.
    expect(compatibility(base, { kind: 'node', vnodes: 256, proto: 2 })).toBeNull()
    expect(compatibility(base, { kind: 'node', vnodes: 256, proto: 1 })).toBe('proto=2 here, proto=1 there')
    expect(compatibility(base, { kind: 'node', vnodes: 256 })).toBe('proto=2 here, proto=1 there')
  })

  it('refuses values of the wrong type or an impossible version range', () => {
    expect(compatibility(base, { ...meta(), n: '3' })).toBe('n=3 here, n="3" there')
    expect(compatibility(base, { ...meta(), proto: 'two' })).not.toBeNull()
    expect(compatibility(base, meta({ proto: 2, protoMin: 3 }))).not.toBeNull()
  })

  it('is symmetric: A refuses B exactly when B refuses A (property)', () => {
    const agreement = fc.record({
      proto: fc.integer({ min: 1, max: 5 }),
      span: fc.integer({ min: 0, max: 2 }),
      n: fc.integer({ min: 1, max: 5 }),
      minDurable: fc.integer({ min: 0, max: 2 }),
      durableAcks: fc.integer({ min: 0, max: 2 }),
      ringScheme: fc.constantFrom(RING_HASH_SCHEME, 'other/1')
    }).map(({ proto, span, ...rest }): MeshAgreement => ({ ...rest, proto, protoMin: Math.max(1, proto - span) }))
    fc.assert(fc.property(agreement, agreement, (a, b) => {
      expect(compatibility(a, agreementMeta(b)) === null).toBe(compatibility(b, agreementMeta(a)) === null)
      expect(mismatches(a, agreementMeta(b)).length).toBe(mismatches(b, agreementMeta(a)).length)
    }))
  })
})

// ------------------------------------------------------------ the SWIM machine with the check

const config = testSwimConfig()

function machine (id: string, a: Partial<MeshAgreement> = {}): Swim {
  const local = { ...base, ...a }
  return new Swim(id, meta(a), 0, config, new SeededRng(7), 0, { compatibility: remote => compatibility(local, remote) })
}

const alive = (id: string, incarnation: number, m: Meta): Update => ({ id, incarnation, state: 'alive', meta: m })
const refusals = (effects: Effect[]): Array<Extract<Effect, { type: 'refused' }>> => effects.filter((e): e is Extract<Effect, { type: 'refused' }> => e.type === 'refused')
const sends = (effects: Effect[]): Array<Extract<Effect, { type: 'send' }>> => effects.filter((e): e is Extract<Effect, { type: 'send' }> => e.type === 'send')

/** Delivers every send effect between the machines given, until none is left (bounded). */
function deliver (machines: Map<string, Swim>, from: string, effects: Effect[], nowMs: number): Effect[] {
  const seen: Effect[] = [...effects]
  const queue = sends(effects).map(e => ({ from, to: e.to, message: e.message }))
  for (let i = 0; i < 100 && queue.length > 0; i++) {
    const { from: f, to, message } = queue.shift()!
    const target = machines.get(to)
    if (target === undefined) continue
    const out = target.receive(f, message, nowMs)
    seen.push(...out)
    queue.push(...sends(out).map(e => ({ from: to, to: e.to, message: e.message })))
  }
  return seen
}

describe('agreement: the SWIM machine refuses members whose settings differ', () => {
  it('a join by a member with another N is refused whole, answered with the seed\'s own record, and refused back', () => {
    const seed = machine('seed')
    const other = machine('other')
    seed.receive('other', { type: 'push-pull', join: true, reply: false, members: [alive('other', 0, meta())] }, 0)
    expect(seed.view('other')?.state).toBe('alive')
    const joiner = machine('joiner', { n: 5 })
    const machines = new Map([['seed', seed], ['joiner', joiner], ['other', other]])
    const joinEffects = joiner.join(['seed'])
    const [join] = sends(joinEffects)
    const atSeed = seed.receive('joiner', join!.message, 10)
    // The seed refuses it, reports why once, and answers with its own record only.
    expect(refusals(atSeed)).toEqual([{ type: 'refused', id: 'joiner', meta: meta({ n: 5 }), reason: 'n=3 here, n=5 there', direct: true }])
    const [answer] = sends(atSeed)
    expect(answer!.to).toBe('joiner')
    expect(answer!.message).toMatchObject({ type: 'push-pull', reply: true })
    expect((answer!.message as Extract<SwimMessage, { type: 'push-pull' }>).members.map(u => u.id)).toEqual(['seed'])
    expect(seed.view('joiner')).toBeUndefined()
    expect(seed.refusal('joiner')).toBe('n=3 here, n=5 there')
    expect(seed.stats.incompatible).toBe(1)
    // The joiner refuses the answer: it learns no member, and reports why, with both values.
    const atJoiner = joiner.receive('seed', answer!.message, 20)
    expect(refusals(atJoiner)).toEqual([{ type: 'refused', id: 'seed', meta: seed.view('seed')!.meta, reason: 'n=5 here, n=3 there', direct: true }])
    expect(sends(atJoiner)).toEqual([]) // an answer is not answered
    expect(joiner.list().map(m => m.id)).toEqual(['joiner'])
    // Retrying changes nothing and is not reported again; neither side ever lists the other.
    const again = deliver(machines, 'joiner', joiner.join(['seed']), 30)
    expect(refusals(again)).toEqual([])
    expect(seed.stats.incompatible).toBe(1)
    expect(joiner.stats.incompatible).toBe(1)
    for (let t = 0; t < 20_000; t += 50) {
      deliver(machines, 'seed', seed.tick(t), t)
      deliver(machines, 'other', other.tick(t), t)
      deliver(machines, 'joiner', joiner.tick(t), t)
    }
    expect(seed.view('joiner')).toBeUndefined()
    expect(other.view('joiner')).toBeUndefined()
    expect(joiner.list().map(m => m.id)).toEqual(['joiner'])
    expect(seed.view('other')?.state).toBe('alive')
  })

  it('ignores every other message of a refused member', () => {
    const seed = machine('seed')
    seed.receive('bad', { type: 'push-pull', join: true, reply: false, members: [alive('bad', 0, meta({ minDurable: 2 }))] }, 0)
    const ignoredBefore = seed.stats.incompatibleIgnored
    expect(seed.receive('bad', { type: 'ping', seq: 1, updates: [alive('x', 0, meta())] }, 10)).toEqual([])
    expect(seed.view('x')).toBeUndefined()
    expect(seed.stats.incompatibleIgnored).toBe(ignoredBefore + 1)
  })

  it('drops news of an incompatible member from a third party, and reports it once, not per message', () => {
    const a = machine('a')
    a.receive('b', { type: 'push-pull', join: true, reply: false, members: [alive('b', 0, meta())] }, 0)
    const gossip: SwimMessage = { type: 'gossip', updates: [alive('c', 0, meta({ n: 5 })), alive('d', 0, meta())] }
    const first = a.receive('b', gossip, 10)
    expect(refusals(first)).toEqual([{ type: 'refused', id: 'c', meta: meta({ n: 5 }), reason: 'n=3 here, n=5 there', direct: false }])
    expect(a.view('c')).toBeUndefined()
    expect(a.view('d')?.state).toBe('alive') // the rest of the message is taken
    expect(refusals(a.receive('b', gossip, 20))).toEqual([])
    expect(refusals(a.receive('b', { type: 'gossip', updates: [alive('c', 3, meta({ n: 5 }))] }, 30))).toEqual([])
    expect(refusals(a.receive('b', { type: 'push-pull', join: false, reply: true, members: [alive('b', 0, meta()), alive('c', 4, meta({ n: 5 }))] }, 40))).toEqual([])
    expect(a.view('c')).toBeUndefined()
    expect(a.stats.incompatible).toBe(1)
    // Another reason is news again.
    expect(refusals(a.receive('b', { type: 'gossip', updates: [alive('c', 5, meta({ n: 4 }))] }, 50)).map(e => e.reason)).toEqual(['n=3 here, n=4 there'])
    // Restarted with the mesh's settings (a higher incarnation), it is admitted.
    a.receive('b', { type: 'gossip', updates: [alive('c', 6, meta())] }, 60)
    expect(a.view('c')?.state).toBe('alive')
    expect(a.refusal('c')).toBeUndefined()
  })

  it('takes a known member that comes back with other settings out of the ring (as left), and readmits it when they agree again', () => {
    const a = machine('a')
    a.receive('b', { type: 'push-pull', join: true, reply: false, members: [alive('b', 0, meta()), alive('c', 0, meta())] }, 0)
    expect(a.view('c')?.state).toBe('alive')
    // Stale news of c (its old record) changes nothing; its restart with --n 5 does.
    expect(refusals(a.receive('b', { type: 'gossip', updates: [alive('c', 0, meta({ n: 5 }))] }, 5))).toEqual([])
    const effects = a.receive('c', { type: 'push-pull', join: true, reply: false, members: [alive('c', 1, meta({ n: 5 }))] }, 10)
    expect(refusals(effects).map(e => e.id)).toEqual(['c'])
    expect(effects).toContainEqual(expect.objectContaining({ type: 'change', previous: 'alive', member: expect.objectContaining({ id: 'c', state: 'left' }) }))
    expect(a.view('c')?.state).toBe('left')
    // Others' older news of it does not bring it back, and it is not gossiped to.
    a.receive('b', { type: 'gossip', updates: [alive('c', 1, meta({ n: 5 }))] }, 20)
    expect(a.view('c')?.state).toBe('left')
    a.receive('c', { type: 'push-pull', join: true, reply: false, members: [alive('c', 2, meta())] }, 30)
    expect(a.view('c')?.state).toBe('alive')
  })

  it('without a compatibility check admits every member (the machine alone knows no settings)', () => {
    const a = new Swim('a', meta(), 0, config, new SeededRng(1), 0)
    a.receive('b', { type: 'push-pull', join: true, reply: false, members: [alive('b', 0, meta({ n: 5 }))] }, 0)
    expect(a.view('b')?.state).toBe('alive')
  })

  it(`remembers at most REFUSED_MAX (${REFUSED_MAX}) refused members, forgetting the oldest first`, () => {
    const a = machine('a')
    for (let i = 0; i <= REFUSED_MAX; i++) a.receive('b', { type: 'gossip', updates: [alive(`x${i}`, 0, meta({ n: 5 }))] }, i)
    expect(a.refusal('x0')).toBeUndefined()
    expect(a.refusal(`x${REFUSED_MAX}`)).toBe('n=3 here, n=5 there')
    expect(a.stats.incompatible).toBe(REFUSED_MAX + 1)
  })
})
