// Property tests of the location- and durability-aware placement in src/core/ring/ring.ts (see the rules in
// the comment at the top of that file). Memberships are random: 1-12 members with ids of their own, a
// location drawn from a pool of four (so locations repeat) or none (a location of its own), durable or
// volatile, 16 or 64 vnodes; minDurable 0-3, N 1-5. The location rule is checked against brute force (every
// choice of members that keeps the durable rule) on small memberships at every arc of the ring. Every property
// runs with a fixed seed.
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { Ring, type RingHash, type RingMember } from '../../src/core/ring/ring.js'

let hash: RingHash
beforeAll(async () => { hash = await loadRingHash() })

const SEED = 42
const LOCATIONS = ['zone-a', 'zone-b', 'zone-c', 'zone-d']

const locationOf = (m: RingMember): string => m.location ?? m.id
const isDurable = (m: RingMember): boolean => m.durable !== false

interface MemberShape { id: string; vnodes: number; location: string | undefined; durable: boolean | undefined }
const toMember = ({ id, vnodes, location, durable }: MemberShape): RingMember =>
  ({ id, vnodes, ...(location === undefined ? {} : { location }), ...(durable === undefined ? {} : { durable }) })

/** A member: a location from the pool (or, one time in four, none: a location of its own), durable or not. */
const memberArb: fc.Arbitrary<RingMember> = fc.record({
  id: fc.stringMatching(/^peer-[a-z0-9]{1,6}$/),
  vnodes: fc.constantFrom(16, 64),
  location: fc.option(fc.constantFrom(...LOCATIONS), { nil: undefined, freq: 4 }),
  durable: fc.option(fc.boolean(), { nil: undefined, freq: 4 })
}).map(toMember)

const membersArb = (minLength: number, maxLength: number): fc.Arbitrary<RingMember[]> =>
  fc.uniqueArray(memberArb, { minLength, maxLength, selector: m => m.id })

/** Random positions (fast-check leans to the ends, 0 and 2^53 - 1), keys, and picks of token positions. */
const positionsArb = fc.record({
  positions: fc.array(fc.maxSafeNat(), { minLength: 6, maxLength: 6 }),
  keys: fc.array(fc.string({ maxLength: 12 }), { minLength: 4, maxLength: 4 }),
  tokenPicks: fc.array(fc.nat(), { minLength: 3, maxLength: 3 })
})

type Positions = { positions: number[]; keys: string[]; tokenPicks: number[] }

/** Positions to look at on `ring`: random ones, hashed keys, and exactly on and just after some tokens. */
function positionsOn (ring: Ring, p: Positions): number[] {
  const tokens = ring.tokenList()
  const onTokens = p.tokenPicks.flatMap(i => { const t = tokens[i % tokens.length]![0]; return [t, t + 1] })
  return [...p.positions, ...p.keys.map(k => ring.position(k)), ...onTokens]
}

const caseArb = fc.record({
  members: membersArb(1, 12),
  minDurable: fc.integer({ min: 0, max: 3 }),
  n: fc.integer({ min: 1, max: 5 }),
  at: positionsArb
})

const build = (members: readonly RingMember[], minDurable: number): Ring => Ring.build(members, hash, { minDurable })

function countBy<T> (items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>()
  for (const item of items) {
    const k = key(item)
    const list = out.get(k)
    if (list === undefined) out.set(k, [item]); else list.push(item)
  }
  return out
}

/** The ring's members in the order a walk clockwise from `position` meets them (each once): tokenList() alone. */
function clockwise (ring: Ring, position: number): string[] {
  const tokens = ring.tokenList()
  let start = tokens.findIndex(([t]) => t >= position)
  if (start === -1) start = 0
  const out: string[] = []
  const seen = new Set<string>()
  for (let k = 0; k < tokens.length; k++) {
    const id = tokens[(start + k) % tokens.length]![1]
    if (!seen.has(id)) { seen.add(id); out.push(id) }
  }
  return out
}

/**
 * `ids` (in clockwise order) spread over locations: the first of each location not in `used`, in order, then
 * the others in order.
 */
function locationFirst (ring: Ring, ids: readonly string[], used: ReadonlySet<string> = new Set()): string[] {
  const usedLocations = new Set(used)
  const firsts: string[] = []
  const rest: string[] = []
  for (const id of ids) {
    const location = locationOf(ring.member(id)!)
    if (usedLocations.has(location)) rest.push(id)
    else { usedLocations.add(location); firsts.push(id) }
  }
  return [...firsts, ...rest]
}

