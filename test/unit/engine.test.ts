import { describe, expect, it } from 'vitest'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { ManualClock, SeededRng } from '../../src/core/env.js'
import { AbortError, ClosedError, ConfigError, InvalidKeyError, SiblingLimitError, StoreFullError, ValueTooLargeError } from '../../src/core/errors.js'
import { MEMORY_MERGE_MARGIN } from '../../src/core/config.js'
import { StorageEngine, type EngineOptions, type WarningEvent, stateBytes } from '../../src/core/storage/engine.js'
import { update, EMPTY_STATE } from '../../src/core/version/dvv.js'
import { type VersionVector, vvEntries } from '../../src/core/version/vv.js'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array | null): string => (b === null ? '<tombstone>' : new TextDecoder().decode(b))

async function engine (volume: MemoryVolume | null, options: Partial<EngineOptions> = {}): Promise<StorageEngine> {
  return StorageEngine.open({ replicaId: 'replica-a', clock: new ManualClock(1_000), rng: new SeededRng(1), ...(volume === null ? {} : { wal: new MemoryWal(volume) }), ...options })
}

describe('storage engine', () => {
  it('reads back writes; a put with the read context replaces, one without keeps a sibling', async () => {
    const e = await engine(new MemoryVolume())
    expect(e.get('k')).toBeUndefined()
    await e.put('k', bytes('v1'))
    const r1 = e.get('k')!
    expect(r1.values.map(s => text(s.value))).toEqual(['v1'])
    await e.put('k', bytes('v2'), { context: r1.context })
    expect(e.get('k')!.values.map(s => text(s.value))).toEqual(['v2'])
    await e.put('k', bytes('v3'))
    expect(e.get('k')!.values.map(s => text(s.value)).sort()).toEqual(['v2', 'v3'])
    await e.delete('k', { context: e.get('k')!.context })
    expect(e.get('k')!.deleted).toBe(true)
    expect(e.get('k')!.values).toEqual([])
    await e.close()
  })

  it('recovers every write after a restart and keeps issuing fresh dots', async () => {
    const volume = new MemoryVolume()
    const a = await engine(volume)
    for (let i = 0; i < 50; i++) await a.put(`key-${i}`, bytes(`value-${i}`))
    await a.put('key-0', bytes('again'), { context: a.get('key-0')!.context })
    await a.close()
    const b = await engine(volume)
    expect(b.size).toBe(50)
    expect(text(b.get('key-0')!.values[0]!.value)).toBe('again')
    // 51 writes and the dot-counter lease the first of them logged.
    expect(b.recovery!.records).toBe(52)
    const before = vvEntries(b.get('key-1')!.state.vv)
    await b.put('key-1', bytes('new'), { context: b.get('key-1')!.context })
    const after = vvEntries(b.get('key-1')!.state.vv)
    expect(after.map(([id]) => id)).toEqual(['replica-a'])
    expect(after[0]![1]).toBeGreaterThan(before[0]![1])
    await b.close()
  })

  it('sync durability survives a power loss; async may lose the last writes', async () => {
    const volume = new MemoryVolume()
    const a = await engine(volume)
    await a.put('durable', bytes('1'))
    await a.put('fast', bytes('2'), { durability: 'async' })
    volume.crash() // no close: the process died
    const b = await engine(volume)
    expect(b.get('durable')).toBeDefined()
    expect(b.get('fast')).toBeUndefined()
    await b.close()
  })

  it('lets a new dot out before its record is durable only under a durable dot-counter lease, and restarts above every dot it issued', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(1_000) // stands still: a hot key's counter runs ahead of it
    const a = await engine(volume, { clock })
    const first = a.writeLocal('hot', bytes('v0'), { durability: 'async' })
    expect(first.shareable).toBe(false) // no lease yet: the coordinator waits for its own log
    await a.durable()
    const issued: number[] = []
    let context = first.state.vv
    for (let i = 1; i <= 100; i++) {
      const w = a.writeLocal('hot', bytes(`v${i}`), { context, durability: 'async' })
      expect(w.shareable).toBe(true)
      context = w.state.vv
      issued.push(vvEntries(w.state.vv).find(([id]) => id === 'replica-a')![1])
    }
    // The process dies before any of those 100 records is durable (they reached the volume, not the disk):
    // it restarts with the first write only.
    await new Promise(resolve => { setTimeout(resolve, 0) })
    volume.crash()
    const b = await engine(volume, { clock })
    expect(text(b.get('hot')!.values[0]!.value)).toBe('v0')
    const again = b.writeLocal('hot', bytes('after'), { durability: 'async' })
    const n = vvEntries(again.state.vv).find(([id]) => id === 'replica-a')![1]
    expect(n).toBeGreaterThan(Math.max(...issued)) // without the lease it would reuse v1's counter
    expect(again.shareable).toBe(false) // above the recovered lease: a new one must be durable first
    await b.durable()
    expect(b.writeLocal('other', bytes('x'), { durability: 'async' }).shareable).toBe(true)
    await b.close()
  })

  it('expires a TTL key by the second-chance sweep: never before its TTL, always within two periods after', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(1_000)
    const e = await engine(volume, { sweepPeriodMs: 1000, clock })
    const sweep = (): ReturnType<StorageEngine['sweep']> => { clock.advance(1000); return e.sweep() }
    const expired: string[] = []
    e.events.on('expired', ev => { expired.push(ev.key) })
    await e.put('svc/short', bytes('up'), { ttlMs: 500 }) // one credit: the reference bit
    await e.put('svc/long', bytes('up'), { ttlMs: 2500 }) // three credits
    expect(sweep()).toEqual([]) // clears svc/short's bit
    await e.put('svc/long', bytes('beat'), { ttlMs: 2500, context: e.get('svc/long')!.context }) // heartbeat
    expect(sweep().map(x => x.key)).toEqual(['svc/short'])
    expect(sweep()).toEqual([])
    expect(sweep()).toEqual([])
    expect(sweep().map(x => x.key)).toEqual(['svc/long'])
    expect(expired).toEqual(['svc/short', 'svc/long'])
    // Expiry is a versioned write (a last-writer-wins tombstone): the key reads as deleted.
    expect(e.get('svc/long')).toMatchObject({ values: [], deleted: true })
    expect(e.stats().expired).toBe(2)
    await e.close()
    // Expiry is logged: the keys do not come back after a restart.
    const again = await engine(volume)
    expect(again.get('svc/short')).toMatchObject({ values: [], deleted: true })
    expect(again.get('svc/long')).toMatchObject({ values: [], deleted: true })
    await again.close()
  })

  it('an owner\'s postponement never undoes a write made meanwhile, and a hold keeps the key from the owner until its end', async () => {
    const clock = new ManualClock(1_000)
    const e = await engine(null, { sweepPeriodMs: 1000, clock })
    const offered: string[] = []
    e.onExpiring = key => { offered.push(key) }
    const sweep = (): void => { clock.advance(1000); e.sweep() }
    await e.put('svc/a', bytes('beat 1'), { ttlMs: 2000, lww: true })
    for (let i = 0; i < 3; i++) sweep()
    expect(offered).toEqual(['svc/a'])
    // A beat lands while the owner is still deciding: its fresh credits stand whatever the owner says after.
    await e.put('svc/a', bytes('beat 2'), { ttlMs: 2000, lww: true })
    e.postponeExpiry('svc/a')
    sweep()
    sweep()
    expect(offered).toEqual(['svc/a'])
    sweep()
    expect(offered).toEqual(['svc/a', 'svc/a'])
    // Held until 5 s from now: not offered before, offered at the first sweep from then on.
    e.postponeExpiry('svc/a', clock.nowMs() + 5000)
    expect(e.expiryHeldUntil('svc/a')).toBe(clock.nowMs() + 5000)
    for (let i = 0; i < 4; i++) sweep()
    expect(offered).toHaveLength(2)
    sweep()
    expect(offered).toHaveLength(3)
    // A write ends the hold: the key gets its full credits and no hold.
    await e.put('svc/a', bytes('beat 3'), { ttlMs: 2000, lww: true })
    expect(e.expiryHeldUntil('svc/a')).toBe(0)
    e.postponeExpiry('svc/a', clock.nowMs() + 60_000) // stale: the write came first
    expect(e.expiryHeldUntil('svc/a')).toBe(0)
    for (let i = 0; i < 3; i++) sweep()
    expect(offered).toHaveLength(4)
  })

  it('a write without TTL makes a TTL key permanent', async () => {
    const e = await engine(null, { sweepPeriodMs: 100 })
    await e.put('k', bytes('1'), { ttlMs: 100 })
    await e.put('k', bytes('2'), { context: e.get('k')!.context })
    for (let i = 0; i < 5; i++) expect(e.sweep()).toEqual([])
    expect(e.stats().ttlKeys).toBe(0)
  })

  it('warns above siblingsWarn and refuses local writes above siblingsMax, dropping nothing', async () => {
    const e = await engine(null, { siblingsWarn: 2, siblingsMax: 3 })
    const warnings: WarningEvent[] = []
    e.events.on('warning', w => { warnings.push(w) })
    for (let i = 0; i < 3; i++) await e.put('k', bytes(`v${i}`))
    expect(warnings.filter(w => w.code === 'siblings')).toHaveLength(1)
    await expect(e.put('k', bytes('v3'))).rejects.toBeInstanceOf(SiblingLimitError)
    expect(e.get('k')!.values).toHaveLength(3)
    // A merge from another replica is never refused.
    const remote = update(EMPTY_STATE, [], { value: bytes('remote'), ts: { wall: 1, logical: 0 }, lww: false }, 'replica-b')
    const merged = await e.merge('k', remote)
    expect(merged.changed).toBe(true)
    expect(e.get('k')!.values).toHaveLength(4)
    expect((await e.merge('k', remote)).changed).toBe(false)
  })

  it('reaps a tombstone only while the state is exactly the one the caller checked', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(1_000)
    const e = await engine(volume, { clock })
    await e.put('k', bytes('1'))
    await e.delete('k', { context: e.get('k')!.context })
    const state = e.get('k')!.state
    await e.put('other', bytes('x'))
    expect(e.reap('other', e.get('other')!.state)).toBe(false) // not deleted
    expect(e.reap('k', EMPTY_STATE)).toBe(false) // not the state checked
    // Not while this replica's counter for the key is not behind the clock (two writes in one millisecond
    // put it a step ahead): a write right after forgetting the key would reuse the dot.
    expect(e.reap('k', state)).toBe(false)
    clock.advance(5)
    expect(e.reap('k', state)).toBe(true)
    expect(e.get('k')).toBeUndefined()
    await e.close()
    const again = await engine(volume)
    expect(again.get('k')).toBeUndefined()
    await again.close()
  })

  it('compacts on its own once the log outgrows walCompactAfterBytes, and restarts from the snapshot', async () => {
    const volume = new MemoryVolume()
    const e = await engine(volume, { walCompactAfterBytes: 8192, walSegmentBytesMax: 4096 })
    for (let i = 0; i < 400; i++) {
      const ctx = e.get(`k${i % 20}`)?.context
      await e.put(`k${i % 20}`, bytes(`value ${i}`), ctx === undefined ? {} : { context: ctx })
    }
    await e.close()
    expect(volume.snapshots.size).toBe(1)
    const again = await engine(volume)
    expect(again.size).toBe(20)
    expect(again.recovery!.snapshotRecords).toBe(21) // 20 keys and the dot-counter lease
    for (let i = 380; i < 400; i++) expect(text(again.get(`k${i % 20}`)!.values[0]!.value)).toBe(`value ${i}`)
    await again.close()
  })

  it('replays newest first: a removal after a key\'s writes keeps it removed, a write after the removal brings it back, over a snapshot too', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(1_000)
    const e = await engine(volume, { clock })
    for (const key of ['gone', 'back', 'kept']) await e.put(key, bytes(`${key} 1`))
    await e.compact() // the snapshot holds all three
    for (const key of ['gone', 'back']) await e.delete(key, { context: e.get(key)!.context })
    clock.advance(5)
    for (const key of ['gone', 'back']) expect(e.reap(key, e.get(key)!.state)).toBe(true) // removal records
    await e.put('back', bytes('back 2'))
    await e.put('kept', bytes('kept 2'), { context: e.get('kept')!.context })
    await e.close()
    const again = await engine(volume, { clock })
    expect(again.get('gone')).toBeUndefined()
    expect(again.get('back')!.values.map(v => text(v.value))).toEqual(['back 2'])
    expect(again.get('kept')!.values.map(v => text(v.value))).toEqual(['kept 2'])
    expect(again.size).toBe(2)
    // Superseded: the snapshot's three records, and in the log gone's delete and back's delete and removal.
    expect(again.recovery!.superseded).toBe(3 + 3)
    await again.close()
  })

  it('after recovery the clock passes the timestamps of records it skipped, even of keys since removed', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(10_000)
    const e = await engine(volume, { clock })
    // A replica whose clock runs 2 s ahead (within the accepted drift) wrote a key here, which was then
    // handed back and dropped: the only record of that timestamp is superseded by the removal.
    const ahead = update(EMPTY_STATE, [], { value: bytes('from ahead'), ts: { wall: 12_000, logical: 7 }, lww: false }, 'replica-b')
    await e.merge('handed-off', ahead)
    expect(e.drop('handed-off', e.get('handed-off')!.state)).toBe(true)
    await e.close()
    const again = await engine(volume, { clock })
    expect(again.get('handed-off')).toBeUndefined()
    const written = await again.put('new', bytes('after restart'))
    const sibling = written.state.siblings[0]!
    expect(sibling.wall > 12_000 || (sibling.wall === 12_000 && sibling.logical > 7)).toBe(true)
    await again.close()
  })

  it('after recovery the clock passes every accepted timestamp even when a far-future one in the log is rejected (found in review)', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(1_000_000)
    const e = await engine(volume, { clock })
    // One replica 30 s ahead (within the accepted drift), one 10 min ahead (its timestamp is refused by the
    // clock, though the state is stored).
    await e.merge('near', update(EMPTY_STATE, [], { value: bytes('near'), ts: { wall: 1_030_000, logical: 0 }, lww: true }, 'replica-b'))
    await e.merge('far', update(EMPTY_STATE, [], { value: bytes('far'), ts: { wall: 1_600_000, logical: 0 }, lww: true }, 'replica-c'))
    await e.close()
    clock.advance(1_000)
    const again = await engine(volume, { clock })
    expect(again.hlc.rejected).toBe(1)
    const ts = again.hlc.now()
    expect(ts.wall).toBe(1_030_000) // past 'near', not dragged to 'far'
    // So an lww overwrite of 'near' with its context wins, as it did before the restart.
    await again.put('near', bytes('overwritten'), { context: again.get('near')!.context, lww: true })
    expect(again.get('near')!.values.map(v => text(v.value))).toEqual(['overwritten'])
    await again.close()
  })

  it('compacts at open a recovered log that is over the threshold, without waiting for a write', async () => {
    const volume = new MemoryVolume()
    const e = await engine(volume, { walCompactAfterBytes: Number.MAX_SAFE_INTEGER })
    for (let i = 0; i < 400; i++) await e.put(`k${i % 20}`, bytes(`value ${i}`), { context: e.get(`k${i % 20}`)?.context })
    await e.close()
    expect(volume.snapshots.size).toBe(0)
    const again = await engine(volume, { walCompactAfterBytes: 8192 })
    await again.close() // waits for the compaction it started
    expect(volume.snapshots.size).toBe(1)
    const third = await engine(volume)
    expect(third.recovery!.snapshotRecords).toBe(21) // 20 keys and the dot-counter lease
    expect(third.recovery!.records).toBe(0)
    for (let i = 380; i < 400; i++) expect(text(third.get(`k${i % 20}`)!.values[0]!.value)).toBe(`value ${i}`)
    await third.close()
  })

  it('rejects bad input with typed errors and changes nothing', async () => {
    const e = await engine(null, { keyBytesMax: 8, valueBytesMax: 4 })
    await expect(e.put('', bytes('1'))).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(e.put('123456789', bytes('1'))).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(e.put('ééééé', bytes('1'))).rejects.toBeInstanceOf(InvalidKeyError) // 10 UTF-8 bytes
    await expect(e.put('k', bytes('12345'))).rejects.toBeInstanceOf(ValueTooLargeError)
    await expect(e.put('k', bytes('1'), { ttlMs: -1 })).rejects.toBeInstanceOf(ConfigError)
    await expect(e.put('k', 'text' as unknown as Uint8Array)).rejects.toBeInstanceOf(TypeError)
    const aborted = AbortSignal.abort()
    await expect(e.put('k', bytes('1'), { signal: aborted })).rejects.toBeInstanceOf(AbortError)
    expect(e.size).toBe(0)
    await expect(StorageEngine.open({ replicaId: '', clock: new ManualClock() })).rejects.toBeInstanceOf(ConfigError)
    await expect(StorageEngine.open({ replicaId: 'r', clock: new ManualClock(), siblingsWarn: 0 })).rejects.toBeInstanceOf(ConfigError)
    await e.close()
    expect(() => e.get('k')).toThrow(ClosedError)
  })

  it('a write with a read\'s context supersedes an lww value even through a coordinator whose clock lags and that has not seen the value', async () => {
    const x = await StorageEngine.open({ replicaId: 'x', clock: new ManualClock(10_000) })
    const c = await StorageEngine.open({ replicaId: 'c', clock: new ManualClock(5_000) })
    await x.put('k', bytes('first'), { lww: true })
    const read = x.get('k')!
    const written = await c.put('k', bytes('second'), { context: read.context, contextTs: read.ts })
    await x.merge('k', written.state)
    expect(x.get('k')!.values.map(s => text(s.value))).toEqual(['second'])
    expect(x.get('k')!.deleted).toBe(false)
  })

  it('keeps last-writer-wins keys to one value, across replicas and restarts', async () => {
    const volume = new MemoryVolume()
    const clock = new ManualClock(10_000)
    const a = await StorageEngine.open({ replicaId: 'a', clock, rng: new SeededRng(2), wal: new MemoryWal(volume) })
    const b = await StorageEngine.open({ replicaId: 'b', clock })
    await a.put('k', bytes('from a'), { lww: true })
    clock.advance(5)
    await b.put('k', bytes('from b'), { lww: true })
    await a.merge('k', b.state('k')!)
    expect(a.get('k')!.values.map(s => text(s.value))).toEqual(['from b'])
    await a.close()
    const again = await StorageEngine.open({ replicaId: 'a', clock: new ManualClock(0), rng: new SeededRng(3), wal: new MemoryWal(volume) })
    // The clock restarted behind the stored timestamps: the HLC resumes past them, so this write still wins.
    await again.put('k', bytes('later from a'), { lww: true })
    expect(again.get('k')!.values.map(s => text(s.value))).toEqual(['later from a'])
    await again.close()
  })
})

