// The replica's key index follows the engine's change hook: after any sequence of writes, merges, expiries,
// reaps and drops it equals an index rebuilt from scratch (which is what a ring change does).
import { describe, expect, it } from 'vitest'
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { ManualClock, SeededRng } from '../../src/core/env.js'
import { Digests } from '../../src/core/kv/digest.js'
import { KeyIndex } from '../../src/core/replication/key-index.js'
import { Ring } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'
import { EMPTY_STATE, type KeyState, update } from '../../src/core/version/dvv.js'

const MEMBERS = ['peer-a', 'peer-b', 'peer-c', 'peer-d']

function snapshotOf (index: KeyIndex): unknown {
  const sorted = (set: Set<string>): string[] => [...set].sort()
  return {
    foreign: sorted(index.foreign),
    tombstones: sorted(index.tombstones),
    heartbeats: sorted(index.heartbeats),
    bySegment: index.bySegment.map(sorted),
    leaves: [...index.pairLeaves].filter(([, l]) => l.some(x => x !== 0)).map(([peer, l]) => [peer, [...l]]).sort()
  }
}

describe('key index', () => {
  it('kept by the engine\'s changes, equals a fresh rebuild after 3,000 random operations (seed 11)', async () => {
    const ring = Ring.build(MEMBERS.map(id => ({ id, vnodes: 16 })), await loadRingHash())
    const digests = new Digests(await loadHash64())
    const clock = new ManualClock(1_000)
    const rng = new SeededRng(11)
    const engine = await StorageEngine.open({ replicaId: 'peer-a', clock, rng, wal: new MemoryWal(new MemoryVolume()), durability: 'async', sweepPeriodMs: 100 })
    const index = new KeyIndex('peer-a', 3, digests, ring)
    engine.onChange = (key, prior, state) => { index.note(key, prior, state) }
    let changes = 0
    const counted = engine.onChange
    engine.onChange = (key, prior, state) => { changes++; counted(key, prior, state) }
    const keys = Array.from({ length: 60 }, (_, i) => (i % 5 === 0 ? `heartbeat/svc-${i}` : `key-${i}`))
    for (let step = 0; step < 3_000; step++) {
      const key = keys[Math.floor(rng.next() * keys.length)]!
      const held = engine.get(key)
      const op = rng.next()
      clock.advance(1 + Math.floor(rng.next() * 5))
      if (op < 0.35) await engine.put(key, Uint8Array.of(step & 0xff), { context: held?.context, ...(rng.next() < 0.2 ? { ttlMs: 200 } : {}) })
      else if (op < 0.5) await engine.delete(key, { context: held?.context })
      else if (op < 0.7) {
        // A write coordinated elsewhere arrives (sometimes one this replica already holds).
        const remote: KeyState = update(held?.state ?? EMPTY_STATE, held?.context ?? [], { value: Uint8Array.of(1), ts: { wall: clock.nowMs(), logical: 0 }, lww: false }, 'peer-b')
        await engine.merge(key, rng.next() < 0.2 && held !== undefined ? held.state : remote)
      } else if (op < 0.8 && held?.deleted === true) {
        clock.advance(10)
        engine.reap(key, held.state)
      } else if (op < 0.9 && held !== undefined) {
        clock.advance(10)
        engine.drop(key, held.state)
      } else engine.sweep()
    }
    expect(changes).toBeGreaterThan(1_000)
    const fresh = new KeyIndex('peer-a', 3, digests, ring)
    fresh.rebuild(ring, engine.entries())
    expect(snapshotOf(index)).toEqual(snapshotOf(fresh))
    await engine.close()
  })
})