/** Calls `visit` with every `k`-element subset of `items` (the same array, refilled: copy it to keep it). */
function forEachSubset<T> (items: readonly T[], k: number, visit: (subset: readonly T[]) => void): void {
  const chosen: T[] = []
  const go = (from: number): void => {
    if (chosen.length === k) { visit(chosen); return }
    for (let i = from; i <= items.length - (k - chosen.length); i++) {
      chosen.push(items[i]!)
      go(i + 1)
      chosen.pop()
    }
  }
  go(0)
}

/**
 * By brute force: the most locations `fixed` together with `k` of `candidates` can span, over every choice of
 * the `k` whose whole list (`fixed` included) holds at least `need` durable members; -1 when none does.
 */
function bestSpan (fixed: readonly RingMember[], candidates: readonly RingMember[], k: number, need: number): number {
  const fixedDurable = fixed.filter(isDurable).length
  const fixedLocations = fixed.map(locationOf)
  let best = -1
  forEachSubset(candidates, k, subset => {
    if (fixedDurable + subset.filter(isDurable).length < need) return
    best = Math.max(best, new Set([...fixedLocations, ...subset.map(locationOf)]).size)
  })
  return best
}

describe('placement: the primaries', () => {
  it('counts the ring\'s locations and durable members, and durableWanted is min(minDurable, durable members, N)', () => {
    fc.assert(fc.property(caseArb, ({ members, minDurable, n }) => {
      const ring = build(members, minDurable)
      const durable = members.filter(isDurable).length
      expect(ring.locationCount).toBe(new Set(members.map(locationOf)).size)
      expect(ring.durableCount).toBe(durable)
      expect(ring.durableWanted(n)).toBe(Math.min(minDurable, durable, n))
    }), { seed: SEED, numRuns: 200 })
  })

  // Rule 1.
  it('are min(N, members) distinct members of the ring', () => {
    fc.assert(fc.property(caseArb, ({ members, minDurable, n, at }) => {
      const ring = build(members, minDurable)
      for (const position of positionsOn(ring, at)) {
        const ids = ring.primaries(position, n)
        expect(ids).toHaveLength(Math.min(n, members.length))
        expect(new Set(ids).size).toBe(ids.length)
        for (const id of ids) expect(ring.member(id)).toBeDefined()
      }
    }), { seed: SEED, numRuns: 200 })
  })

  // Rule 2. Let N' = min(N, members) and D = ring.durableWanted(N). For every position the primaries span as many
  // locations as any N' members of the ring holding at least D durable members can: the most, found by brute force
  // over those choices (the brute-force describe below does the same at every arc of small rings). With L the
  // ring's locations and DL those holding a durable member, that most is min(L, N' - D + min(D, DL)): the durable
  // rule costs locations only where D durable members cannot stand at D distinct locations. explain() gives the
  // primaries and calls a replica 'repeated-location' exactly when an earlier one in the list has its location.
  it('span as many locations as any choice of members that keeps the durable rule', () => {
    let checked = 0
    fc.assert(fc.property(caseArb, ({ members, minDurable, n, at }) => {
      const ring = build(members, minDurable)
      const nPrime = Math.min(n, members.length)
      const D = ring.durableWanted(n)
      const best = bestSpan([], members, nPrime, D)
      const durableLocations = new Set(members.filter(isDurable).map(locationOf)).size
      expect(best).toBe(Math.min(ring.locationCount, nPrime - D + Math.min(D, durableLocations)))
      for (const position of positionsOn(ring, at)) {
        const chosen = ring.primaries(position, n).map(id => ring.member(id)!)
        expect(countBy(chosen, locationOf).size).toBe(best)
        const explained = ring.explain(position, n)
        expect(explained.map(e => e.id)).toEqual(chosen.map(m => m.id))
        explained.forEach((e, i) => {
          const repeated = chosen.slice(0, i).some(m => locationOf(m) === locationOf(chosen[i]!))
          expect(e.reason).toBe(repeated ? 'repeated-location' : 'new-location')
        })
        checked++
      }
    }), { seed: SEED, numRuns: 300 })
    expect(checked).toBeGreaterThan(4000)
  })

  // Rules 2 and 3 exactly, for any membership (the top comment of ring.ts, independent of its code): the D durable
  // places go to the first durable members clockwise, the first durable member of each location before the others;
  // the other places to the rest spread the same way, with the durable places' locations counted as used. The list
  // gives the members at a new location first, then those at a repeated one, each part in clockwise order, and
  // explain() says which is which.
  it('are the durable places first, then the rest spread over locations; new locations listed first, each part clockwise', () => {
    const reference = (ring: Ring, position: number, n: number): Array<{ id: string; reason: string }> => {
      const order = clockwise(ring, position)
      const durable = locationFirst(ring, order.filter(id => ring.isDurable(id))).slice(0, ring.durableWanted(n))
      const used = new Set(durable.map(id => locationOf(ring.member(id)!)))
      const others = locationFirst(ring, order.filter(id => !durable.includes(id)), used).slice(0, Math.min(n, order.length) - durable.length)
      const seen = new Set<string>()
      const fresh: string[] = []
      const repeated: string[] = []
      for (const id of order.filter(id => durable.includes(id) || others.includes(id))) {
        const location = locationOf(ring.member(id)!)
        if (seen.has(location)) repeated.push(id)
        else { seen.add(location); fresh.push(id) }
      }
      return [...fresh.map(id => ({ id, reason: 'new-location' })), ...repeated.map(id => ({ id, reason: 'repeated-location' }))]
    }
    let mixed = 0
    fc.assert(fc.property(caseArb, ({ members, minDurable, n, at }) => {
      const ring = build(members, minDurable)
      const isMixed = ring.durableWanted(n) > 0 && ring.durableCount < members.length
      for (const position of positionsOn(ring, at)) {
        const expected = reference(ring, position, n)
        expect(ring.explain(position, n)).toEqual(expected)
        expect(ring.primaries(position, n)).toEqual(expected.map(e => e.id))
        if (isMixed) mixed++
      }
    }), { seed: SEED, numRuns: 200 })
    expect(mixed).toBeGreaterThan(1000)
  })

  // Rule 2, exactly, where the durable rule cannot bind (D = 0, or every member durable): walking clockwise,
  // the first member of each location in the order met, then the places left to the members skipped for their
  // location, in clockwise order (the top comment of ring.ts in a few lines, independent of its code).
  it('where the durable rule cannot bind, are the first member of each location clockwise, then the rest clockwise', () => {
    const locationWalk = (ring: Ring, position: number, n: number): string[] => locationFirst(ring, clockwise(ring, position)).slice(0, n)
    let checked = 0
    fc.assert(fc.property(caseArb, fc.boolean(), ({ members, minDurable, n, at }, allDurable) => {
      const ring = build(allDurable ? members.map(m => ({ ...m, durable: true })) : members, allDurable ? minDurable : 0)
      for (const position of positionsOn(ring, at)) {
        expect(ring.primaries(position, n)).toEqual(locationWalk(ring, position, n))
        checked++
      }
    }), { seed: SEED, numRuns: 200 })
    expect(checked).toBeGreaterThan(1000)
  })

  // Rule 3.
  it('hold at least min(minDurable, durable members, N) durable members', () => {
    fc.assert(fc.property(caseArb, ({ members, minDurable, n, at }) => {
      const ring = build(members, minDurable)
      const wanted = Math.min(minDurable, members.filter(isDurable).length, n)
      for (const position of positionsOn(ring, at)) {
        const durable = ring.primaries(position, n).filter(id => ring.isDurable(id)).length
        expect(durable).toBeGreaterThanOrEqual(wanted)
      }
    }), { seed: SEED, numRuns: 200 })
  })

  // Rule 7: the reference is the plain Dynamo walk over tokenList(): the first N distinct owners clockwise.
  it('with every member durable and at a location of its own, are the plain clockwise walk', () => {
    const plainWalk = (tokens: Array<[number, string]>, position: number, n: number): string[] => {
      let start = tokens.findIndex(([t]) => t >= position)
      if (start === -1) start = 0
      const out: string[] = []
      for (let k = 0; k < tokens.length && out.length < n; k++) {
        const id = tokens[(start + k) % tokens.length]![1]
        if (!out.includes(id)) out.push(id)
      }
      return out
    }
    const ownLocationArb = fc.uniqueArray(fc.record({
      id: fc.stringMatching(/^peer-[a-z0-9]{1,6}$/),
      vnodes: fc.constantFrom(16, 64),
      // No location (its id), or an explicit one of its own; durable by default or explicitly.
      explicitLocation: fc.boolean(),
      explicitDurable: fc.boolean()
    }), { minLength: 1, maxLength: 12, selector: m => m.id }).map(ms => ms.map(m => toMember({
      id: m.id, vnodes: m.vnodes, location: m.explicitLocation ? `host-of-${m.id}` : undefined, durable: m.explicitDurable ? true : undefined
    })))
    fc.assert(fc.property(ownLocationArb, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 5 }), positionsArb, (members, minDurable, n, at) => {
      const ring = build(members, minDurable)
      const tokens = ring.tokenList()
      for (const position of positionsOn(ring, at)) expect(ring.primaries(position, n)).toEqual(plainWalk(tokens, position, n))
    }), { seed: SEED, numRuns: 200 })
  })
})

