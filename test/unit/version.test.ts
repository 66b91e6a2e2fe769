import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidContextError } from '../../src/core/errors.js'
import { CONTEXT_ENTRIES_MAX, COUNTER_MAX, decodeContext, encodeContext } from '../../src/core/version/context.js'
import { type KeyState, EMPTY_STATE, stateEquals, sync, update, valuesOf } from '../../src/core/version/dvv.js'
import { HybridClock, compareHlc } from '../../src/core/version/hlc.js'
import { type VersionVector, vvCompare, vvCovers, vvDescends, vvFrom, vvMerge } from '../../src/core/version/vv.js'
import { ManualClock } from '../../src/core/env.js'

const REPLICAS = ['a', 'b', 'c']
// Raise with MESHKV_PROPERTY_RUNS for a deeper search; fast-check prints the seed of any failure.
const RUNS = Number(process.env.MESHKV_PROPERTY_RUNS ?? 300)

type Op =
  | { kind: 'put'; at: number; ctxFrom: number | null; lww: boolean }
  | { kind: 'sync'; to: number; from: number }

const opArb = (lww: boolean): fc.Arbitrary<Op> => fc.oneof(
  fc.record({ kind: fc.constant('put' as const), at: fc.nat(2), ctxFrom: fc.option(fc.nat(2), { nil: null }), lww: lww ? fc.boolean() : fc.constant(false) }),
  fc.record({ kind: fc.constant('sync' as const), to: fc.nat(2), from: fc.nat(2) })
)

/** Runs a history of puts and syncs on three replicas and returns every state that occurred. */
function run (ops: Op[]): KeyState[] {
  const states: KeyState[] = [EMPTY_STATE, EMPTY_STATE, EMPTY_STATE]
  const clock = new ManualClock(1_000)
  const hlcs = REPLICAS.map(() => new HybridClock(clock))
  const pool: KeyState[] = [EMPTY_STATE]
  ops.forEach((op, i) => {
    clock.set(1_000 + (i * 7919) % 13) // clocks that stall and jump back: HLC must still order
    if (op.kind === 'put') {
      const ctx = op.ctxFrom === null ? [] : states[op.ctxFrom]!.vv
      states[op.at] = update(states[op.at]!, ctx, { value: new Uint8Array([i]), ts: hlcs[op.at]!.now(), lww: op.lww }, REPLICAS[op.at]!)
      pool.push(states[op.at]!)
    } else {
      states[op.to] = sync(states[op.to]!, states[op.from]!)
      pool.push(states[op.to]!)
    }
  })
  return pool
}

const historyArb = (lww: boolean) => fc.array(opArb(lww), { minLength: 1, maxLength: 40 })
const pick = fc.tuple(fc.nat(), fc.nat(), fc.nat())

describe('version vectors', () => {
  const vvArb = fc.array(fc.tuple(fc.constantFrom(...REPLICAS, 'd'), fc.integer({ min: 1, max: 5 }))).map(vvFrom)

  it('merge is commutative, associative and idempotent; compare agrees with descends', () => {
    fc.assert(fc.property(vvArb, vvArb, vvArb, (a, b, c) => {
      expect(vvMerge(a, b)).toEqual(vvMerge(b, a))
      expect(vvMerge(a, vvMerge(b, c))).toEqual(vvMerge(vvMerge(a, b), c))
      expect(vvMerge(a, a)).toEqual(a)
      const order = vvCompare(a, b)
      expect(vvDescends(a, b)).toBe(order === 'after' || order === 'equal')
      expect(vvDescends(vvMerge(a, b), a)).toBe(true)
      expect(vvCompare(b, a)).toBe({ before: 'after', after: 'before', equal: 'equal', concurrent: 'concurrent' }[order])
    }))
  })

  it('merge returns the vector that already knows everything, and otherwise a new one', () => {
    fc.assert(fc.property(vvArb, vvArb, (a, b) => {
      const m = vvMerge(a, b)
      if (vvDescends(b, a)) expect(m).toBe(b)
      else if (vvDescends(a, b)) expect(m).toBe(a)
      else expect(m !== a && m !== b).toBe(true)
    }))
  })
})