describe('storage engine: TTL on replica merges', () => {
  it('a stale copy neither attaches its TTL to a newer write nor refreshes an expiring key', async () => {
    const clock = new ManualClock(10_000)
    const a = await StorageEngine.open({ replicaId: 'a', clock, sweepPeriodMs: 100 })
    const b = await StorageEngine.open({ replicaId: 'b', clock, sweepPeriodMs: 100 })
    const old = await a.put('k', bytes('v1'), { ttlMs: 1000 })
    clock.advance(10)
    await a.put('k', bytes('v2'), { context: old.context })
    // b gets the newer write without TTL, then the stale one with it.
    await b.merge('k', a.state('k')!, { ttlMs: 0 })
    await b.merge('k', old.state, { ttlMs: 1000 })
    for (let i = 0; i < 30; i++) b.sweep()
    expect(b.get('k')?.values.map(s => text(s.value))).toEqual(['v2'])

    // An expiring key: merges that bring nothing new do not keep it alive.
    const hb = await a.put('hb', bytes('beat'), { ttlMs: 300 })
    await b.merge('hb', hb.state, { ttlMs: 300 })
    let sweeps = 0
    while (b.get('hb')?.deleted !== true && sweeps < 10) {
      await b.merge('hb', hb.state, { ttlMs: 300 })
      b.sweep()
      sweeps++
    }
    // Three credits (300 ms / 100 ms), gone at the fourth sweep, as without the merges.
    expect(sweeps).toBe(4)
  })

  it('does not reap a hot key whose counter ran ahead of the clock until the clock passes it, so no dot is reused', async () => {
    const clock = new ManualClock(1_000)
    const e = await engine(null, { clock })
    let context: VersionVector | undefined
    for (let i = 0; i < 100; i++) context = (await e.put('hot', bytes(`v${i}`), context === undefined ? {} : { context })).context
    const gone = await e.delete('hot', { context })
    // 101 writes in one millisecond: this replica's counter is 1100.
    clock.advance(50)
    expect(e.reap('hot', gone.state)).toBe(false)
    clock.advance(51)
    expect(e.reap('hot', gone.state)).toBe(true)
    // The next write after forgetting starts above every dot issued before.
    const fresh = await e.put('hot', bytes('new'))
    expect(vvEntries(fresh.state.vv)[0]![1]).toBeGreaterThan(1100)
  })

  it('expires a key into the record expiredValue gives, and a later write revives it', async () => {
    const clock = new ManualClock(1_000)
    const e = await engine(null, { clock, sweepPeriodMs: 100, expiredValue: (key, state) => bytes(`expired:${key}:${state.siblings.length}`) })
    await e.put('hb', bytes('beat'), { ttlMs: 100, lww: true })
    clock.advance(100); e.sweep()
    clock.advance(100); e.sweep()
    expect(e.get('hb')!.values.map(s => text(s.value))).toEqual(['expired:hb:1'])
    clock.advance(10)
    await e.put('hb', bytes('beat again'), { ttlMs: 100, lww: true })
    expect(e.get('hb')!.values.map(s => text(s.value))).toEqual(['beat again'])
  })
})