// Rule 2 against brute force at every arc of small rings: 1-8 members at locations from a pool of three (or, one
// time in five, one of their own), durable or volatile, 1, 2, 4 or 16 vnodes; minDurable 0-3, N 1-4. The
// primaries change only at tokens, so a position on each token (the arc that ends there) and one past the last
// token cover every arc. For each membership the best a placement can do is found by enumerating every choice of
// members that keeps the durable rule.
describe('placement: as many locations as the rules allow (brute force)', () => {
  const smallArb = fc.record({
    members: fc.uniqueArray(fc.record({
      id: fc.stringMatching(/^m-[a-z0-9]{1,4}$/),
      vnodes: fc.constantFrom(1, 2, 4, 16),
      location: fc.option(fc.constantFrom('A', 'B', 'C'), { nil: undefined, freq: 5 }),
      durable: fc.boolean()
    }).map(toMember), { minLength: 1, maxLength: 8, selector: m => m.id }),
    minDurable: fc.integer({ min: 0, max: 3 }),
    n: fc.integer({ min: 1, max: 4 }),
    // Which members are down, as bit masks over the members' order: three patterns per membership.
    downs: fc.array(fc.nat({ max: 255 }), { minLength: 3, maxLength: 3 })
  })
  const everyArc = (ring: Ring): number[] => {
    const tokens = ring.tokenList().map(([t]) => t)
    return [...tokens, tokens[tokens.length - 1]! + 1]
  }
  /** Where the walk meets a volatile member before a durable one at its location, with a durable place to fill. */
  const contested = (ring: Ring, position: number, n: number): boolean => {
    if (ring.durableWanted(n) === 0) return false
    const volatileSeen = new Set<string>()
    for (const id of clockwise(ring, position)) {
      const location = locationOf(ring.member(id)!)
      if (!ring.isDurable(id)) volatileSeen.add(location)
      else if (volatileSeen.has(location)) return true
    }
    return false
  }

  it('the primaries span as many locations as any min(N, members) members holding durableWanted(N) durable ones', () => {
    let arcs = 0
    let contestedArcs = 0
    let binding = 0
    fc.assert(fc.property(smallArb, ({ members, minDurable, n }) => {
      const ring = build(members, minDurable)
      const D = ring.durableWanted(n)
      const nPrime = Math.min(n, members.length)
      const best = bestSpan([], members, nPrime, D)
      const durableLocations = new Set(members.filter(isDurable).map(locationOf)).size
      expect(best).toBe(Math.min(ring.locationCount, nPrime - D + Math.min(D, durableLocations)))
      for (const position of everyArc(ring)) {
        const chosen = ring.primaries(position, n).map(id => ring.member(id)!)
        expect(chosen.filter(isDurable).length).toBeGreaterThanOrEqual(D)
        expect(countBy(chosen, locationOf).size).toBe(best)
        arcs++
        if (contested(ring, position, n)) contestedArcs++
        if (best < Math.min(nPrime, ring.locationCount)) binding++
      }
    }), { seed: SEED, numRuns: 1500 })
    expect(arcs).toBeGreaterThan(20000)
    // The shape of the counterexample below (a volatile member met before a durable one at its location) must
    // come up often, or the brute force proves little.
    expect(contestedArcs).toBeGreaterThan(5000)
    // So must arcs where the durable rule does cost locations (D durable members at fewer than D locations).
    expect(binding).toBeGreaterThan(200)
  })

  // The up primaries stay where they are, so the list can only choose its fallbacks: among the up members beyond
  // the primaries, as many as it has, holding min(minDurable, up durable members, N) durable members in the whole
  // list. It spans as many locations as any such choice. (Not as many as any choice of up members at all: with the
  // up primaries kept, a durable place left by a down primary can force a fallback to a used location. With N = 2,
  // minDurable 1 and a walk meeting a (A, volatile), b (B, durable), c (A, durable), d (C, volatile), the primaries
  // are [a, b]; with b down the list is [a, c], one location, though c and d would span two.)
  it('the preference list spans as many locations as any choice of its fallbacks among the up members beyond the primaries', () => {
    let someDown = 0
    fc.assert(fc.property(smallArb, ({ members, minDurable, n, downs }) => {
      const ring = build(members, minDurable)
      for (const mask of downs) {
        // The best depends on the position only through the primaries: computed once per set of primaries.
        const bestFor = new Map<string, number>()
        const downIds = new Set(members.filter((_, i) => (mask & (1 << i)) !== 0).map(m => m.id))
        const isUp = (id: string): boolean => !downIds.has(id)
        const up = members.filter(m => isUp(m.id))
        const need = Math.min(minDurable, up.filter(isDurable).length, n)
        for (const position of everyArc(ring)) {
          const primaries = ring.primaries(position, n)
          const list = ring.preferenceList(position, n, isUp).map(e => ring.member(e.id)!)
          const upPrimaries = primaries.filter(isUp).map(id => ring.member(id)!)
          const candidates = up.filter(m => !primaries.includes(m.id))
          expect(list).toHaveLength(Math.min(n, up.length))
          expect(list.filter(isDurable).length).toBeGreaterThanOrEqual(need)
          const key = primaries.join(' ')
          let best = bestFor.get(key)
          if (best === undefined) bestFor.set(key, best = bestSpan(upPrimaries, candidates, list.length - upPrimaries.length, need))
          expect(countBy(list, locationOf).size).toBe(best)
          if (upPrimaries.length < primaries.length && list.length > upPrimaries.length) someDown++
        }
      }
    }), { seed: SEED, numRuns: 300 })
    expect(someDown).toBeGreaterThan(5000)
  })

  // The counterexample that found the one-walk version of the rules wanting: a (location A, durable), g (A,
  // volatile), c (D, volatile), one vnode each, N = 2, minDurable 1. Where the walk meets g, c, a in that order
  // (with xxhash, the positions in (214372496554936, 2214702977870016], after a's token up to g's), it took g,
  // then had to keep c out for the durable place and took a: [g, a], both at A, though [a, c] keeps both rules.
  // The positions come from tokenList(), so the case stays this case whatever the hash.
  it('regression: a@A durable, g@A and c@D volatile, N = 2, minDurable 1 give a and c at every position', () => {
    const ring = build([
      { id: 'a', vnodes: 1, location: 'A' },
      { id: 'g', vnodes: 1, location: 'A', durable: false },
      { id: 'c', vnodes: 1, location: 'D', durable: false }
    ], 1)
    const tokens = ring.tokenList()
    const aToken = tokens.find(([, id]) => id === 'a')![0]
    const gToken = tokens.find(([, id]) => id === 'g')![0]
    // The arc after a's token up to g's, its ends and middle: the walk meets g, c, a there.
    const arc = gToken > aToken ? [aToken + 1, Math.floor((aToken + gToken) / 2), gToken] : [aToken + 1, 0, gToken]
    for (const position of arc) {
      expect(clockwise(ring, position)).toEqual(['g', 'c', 'a'])
      expect([...ring.primaries(position, 2)].sort()).toEqual(['a', 'c'])
      expect(ring.explain(position, 2).map(e => e.reason)).toEqual(['new-location', 'new-location'])
    }
    // Everywhere else too.
    for (const position of everyArc(ring)) {
      const primaries = ring.primaries(position, 2)
      expect([...primaries].sort()).toEqual(['a', 'c'])
      expect(new Set(primaries.map(id => locationOf(ring.member(id)!))).size).toBe(2)
    }
  })
})