describe('dotted version vector sets', () => {
  for (const lww of [false, true]) {
    it(`sync is commutative, associative and idempotent over reachable states${lww ? ' (with lww writes)' : ''}`, () => {
      fc.assert(fc.property(historyArb(lww), pick, (ops, [i, j, k]) => {
        const pool = run(ops)
        const a = pool[i % pool.length]!
        const b = pool[j % pool.length]!
        const c = pool[k % pool.length]!
        expect(stateEquals(sync(a, b), sync(b, a))).toBe(true)
        expect(stateEquals(sync(a, sync(b, c)), sync(sync(a, b), c))).toBe(true)
        expect(stateEquals(sync(a, a), a)).toBe(true)
      }), { numRuns: RUNS })
    })
  }

  it('a put with the context of a get supersedes exactly the siblings that get saw', () => {
    fc.assert(fc.property(historyArb(false), historyArb(false), (before, after) => {
      const seen = run(before).at(-1)! // what a client read
      const later = run([...before, ...after]) // the replica moved on: other writes may have arrived
      const current = sync(later.at(-1)!, seen)
      const clock = new HybridClock(new ManualClock(5_000))
      const next = update(current, seen.vv, { value: new Uint8Array([255]), ts: clock.now(), lww: false }, 'a')
      const unseen = current.siblings.filter(s => !vvCovers(seen.vv, s.id, s.n))
      // Kept: every sibling the client had not seen, plus the new value. Gone: everything it had seen.
      expect(next.siblings.length).toBe(unseen.length + 1)
      for (const s of unseen) expect(next.siblings).toContainEqual(s)
      for (const s of seen.siblings) expect(next.siblings.some(t => t.id === s.id && t.n === s.n)).toBe(false)
    }), { numRuns: RUNS })
  })

  it('concurrent puts without each other\'s context both survive as siblings', () => {
    fc.assert(fc.property(historyArb(false), fc.uint8Array({ minLength: 1 }), fc.uint8Array({ minLength: 1 }), (ops, x, y) => {
      const base = run(ops).at(-1)!
      const clock = new HybridClock(new ManualClock(9_000))
      const atA = update(base, base.vv, { value: x, ts: clock.now(), lww: false }, 'a')
      const atB = update(base, base.vv, { value: y, ts: clock.now(), lww: false }, 'b')
      const merged = sync(atA, atB)
      const values = valuesOf(merged).map(s => s.value)
      expect(values).toContainEqual(x)
      expect(values).toContainEqual(y)
      expect(merged.siblings).toHaveLength(2)
    }))
  })

  it('last-writer-wins keeps only the newest write by HLC, on every replica', () => {
    const clock = new ManualClock(100)
    const ha = new HybridClock(clock)
    const hb = new HybridClock(clock)
    const first = update(EMPTY_STATE, [], { value: new Uint8Array([1]), ts: ha.now(), lww: true }, 'a')
    const second = update(EMPTY_STATE, [], { value: new Uint8Array([2]), ts: hb.now(), lww: true }, 'b')
    for (const merged of [sync(first, second), sync(second, first)]) {
      expect(merged.siblings).toHaveLength(1)
      expect(merged.siblings[0]!.value).toEqual(new Uint8Array([2]))
    }
  })

  it('a blind write next to an existing value keeps both; a delete with context leaves only a tombstone', () => {
    const clock = new HybridClock(new ManualClock(1))
    const one = update(EMPTY_STATE, [], { value: new Uint8Array([1]), ts: clock.now(), lww: false }, 'a')
    const two = update(one, [], { value: new Uint8Array([2]), ts: clock.now(), lww: false }, 'a')
    expect(valuesOf(two)).toHaveLength(2)
    const gone = update(two, two.vv, { value: null, ts: clock.now(), lww: false }, 'b')
    expect(valuesOf(gone)).toHaveLength(0)
    expect(gone.siblings).toHaveLength(1)
  })
})