describe('storage engine: memory budget', () => {
  const kib = (n: number): Uint8Array => new Uint8Array(n * 1024)
  const budget = 64 * 1024

  it('refuses writes that would grow the store past memoryBytesMax, and keeps reads, deletes and shrinking writes', async () => {
    const e = await engine(new MemoryVolume(), { memoryBytesMax: budget })
    let written = 0
    await expect((async () => { for (;;) { await e.put(`k${written}`, kib(4)); written++ } })()).rejects.toMatchObject({ code: 'ERR_STORE_FULL', during: 'write', limitBytes: budget })
    expect(written).toBeGreaterThan(10)
    const stats = e.stats()
    expect(stats.memoryBytes).toBeLessThanOrEqual(budget)
    expect(stats.memoryBytes).toBeGreaterThan(budget - stateBytes('k0', e.state('k0')!) - 1)
    expect(stats.storeFull).toBe(1)
    // Reads work; a write that shrinks a key passes; a delete frees room for a new key.
    expect(e.get('k0')!.values[0]!.value!.length).toBe(4096)
    const read = e.get('k1')!
    await e.put('k1', kib(1), { context: read.context })
    await e.delete('k2', { context: e.get('k2')!.context })
    await e.put('new', kib(4))
    await expect(e.put('another', kib(8))).rejects.toBeInstanceOf(StoreFullError)
    await e.close()
  })

  it('takes merges up to the hard margin above the budget, then refuses them too', async () => {
    const e = await engine(new MemoryVolume(), { memoryBytesMax: budget })
    const remote = (value: Uint8Array, n: number) => update(EMPTY_STATE, [], { value, ts: { wall: 1000 + n, logical: 0 }, lww: false }, 'replica-b')
    let merged = 0
    for (; merged < 100; merged++) {
      try {
        await e.merge(`m${merged}`, remote(kib(4), merged))
      } catch (error) {
        expect(error).toMatchObject({ code: 'ERR_STORE_FULL', during: 'merge', limitBytes: Math.floor(budget * (1 + MEMORY_MERGE_MARGIN)) })
        break
      }
    }
    expect(e.stats().memoryBytes).toBeGreaterThan(budget)
    expect(e.stats().memoryBytes).toBeLessThanOrEqual(budget * (1 + MEMORY_MERGE_MARGIN))
    await expect(e.put('local', kib(1))).rejects.toBeInstanceOf(StoreFullError)
    await e.close()
  })

  it('stops recovery with StoreFullError when the log holds more than the budget allows, and reopens with a larger one', async () => {
    const volume = new MemoryVolume()
    const first = await engine(volume)
    for (let i = 0; i < 40; i++) await first.put(`k${i}`, kib(4))
    await first.close()
    await expect(engine(volume, { memoryBytesMax: budget })).rejects.toMatchObject({ code: 'ERR_STORE_FULL', during: 'recovery' })
    const reopened = await engine(volume, { memoryBytesMax: 4 * budget })
    expect(reopened.size).toBe(40)
    expect(reopened.stats().memoryBytes).toBe([...Array(40).keys()].reduce((sum, i) => sum + stateBytes(`k${i}`, reopened.state(`k${i}`)!), 0))
    await reopened.close()
  })
})

describe('storage engine: memory budget and expiry', () => {
  it('still expires TTL keys (heartbeats) and takes deletes when the store is past its budget', async () => {
    const clock = new ManualClock(1_000)
    const e = await engine(new MemoryVolume(), { clock, memoryBytesMax: 8 * 1024, sweepPeriodMs: 1000, expiredValue: () => new Uint8Array(200) })
    await e.put('svc', new Uint8Array(10), { ttlMs: 1000 })
    // A merge from another replica takes the store past its budget (merges may, up to the margin).
    await e.merge('big', update(EMPTY_STATE, [], { value: new Uint8Array(8 * 1024), ts: { wall: 1000, logical: 0 }, lww: false }, 'replica-b'))
    expect(e.stats().memoryBytes).toBeGreaterThan(8 * 1024)
    await expect(e.put('more', new Uint8Array(10))).rejects.toBeInstanceOf(StoreFullError)
    // The expiry record is larger than the beat it replaces; it is written anyway.
    let expired = 0
    for (let i = 0; i < 4 && expired === 0; i++) expired += e.sweep().length
    expect(expired).toBe(1)
    // A delete of a key this replica never held (a new, small tombstone) passes too.
    await e.delete('never-held')
    await e.close()
  })
})