// Rule 4.
describe('placement: order independence', () => {
  it('the same members listed in any order give the same ring, primaries and preference lists', () => {
    const arb = caseArb.chain(c => fc.record({
      c: fc.constant(c),
      shuffled: fc.shuffledSubarray(c.members, { minLength: c.members.length, maxLength: c.members.length }),
      down: fc.subarray(c.members.map(m => m.id))
    }))
    fc.assert(fc.property(arb, ({ c: { members, minDurable, n, at }, shuffled, down }) => {
      const a = build(members, minDurable)
      const b = build(shuffled, minDurable)
      expect(b.tokenList()).toEqual(a.tokenList())
      const isUp = (id: string): boolean => !down.includes(id)
      for (const position of positionsOn(a, at)) {
        expect(b.primaries(position, n)).toEqual(a.primaries(position, n))
        expect(b.explain(position, n)).toEqual(a.explain(position, n))
        expect(b.preferenceList(position, n, isUp)).toEqual(a.preferenceList(position, n, isUp))
      }
    }), { seed: SEED, numRuns: 100 })
  })
})

// Rule 6.
describe('placement: fallbacks', () => {
  const downArb = caseArb.chain(c => fc.record({ c: fc.constant(c), down: fc.subarray(c.members.map(m => m.id)) }))

  it('replace down primaries with distinct up members beyond the primaries, keeping the durable places', () => {
    let someDown = 0
    fc.assert(fc.property(downArb, ({ c: { members, minDurable, n, at }, down }) => {
      const ring = build(members, minDurable)
      const isUp = (id: string): boolean => !down.includes(id)
      const upMembers = members.filter(m => isUp(m.id))
      const wantedDurable = Math.min(minDurable, upMembers.filter(isDurable).length, n)
      for (const position of positionsOn(ring, at)) {
        const primaries = ring.primaries(position, n)
        const list = ring.preferenceList(position, n, isUp)
        const ids = list.map(e => e.id)
        expect(new Set(ids).size).toBe(ids.length)
        expect(list).toHaveLength(Math.min(n, upMembers.length))
        // The up primaries first, in order, as primaries; then the fallbacks.
        const upPrimaries = primaries.filter(isUp)
        const downPrimaries = primaries.filter(id => !isUp(id))
        expect(list.slice(0, upPrimaries.length)).toEqual(upPrimaries.map(id => ({ id, role: 'primary' })))
        const fallbacks = list.slice(upPrimaries.length)
        const upBeyond = upMembers.filter(m => !primaries.includes(m.id)).length
        expect(fallbacks).toHaveLength(Math.min(downPrimaries.length, upBeyond))
        for (const f of fallbacks) {
          expect(f.role).toBe('fallback')
          expect(isUp(f.id)).toBe(true)
          expect(primaries).not.toContain(f.id)
        }
        // Every hint names a down primary, each at most once; all of them when there are enough fallbacks.
        const hints = fallbacks.map(f => f.hintFor!)
        expect(new Set(hints).size).toBe(hints.length)
        for (const h of hints) expect(downPrimaries).toContain(h)
        if (upBeyond >= downPrimaries.length) expect([...hints].sort()).toEqual([...downPrimaries].sort())
        // A durable fallback holds the hint of a durable primary where it can.
        const durableFallbacks = fallbacks.filter(f => ring.isDurable(f.id)).length
        const durableDown = downPrimaries.filter(id => ring.isDurable(id)).length
        expect(fallbacks.filter(f => ring.isDurable(f.id) && ring.isDurable(f.hintFor!)).length).toBe(Math.min(durableFallbacks, durableDown))
        expect(ids.filter(id => ring.isDurable(id)).length).toBeGreaterThanOrEqual(wantedDurable)
        // The location rule, as for the primaries (rule 2) but with the up primaries kept: the list spans as many
        // locations as any choice of as many fallbacks among the up members beyond the primaries can, given that
        // the whole list must hold wantedDurable durable members (brute force over those choices).
        const candidates = upMembers.filter(m => !primaries.includes(m.id))
        const best = bestSpan(upPrimaries.map(id => ring.member(id)!), candidates, fallbacks.length, wantedDurable)
        expect(new Set(ids.map(id => locationOf(ring.member(id)!))).size).toBe(best)
        if (downPrimaries.length > 0) someDown++
      }
    }), { seed: SEED, numRuns: 200 })
    expect(someDown).toBeGreaterThan(500)
  })

  it('with every member up, the preference list is the primaries', () => {
    fc.assert(fc.property(caseArb, ({ members, minDurable, n, at }) => {
      const ring = build(members, minDurable)
      for (const position of positionsOn(ring, at)) {
        expect(ring.preferenceList(position, n, () => true)).toEqual(ring.primaries(position, n).map(id => ({ id, role: 'primary' })))
      }
    }), { seed: SEED, numRuns: 100 })
  })

  it('nextFallback names an up member not yet tried (durable with durableOnly), and nothing only once none is left', () => {
    const arb = downArb.chain(d => fc.record({ d: fc.constant(d), tried: fc.subarray(d.c.members.map(m => m.id)) })
      .chain(t => fc.record({ t: fc.constant(t), answered: fc.subarray(t.tried) })))
    fc.assert(fc.property(arb, ({ t: { d: { c: { members, minDurable, n, at }, down }, tried }, answered }) => {
      const ring = build(members, minDurable)
      const isUp = (id: string): boolean => !down.includes(id)
      const untried = members.filter(m => isUp(m.id) && !tried.includes(m.id))
      for (const position of positionsOn(ring, at)) {
        const next = ring.nextFallback(position, n, tried, answered, isUp)
        if (untried.length === 0) expect(next).toBeUndefined()
        else expect(untried.map(m => m.id)).toContain(next)
        const durableUntried = untried.filter(isDurable)
        const nextDurable = ring.nextFallback(position, n, tried, answered, isUp, { durableOnly: true })
        if (durableUntried.length === 0) expect(nextDurable).toBeUndefined()
        else expect(durableUntried.map(m => m.id)).toContain(nextDurable)
      }
    }), { seed: SEED, numRuns: 150 })
  })
})