describe('causal context', () => {
  it('round-trips any version vector through its opaque encoding', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: COUNTER_MAX })), { maxLength: CONTEXT_ENTRIES_MAX }), pairs => {
      const vv = vvFrom(pairs)
      const encoded = encodeContext(vv, { wall: 1_700_000_000_000, logical: 3 })
      expect(encoded).toMatch(/^[A-Za-z0-9_-]*$/)
      expect(decodeContext(encoded)).toEqual({ vv, ts: { wall: 1_700_000_000_000, logical: 3 } })
      expect(decodeContext(encodeContext(vv))).toEqual({ vv, ts: null })
    }))
  })

  it('rejects garbage, truncation and oversize contexts with InvalidContextError', () => {
    const good = encodeContext(vvFrom([['a', 3], ['b', 1]]))
    for (const bad of ['!!!', good.slice(0, -2), 'AAAA', 'x'.repeat(100_000), encodeContext(vvFrom([['a', 1]])).replace(/^A/, 'B')]) {
      expect(() => decodeContext(bad)).toThrow(InvalidContextError)
    }
    const tooMany: VersionVector = vvFrom(Array.from({ length: CONTEXT_ENTRIES_MAX + 1 }, (_, i) => [`r${String(i).padStart(3, '0')}`, 1] as const))
    expect(() => decodeContext(encodeContext(tooMany))).toThrow(/exceed/)
    // A counter near 2^53 would overflow the next dot and leave a log no decoder reads back.
    expect(() => decodeContext(encodeContext(vvFrom([['r1', Number.MAX_SAFE_INTEGER]])))).toThrow(InvalidContextError)
    expect(decodeContext('')).toEqual({ vv: [], ts: null })
  })

  it('never throws anything but InvalidContextError on arbitrary input', () => {
    fc.assert(fc.property(fc.string(), s => {
      try { decodeContext(s) } catch (e) { expect(e).toBeInstanceOf(InvalidContextError) }
    }))
  })
})

describe('hybrid logical clock', () => {
  it('is strictly increasing even when the wall clock stalls or steps back, and follows observed time', () => {
    const clock = new ManualClock(1_000)
    const hlc = new HybridClock(clock)
    const a = hlc.now()
    clock.set(500)
    const b = hlc.now()
    expect(compareHlc(b, a)).toBeGreaterThan(0)
    expect(hlc.observe({ wall: 1_500, logical: 4 })).toBe(true)
    expect(compareHlc(hlc.now(), { wall: 1_500, logical: 4 })).toBeGreaterThan(0)
    expect(hlc.observe({ wall: 10_000_000, logical: 0 })).toBe(false) // beyond maxDriftMs: not adopted
    expect(hlc.now().wall).toBe(1_500)
    expect(hlc.rejected).toBe(1)
  })
})

describe('dots after a replica forgot a key', () => {
  it('never reissues a dot: counters start at the write time once the history is gone', () => {
    const ts = (wall: number): { value: Uint8Array; ts: { wall: number; logical: number }; lww: boolean } => ({ value: new Uint8Array([wall % 256]), ts: { wall, logical: 0 }, lww: false })
    let state = EMPTY_STATE
    for (let i = 0; i < 5; i++) state = update(state, state.vv, ts(1000 + i), 'a')
    const old = state
    // The key expired (or was reaped) here: the next blind write starts from an empty history, later.
    const fresh = update(EMPTY_STATE, EMPTY_STATE.vv, ts(2000), 'a')
    expect(fresh.siblings[0]!.n).toBeGreaterThan(old.siblings[0]!.n)
    // So a replica still holding the old state keeps the new write rather than taking it for the old one.
    expect(sync(old, fresh).siblings.map(s => s.wall)).toContain(2000)
  })
})
