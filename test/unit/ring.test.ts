import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { ConfigError } from '../../src/core/errors.js'
import { positionFromHash64 } from '../../src/core/ring/hash.js'
import { DEFAULT_VNODES, RING_SIZE, Ring, type RingHash, SEGMENT_COUNT, segmentOf, segmentRange } from '../../src/core/ring/ring.js'

let hash: RingHash
beforeAll(async () => { hash = await loadRingHash() })

const idArb = fc.stringMatching(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/)
const membersArb = (n: number) => fc.uniqueArray(idArb, { minLength: n, maxLength: n })
const ring = (ids: string[], vnodes = DEFAULT_VNODES): Ring => Ring.build(ids.map(id => ({ id, vnodes })), hash)
const keys = Array.from({ length: 4000 }, (_, i) => `user:${i}:profile`)

describe('ring hash', () => {
  it('is xxHash64 (seed 0) of the UTF-8 key, positioned by its top 53 bits', async () => {
    const h64 = await loadHash64()
    // Reference values of XXH64 with seed 0 (xxHash's own test vectors).
    expect(h64('')).toBe(0xef46db3751d8e999n)
    expect(h64('a')).toBe(0xd24ec4f1a98c6e5bn)
    expect(hash('a')).toBe(Number(0xd24ec4f1a98c6e5bn >> 11n))
    expect(positionFromHash64((1n << 64n) - 1n)).toBe(RING_SIZE - 1)
  })
})

describe('ring', () => {
  it('with 10 members and the default vnodes, the most-loaded member owns at most 1.25x the mean (seed 42)', () => {
    fc.assert(fc.property(membersArb(10), ids => {
      const shares = [...ring(ids).ownership().values()]
      expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 9)
      expect(Math.max(...shares) / (1 / 10)).toBeLessThanOrEqual(1.25)
    }), { seed: 42, numRuns: 100 })
  })

  it('is the same ring whatever order the members are listed in', () => {
    fc.assert(fc.property(membersArb(5), ids => {
      const a = ring(ids)
      const b = ring([...ids].reverse())
      for (const k of keys.slice(0, 200)) expect(a.primaries(a.position(k), 3)).toEqual(b.primaries(b.position(k), 3))
    }), { numRuns: 20 })
  })

  it('a join moves close to 1/n of the keys, and only to the new member', () => {
    fc.assert(fc.property(membersArb(9), idArb, (ids, joiner) => {
      fc.pre(!ids.includes(joiner))
      const before = ring(ids)
      const after = ring([...ids, joiner])
      let moved = 0
      for (const k of keys) {
        const p = before.position(k)
        const [from] = before.primaries(p, 1)
        const [to] = after.primaries(p, 1)
        if (from !== to) { moved++; expect(to).toBe(joiner) }
        // With N = 3 a join only inserts the joiner into preference lists; the others keep their order.
        const listBefore = before.primaries(p, 3)
        const listAfter = after.primaries(p, 3)
        if (listAfter.includes(joiner)) expect(listAfter.filter(id => id !== joiner)).toEqual(listBefore.slice(0, 2))
        else expect(listAfter).toEqual(listBefore)
      }
      const fraction = moved / keys.length
      expect(fraction).toBeGreaterThan(0.6 / 10)
      expect(fraction).toBeLessThan(1.4 / 10)
    }), { numRuns: 20 })
  })

  it('a leave moves only the leaver\'s keys', () => {
    fc.assert(fc.property(membersArb(10), fc.nat(9), (ids, index) => {
      const leaver = ids[index]!
      const before = ring(ids)
      const after = ring(ids.filter(id => id !== leaver))
      for (const k of keys) {
        const p = before.position(k)
        const [from] = before.primaries(p, 1)
        const [to] = after.primaries(p, 1)
        if (from !== leaver) expect(to).toBe(from)
        expect(after.primaries(p, 3)).toEqual(before.primaries(p, 4).filter(id => id !== leaver).slice(0, 3))
      }
    }), { numRuns: 20 })
  })

  it('marks fallbacks for down primaries with the primary they hold hints for', () => {
    const ids = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']
    const r = ring(ids, 64)
    for (const k of keys.slice(0, 300)) {
      const p = r.position(k)
      const primaries = r.primaries(p, 3)
      const down = new Set([primaries[1]!])
      const list = r.preferenceList(p, 3, id => !down.has(id))
      expect(list).toHaveLength(3)
      expect(list.filter(e => e.role === 'primary').map(e => e.id)).toEqual([primaries[0], primaries[2]])
      const fallback = list.find(e => e.role === 'fallback')!
      expect(fallback.hintFor).toBe(primaries[1])
      expect(primaries).not.toContain(fallback.id)
      expect(fallback.id).toBe(r.primaries(p, 6).find(id => !primaries.includes(id)))
    }
    // Fewer members up than N: a shorter list, never a down member.
    const list = r.preferenceList(r.position('x'), 3, id => id === 'm0')
    expect(list).toEqual([expect.objectContaining({ id: 'm0' })])
    expect(r.preferenceList(0, 3, () => false)).toEqual([])
  })

  it('splits the hash space into fixed segments and names every replica of a segment', () => {
    const r = ring(['a', 'b', 'c', 'd', 'e'], 32)
    expect(segmentOf(0)).toBe(0)
    expect(segmentOf(RING_SIZE - 1)).toBe(SEGMENT_COUNT - 1)
    const [start, end] = segmentRange(17)
    expect(segmentOf(start)).toBe(17)
    expect(segmentOf(end - 1)).toBe(17)
    for (const k of keys.slice(0, 500)) {
      const p = r.position(k)
      const replicas = r.segmentReplicas(segmentOf(p), 3)
      for (const id of r.primaries(p, 3)) expect(replicas).toContain(id)
    }
  })

  it('rejects bad vnode counts and duplicate members with ConfigError', () => {
    expect(() => ring(['a'], 0)).toThrow(ConfigError)
    expect(() => ring(['a'], 1.5)).toThrow(ConfigError)
    expect(() => Ring.build([{ id: 'a', vnodes: 4 }, { id: 'a', vnodes: 4 }], hash)).toThrow(ConfigError)
  })
})
