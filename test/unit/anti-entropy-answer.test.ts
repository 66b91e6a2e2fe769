// An anti-entropy answer (AntiEntropy.diffLeaves) lists at most the round's key budget of shared keys, and
// also looks at no more than SYNC_WALK_FACTOR times that many keys held to find them: a peer holding many
// keys its asker is no primary of, in segments that differ, must not walk all of them in one turn.
import { describe, expect, it } from 'vitest'
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { ManualClock, SeededRng } from '../../src/core/env.js'
import { Digests } from '../../src/core/kv/digest.js'
import { AntiEntropy, SYNC_WALK_FACTOR } from '../../src/core/replication/anti-entropy.js'
import { KeyIndex } from '../../src/core/replication/key-index.js'
import type { ReplicaState } from '../../src/core/replication/replica-state.js'
import { Ring, SEGMENT_COUNT } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

const MEMBERS = Array.from({ length: 8 }, (_, i) => `peer-${String.fromCharCode(97 + i)}`)
const BUDGET = 10

describe('anti-entropy answer', () => {
  it('looks at no more than its walk bound of keys held, however few of them the asker shares', async () => {
    const ring = Ring.build(MEMBERS.map(id => ({ id, vnodes: 16 })), await loadRingHash())
    const digests = new Digests(await loadHash64())
    const engine = await StorageEngine.open({ replicaId: 'peer-a', clock: new ManualClock(1_000), rng: new SeededRng(5), wal: new MemoryWal(new MemoryVolume()), durability: 'async', sweepPeriodMs: 100 })
    const index = new KeyIndex('peer-a', 3, digests, ring)
    engine.onChange = (key, prior, state) => { index.note(key, prior, state) }
    const primariesOf = (key: string): readonly string[] => ring.primaries(ring.position(key), 3)
    // peer-a holds 4,000 keys peer-b is no primary of (as a fallback would), and a few it shares with peer-b.
    let held = 0
    let shared = 0
    for (let i = 0; held < 4_000 || shared < 3; i++) {
      const key = `key-${i}`
      const p = primariesOf(key)
      const both = p.includes('peer-a') && p.includes('peer-b')
      if (both ? shared >= 3 : (p.includes('peer-b') || held >= 4_000)) continue
      await engine.put(key, Uint8Array.of(1))
      if (both) shared++
      else held++
    }
    let looked = 0
    const state = { id: 'peer-a', index, digests, config: { syncKeysPerRound: BUDGET }, primariesOf, engine: { state: (key: string) => { looked++; return engine.state(key) } } } as unknown as ReplicaState
    const ae = new AntiEntropy(state)
    // Every segment differs (the asker's hashes match none of ours).
    const segments = Array.from({ length: SEGMENT_COUNT }, (_, i) => i)
    const hashes = segments.flatMap(() => [1, 1])
    const largest = Math.max(...index.bySegment.map(s => s.size))
    for (let round = 0; round < 5; round++) {
      looked = 0
      const answer = ae.diffLeaves('peer-b', segments, hashes)
      if (answer.type !== 'digests') throw new Error(`answered ${answer.type}`)
      expect(looked).toBeLessThanOrEqual(SYNC_WALK_FACTOR * BUDGET + largest)
      expect(answer.truncated).toBe(true)
      expect(answer.segments.length).toBeGreaterThan(0)
      // Whatever it listed is shared with the asker, whole segments at a time.
      for (const key of answer.keys) expect(primariesOf(key)).toContain('peer-b')
    }
    // Round after round the answer starts further along, so every segment is covered in time.
    const covered = new Set<number>()
    for (let round = 0; round < 4 * SEGMENT_COUNT && covered.size < SEGMENT_COUNT; round++) {
      const answer = ae.diffLeaves('peer-b', segments, hashes)
      if (answer.type === 'digests') for (const s of answer.segments) covered.add(s)
    }
    expect(covered.size).toBe(SEGMENT_COUNT)
    await engine.close()
  })
})