// Rule 5. The measure: over 2,000 keys, the fraction of (key, replica) pairs in the new primaries that were not
// in the old ones. `before` and `after` differ by one member, `changed`; the same pair of rings read one way is
// a join and read the other way a leave.
describe('placement: a join or a leave moves little', () => {
  const KEY_COUNT = 2000
  let keyPositions: number[]
  beforeAll(() => { keyPositions = Array.from({ length: KEY_COUNT }, (_, i) => hash(`user:${i}:profile`)) })

  type Placement = (position: number) => readonly string[]
  /** Fraction of the pairs of `to` not in `from`, and of the pairs of `to` that name `who`. */
  function moved (from: Placement, to: Placement, who?: string): { moved: number; share: number } {
    let added = 0
    let total = 0
    let named = 0
    for (const p of keyPositions) {
      const old = from(p)
      for (const id of to(p)) {
        total++
        if (!old.includes(id)) added++
        if (id === who) named++
      }
    }
    return { moved: added / total, share: named / total }
  }

  /**
   * The bound for a ring of m + 1 members, one of which (`changed`, with share w of the tokens) comes or goes:
   * 2 x max(w, 1/(m + 1)) + 0.01. With the plain walk only `changed` gains or loses pairs, so the measure is its
   * share of the replica pairs. That share is its token share w for N = 1; for larger N it is pulled towards
   * its member share 1/(m + 1) (every key needs N distinct members, so a small member is taken more often than
   * its tokens say, a large one less). The factor 2 covers the spread of a member's token share (about
   * 1/sqrt(vnodes): 25% for 16 vnodes); 0.01 covers sampling 2,000 keys. Measured (3 seeds x 160 rings of 6-13
   * members, vnodes 16 and 64): the measure stays below 1.5 x max(w, 1/(m + 1)); against w alone it reaches 2.35
   * (a 16-vnode joiner among five 64-vnode members with N = 5), too close to a bound of 2.5 x w.
   */
  const bound = (members: readonly RingMember[], changed: RingMember): number =>
    2 * Math.max(changed.vnodes / members.reduce((s, m) => s + m.vnodes, 0), 1 / members.length) + 0.01

  // m + 1 = 6-13 members, so N <= 5 < m + 1 and a join does not just add the joiner to every key.
  const stabilityArb = (shape: fc.Arbitrary<RingMember[]>) => fc.record({
    all: shape,
    minDurable: fc.integer({ min: 0, max: 3 }),
    n: fc.integer({ min: 1, max: 5 }),
    pick: fc.nat()
  })
  const plainMembersArb = fc.uniqueArray(fc.record({ id: fc.stringMatching(/^peer-[a-z0-9]{1,6}$/), vnodes: fc.constantFrom(16, 64) }),
    { minLength: 6, maxLength: 13, selector: m => m.id })

  it('all durable, each at a location of its own: the changed member alone gains or loses pairs, about 1/members of them', () => {
    let worst = 0
    fc.assert(fc.property(stabilityArb(plainMembersArb), ({ all, minDurable, n, pick }) => {
      const changed = all[pick % all.length]!
      const before = build(all.filter(m => m !== changed), minDurable)
      const after = build(all, minDurable)
      for (const p of keyPositions) {
        const old = before.primaries(p, n)
        const now = after.primaries(p, n)
        // Join: the joiner is inserted and the last one drops out; leave: the reverse.
        if (now.includes(changed.id)) expect(now.filter(id => id !== changed.id)).toEqual(old.slice(0, n - 1))
        else expect(now).toEqual(old)
      }
      const join = moved(p => before.primaries(p, n), p => after.primaries(p, n), changed.id)
      const leave = moved(p => after.primaries(p, n), p => before.primaries(p, n))
      expect(join.moved).toBeCloseTo(join.share, 12)
      const limit = bound(all, changed)
      worst = Math.max(worst, join.moved / limit, leave.moved / limit)
      expect(join.moved).toBeLessThanOrEqual(limit)
      expect(leave.moved).toBeLessThanOrEqual(limit)
    }), { seed: SEED, numRuns: 40 })
    // The bound is not slack: the worst case comes within reach of it (0.52 of it with this seed).
    expect(worst).toBeGreaterThan(0.4)
  })

  // With locations shared and volatile members, the rules can rightly hand the joiner far more than 1/members of
  // the pairs (the first durable member when minDurable >= 1 joins every key; so does the only durable member at a
  // second location when two durable places are wanted), so the bound here is on what moves besides it:
  // per key, a join changes nothing unless the joiner is among the new primaries, and then brings in at most one
  // other member (a leave, read backwards, the same); over all keys, what moves beside the changed member is at
  // most its own share and stays a small part of all that moves.
  it('mixed memberships: only keys the changed member takes part in change, by at most one other member', () => {
    let besides = 0
    let all = 0
    fc.assert(fc.property(stabilityArb(membersArb(6, 13)), ({ all: members, minDurable, n, pick }) => {
      const changed = members[pick % members.length]!
      const before = build(members.filter(m => m !== changed), minDurable)
      const after = build(members, minDurable)
      for (const p of keyPositions) {
        const old = before.primaries(p, n)
        const now = after.primaries(p, n)
        if (!now.includes(changed.id)) expect(now).toEqual(old)
        const gained = now.filter(id => !old.includes(id))
        expect(gained.filter(id => id !== changed.id).length).toBeLessThanOrEqual(1)
        expect(old.filter(id => !now.includes(id)).length).toBe(gained.length)
        besides += gained.length - (gained.includes(changed.id) ? 1 : 0)
        all += gained.length
      }
      const join = moved(p => before.primaries(p, n), p => after.primaries(p, n), changed.id)
      expect(join.moved - join.share).toBeLessThanOrEqual(join.share + 1e-12)
    }), { seed: SEED, numRuns: 40 })
    // Measured: about 2% of the moved pairs go to a member other than the changed one (2.4% with this seed; 0.4-6.1%,
    // mean 2.2%, over seeds 1-20). The bound was 0.05 when the rules chose in one walk (0-3.6%, mean 1.3%, over the
    // same seeds). Choosing the durable places first moves a little more beside the changed member: in every case
    // measured a volatile member gained with a durable joiner. The durable places reach past nearer volatile members
    // and take their locations; a nearer durable joiner gives such a location back. E.g. N = 3, minDurable 2, the walk
    // meeting m (C, volatile), yn (B, durable, the joiner), a (own, durable), 633 (C, durable), 0n (B, durable): before
    // the join the durable places go to a and 633, so m waits for C and 0n takes the third place, [a, 633, 0n]; after
    // it, yn and a take them and m, met first, takes C: [m, yn, a]. Still at most one such member per key (checked
    // above); 0.1 leaves room over seeds.
    expect(besides / all).toBeLessThan(0.1)
  })

  it('the measure catches a placement that is not stable (sanity check)', () => {
    const members = Array.from({ length: 10 }, (_, i) => ({ id: `peer-${i}`, vnodes: 64 }))
    const joiner = { id: 'peer-joiner', vnodes: 64 }
    const all = [...members, joiner]
    const limit = bound(all, joiner)
    const ring = build(all, 1)
    // The same members on a ring hashed differently: the placement of almost every key changes.
    const salted = Ring.build(all, input => hash(`salt:${input}`), { minDurable: 1 })
    expect(moved(p => ring.primaries(p, 3), p => salted.primaries(p, 3)).moved).toBeGreaterThan(3 * limit)
    // Hash mod N: a join renumbers the buckets.
    const modN = (ids: string[]): Placement => p => Array.from({ length: 3 }, (_, k) => ids[(p % ids.length + k) % ids.length]!)
    const join = moved(modN(members.map(m => m.id)), modN(all.map(m => m.id)))
    expect(join.moved).toBeGreaterThan(3 * limit)
    // And the ring's own join stays within it.
    const before = build(members, 1)
    expect(moved(p => before.primaries(p, 3), p => ring.primaries(p, 3)).moved).toBeLessThanOrEqual(limit)
  })
})