describe('key index rebuilt for a new ring in steps', () => {
  it('keeps serving the old ring\'s parts, up to date, until the steps end; then equals a fresh rebuild (seed 23)', async () => {
    const ringHash = await loadRingHash()
    const rings = [
      Ring.build(MEMBERS.map(id => ({ id, vnodes: 16 })), ringHash),
      Ring.build([...MEMBERS, 'peer-e'].map(id => ({ id, vnodes: 16 })), ringHash),
      Ring.build(['peer-a', 'peer-c', 'peer-e'].map(id => ({ id, vnodes: 16 })), ringHash)
    ]
    const digests = new Digests(await loadHash64())
    const clock = new ManualClock(1_000)
    const rng = new SeededRng(23)
    const engine = await StorageEngine.open({ replicaId: 'peer-a', clock, rng, wal: new MemoryWal(new MemoryVolume()), durability: 'async', sweepPeriodMs: 100 })
    const index = new KeyIndex('peer-a', 3, digests, rings[0]!)
    engine.onChange = (key, prior, state) => { index.note(key, prior, state) }
    const stateOf = (key: string): KeyState | undefined => engine.state(key)
    const keys = Array.from({ length: 400 }, (_, i) => (i % 7 === 0 ? `heartbeat/svc-${i}` : `key-${i}`))
    let current = rings[0]!
    let target = current
    let rebuilds = 0
    let stepsSeen = 0
    let checkedPending = 0
    let completedInSteps = 0
    for (let step = 0; step < 4_000; step++) {
      const key = keys[Math.floor(rng.next() * keys.length)]!
      const held = engine.get(key)
      const op = rng.next()
      clock.advance(1)
      if (op < 0.4) await engine.put(key, Uint8Array.of(step & 0xff), { context: held?.context })
      else if (op < 0.5) await engine.delete(key, { context: held?.context })
      else if (op < 0.65) {
        const remote: KeyState = update(held?.state ?? EMPTY_STATE, held?.context ?? [], { value: Uint8Array.of(1), ts: { wall: clock.nowMs(), logical: 0 }, lww: false }, 'peer-b')
        await engine.merge(key, remote)
      } else if (op < 0.7 && held !== undefined) engine.drop(key, held.state)
      else if (op < 0.72) {
        // A ring change (sometimes while another rebuild is still under way).
        target = rings[Math.floor(rng.next() * rings.length)]!
        index.retarget(target)
        rebuilds++
      } else if (index.rebuilding) {
        // Readers still see the parts of the ring in use, kept up to date by every change since.
        if (step % 50 === 0) {
          const old = new KeyIndex('peer-a', 3, digests, current)
          old.rebuild(current, engine.entries())
          expect(snapshotOf(index)).toEqual(snapshotOf(old))
          checkedPending++
        }
        const done = index.rebuildStep(25, stateOf)
        stepsSeen++
        if (done !== null) {
          current = target
          if (done.steps > 1) completedInSteps++
          expect(index.rebuilding).toBe(false)
          const fresh = new KeyIndex('peer-a', 3, digests, current)
          fresh.rebuild(current, engine.entries())
          expect(snapshotOf(index)).toEqual(snapshotOf(fresh))
        }
      }
    }
    expect(rebuilds).toBeGreaterThan(30)
    expect(stepsSeen).toBeGreaterThan(100)
    expect(checkedPending).toBeGreaterThan(5)
    expect(completedInSteps).toBeGreaterThan(5)
    index.finishRebuild(stateOf)
    expect(index.rebuilding).toBe(false)
    const fresh = new KeyIndex('peer-a', 3, digests, target)
    fresh.rebuild(target, engine.entries())
    expect(snapshotOf(index)).toEqual(snapshotOf(fresh))
    await engine.close()
  })

  it('a step builds whole segments and at least the keys asked for; none pending is a no-op', async () => {
    const ringHash = await loadRingHash()
    const ring = Ring.build(MEMBERS.map(id => ({ id, vnodes: 16 })), ringHash)
    const index = new KeyIndex('peer-a', 3, new Digests(await loadHash64()), ring)
    const states = new Map<string, KeyState>()
    for (let i = 0; i < 5_000; i++) {
      const state = update(EMPTY_STATE, [], { value: Uint8Array.of(i & 0xff), ts: { wall: i, logical: 0 }, lww: false }, 'peer-a')
      states.set(`k${i}`, state)
      index.note(`k${i}`, undefined, state)
    }
    expect(index.rebuildStep(100, k => states.get(k))).toBeNull()
    index.retarget(Ring.build([...MEMBERS, 'peer-e'].map(id => ({ id, vnodes: 16 })), ringHash))
    let steps = 0
    let done: { keys: number; steps: number } | null = null
    while (done === null) { done = index.rebuildStep(1_000, k => states.get(k)); steps++ }
    // 5,000 keys over 1,024 segments: each step takes whole segments until it has 1,000 keys or more.
    expect(done).toEqual({ keys: 5_000, steps, restarts: 0 })
    expect(steps).toBeGreaterThanOrEqual(4)
    expect(steps).toBeLessThanOrEqual(5)
  })
})
