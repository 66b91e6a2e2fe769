// Regression tests for findings of the code review: each failed before its fix.
import { describe, expect, it } from 'vitest'
import { MemoryWal } from '../../src/adapters/wal-memory.js'
import { SeededRng, silentLogger } from '../../src/core/env.js'
import { WalFailedError } from '../../src/core/errors.js'
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

  it('ignores an update with an absurd incarnation instead of refuting past what decoders accept', () => {
    const swim = new Swim('me', {}, 0, testSwimConfig(), new SeededRng(1), 0)
    swim.receive('attacker', { type: 'gossip', updates: [{ id: 'me', incarnation: Number.MAX_SAFE_INTEGER, state: 'dead', meta: {} }] }, 1)
    expect(swim.incarnation).toBe(0)
    expect(swim.stats.updatesDropped).toBe(1)
    swim.receive('peer', { type: 'gossip', updates: [{ id: 'me', incarnation: INCARNATION_MAX, state: 'suspect', meta: {} }] }, 2)
    expect(swim.incarnation).toBe(INCARNATION_MAX + 1) // still exact and decodable
  })
})
