// A refresh at the storage engine (src/core/storage/ttl-clock.ts, engine.refresh): credits again without a
// write, only for the very state and TTL held; and what an expiry and the services listing make of it.
import { describe, expect, it } from 'vitest'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { ManualClock, SeededRng } from '../../src/core/env.js'
import { beatRecord, expiredRecord, serviceOf } from '../../src/core/kv/heartbeat.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

const KEY = 'heartbeat/svc'

async function engineWithBeat (): Promise<{ engine: StorageEngine; clock: ManualClock }> {
  const clock = new ManualClock(1_000_000)
  const engine = await StorageEngine.open({ replicaId: 'peer-a', clock, rng: new SeededRng(1), wal: new MemoryWal(new MemoryVolume()), durability: 'async', sweepPeriodMs: 1000, expiredValue: expiredRecord })
  await engine.put(KEY, beatRecord(3000, null, 60_000), { lww: true, ttlMs: 3000 })
  return { engine, clock }
}

describe('refresh at the engine', () => {
  it('renews the credits of the state held, logs nothing, and keeps the newest refresh time', async () => {
    const { engine, clock } = await engineWithBeat()
    const state = engine.state(KEY)!
    const logged = engine.walBytes()
    // Three credits at a 1000 ms sweep: a refresh before each third sweep keeps it alive for as long as it comes.
    for (let i = 0; i < 9; i++) {
      clock.advance(1000)
      if (i % 2 === 0) expect(engine.refresh(KEY, state, 3000, { wall: clock.nowMs(), logical: 0 })).toBe(true)
      expect(engine.sweep()).toEqual([])
    }
    expect(engine.state(KEY)).toBe(state)
    expect(engine.walBytes()).toBe(logged)
    expect(engine.refreshedWall(KEY)).toBe(1_009_000)
    // An older refresh does not move it back.
    engine.refresh(KEY, state, 3000, { wall: 1_001_000, logical: 0 })
    expect(engine.refreshedWall(KEY)).toBe(1_009_000)
    await engine.close()
  })

  it('refuses another state, another TTL, a key without one, and a timestamp from too far ahead', async () => {
    const { engine } = await engineWithBeat()
    const state = engine.state(KEY)!
    const ts = { wall: 1_000_500, logical: 0 }
    expect(engine.refresh(KEY, { ...state }, 3000, ts)).toBe(false)
    expect(engine.refresh(KEY, state, 4000, ts)).toBe(false)
    expect(engine.refresh(KEY, state, 0, ts)).toBe(false)
    await engine.put('plain', Uint8Array.of(1))
    expect(engine.refresh('plain', engine.state('plain')!, 3000, ts)).toBe(false)
    expect(engine.refresh('absent', state, 3000, ts)).toBe(false)
    // A timestamp further ahead than the clock accepts (60 s of drift) refreshes nothing.
    expect(engine.refresh(KEY, state, 3000, { wall: 1_000_000 + 61_000, logical: 0 })).toBe(false)
    expect(engine.refreshedWall(KEY)).toBe(0)
    await engine.close()
  })

  it('a refresh while the owner checks the other replicas cancels the expiry; the expired record names the last refresh', async () => {
    const { engine, clock } = await engineWithBeat()
    const state = engine.state(KEY)!
    const offered: string[] = []
    engine.onExpiring = key => { offered.push(key) }
    for (let i = 0; i < 4; i++) { clock.advance(1000); engine.sweep() }
    expect(offered).toEqual([KEY])
    engine.refresh(KEY, state, 3000, { wall: clock.nowMs(), logical: 0 })
    expect(engine.expire(KEY, state)).toBeNull()
    const refreshedAt = engine.refreshedWall(KEY)
    for (let i = 0; i < 4; i++) { clock.advance(1000); engine.sweep() }
    const event = engine.expire(KEY, state)
    expect(event).not.toBeNull()
    expect(serviceOf(KEY, event!.expired)).toMatchObject({ state: 'expired', lastBeat: refreshedAt })
    // Expired: no TTL any more, so nothing to refresh, and no refresh time.
    expect(engine.refresh(KEY, engine.state(KEY)!, 3000, { wall: clock.nowMs(), logical: 0 })).toBe(false)
    expect(engine.refreshedWall(KEY)).toBe(0)
    await engine.close()
  })

  it('the alive service\'s last beat is the newer of its record and its last refresh', () => {
    const state = { vv: ['a', 1], siblings: [{ id: 'a', n: 1, value: beatRecord(3000, null, 60_000), wall: 5000, logical: 0, lww: true }], lwwFloor: null } as unknown as Parameters<typeof serviceOf>[1]
    expect(serviceOf(KEY, state)).toMatchObject({ state: 'alive', lastBeat: 5000, replica: 'a' })
    expect(serviceOf(KEY, state, 9000)).toMatchObject({ state: 'alive', lastBeat: 9000, replica: 'a' })
    expect(serviceOf(KEY, state, 4000)).toMatchObject({ lastBeat: 5000 })
  })
})
