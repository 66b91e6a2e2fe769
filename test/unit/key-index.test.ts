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
