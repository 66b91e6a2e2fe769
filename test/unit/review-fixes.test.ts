// Regression tests for findings of the code review: each failed before its fix.
import { describe, expect, it } from 'vitest'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { SeededRng, silentLogger } from '../../src/core/env.js'
import { WalCorruptError, WalFailedError } from '../../src/core/errors.js'
import { testSwimConfig } from '../../src/core/membership/config.js'
import { INCARNATION_MAX, Swim } from '../../src/core/membership/swim.js'
import { DEFAULT_WAL_OPTIONS, Wal } from '../../src/core/storage/wal.js'

describe('review fixes', () => {
  it('an overlapping sync that succeeds after another failed does not acknowledge anything', async () => {
    const adapter = new MemoryWal()
    let calls = 0
    let failFirst!: (e: Error) => void
    let releaseSecond!: () => void
    adapter.sync = () => {
      calls++
      if (calls === 1) return new Promise((_resolve, reject) => { failFirst = reject })
      return new Promise(resolve => { releaseSecond = resolve })
    }
    const { wal } = await Wal.open(adapter, { ...DEFAULT_WAL_OPTIONS, log: silentLogger, rng: new SeededRng(1) }, () => {})
    wal.append(new Uint8Array([1]))
    const first = wal.sync()
    await new Promise(resolve => setTimeout(resolve, 0))
    wal.append(new Uint8Array([2]))
    const second = wal.sync()
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(calls).toBe(2) // both in flight
    failFirst(new Error('EIO'))
    await expect(first).rejects.toBeInstanceOf(WalFailedError)
    releaseSecond()
    await expect(second).rejects.toBeInstanceOf(WalFailedError)
    expect(() => wal.append(new Uint8Array([3]))).toThrow(WalFailedError)
  })

  it('a recovery that fails changes nothing on disk, not even a torn tail it found before the failure', async () => {
    const volume = new MemoryVolume()
    const options = { ...DEFAULT_WAL_OPTIONS, log: silentLogger, rng: new SeededRng(1) }
    const first = await Wal.open(new MemoryWal(volume), options, () => {})
    for (let i = 0; i < 10; i++) first.wal.append(Uint8Array.of(i))
    await first.wal.sync()
    await first.wal.compact([Uint8Array.of(100), Uint8Array.of(101)])
    for (let i = 10; i < 20; i++) first.wal.append(Uint8Array.of(i))
    await first.wal.sync()
    await first.wal.close()
    const segment = [...volume.segments.keys()].at(-1)!
    const torn = volume.read(segment)
    volume.write(segment, torn.subarray(0, torn.length - 3)) // the last frame was torn
    const snapshot = [...volume.snapshots.keys()][0]!
    volume.snapshots.get(snapshot)![20]! ^= 0x01 // and the snapshot is damaged
    const before = volume.read(segment)
    await expect(Wal.open(new MemoryWal(volume), options, () => {})).rejects.toBeInstanceOf(WalCorruptError)
    expect(volume.read(segment)).toEqual(before)
  })

  it('ignores an update with an absurd incarnation instead of refuting past what decoders accept', () => {
    const swim = new Swim('me', {}, 0, testSwimConfig(), new SeededRng(1), 0)
    swim.receive('attacker', { type: 'gossip', updates: [{ id: 'me', incarnation: Number.MAX_SAFE_INTEGER, state: 'dead', meta: {} }] }, 1)
    expect(swim.incarnation).toBe(0)
    expect(swim.stats.updatesDropped).toBe(1)
    swim.receive('peer', { type: 'gossip', updates: [{ id: 'me', incarnation: INCARNATION_MAX, state: 'suspect', meta: {} }] }, 2)
    expect(swim.incarnation).toBe(INCARNATION_MAX + 1) // still exact and decodable
  })
})
