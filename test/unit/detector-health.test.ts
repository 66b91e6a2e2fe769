/**
 * The failure detector's own health (src/core/replication/health.ts): degraded past a signal's threshold
 * and for HEALTH_RECOVERY_MS after, sweeps stretched DETECTOR_STRETCH times meanwhile (never more), and the
 * TTL clock's held-back turn changing nothing.
 */
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/core/env.js'
import { DETECTOR_STRETCH, DetectorHealth, HEALTH_LOOP_DELAY_MS, HEALTH_RECOVERY_MS, MASS_EXPIRY_MIN, MASS_EXPIRY_SHARE } from '../../src/core/replication/health.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

describe('detector health', () => {
  it('is degraded past a threshold, for the recovery time after, with the reason', () => {
    const h = new DetectorHealth()
    h.note('event-loop delay', HEALTH_LOOP_DELAY_MS, HEALTH_LOOP_DELAY_MS, 1000)
    expect(h.state(1000)).toMatchObject({ state: 'healthy', reason: null, stretch: 1 })
    h.note('event-loop delay', 3000, HEALTH_LOOP_DELAY_MS, 1000)
    expect(h.state(1000)).toMatchObject({ state: 'degraded', reason: 'event-loop delay 3000 ms (threshold 500 ms)', sinceMs: 1000, stretch: DETECTOR_STRETCH, episodes: 1 })
    h.note('sweep lag', 2500, 2000, 3000)
    expect(h.state(3000)).toMatchObject({ state: 'degraded', reason: 'sweep lag 2500 ms (threshold 2000 ms)', sinceMs: 1000, episodes: 1 })
    expect(h.state(3000 + HEALTH_RECOVERY_MS - 1).state).toBe('degraded')
    expect(h.state(3000 + HEALTH_RECOVERY_MS)).toMatchObject({ state: 'healthy', sinceMs: null })
  })

  it(`a mass expiry: at least ${MASS_EXPIRY_MIN} services' keys due in one sweep and more than ${MASS_EXPIRY_SHARE * 100}% of those held; its answers stay healthy`, () => {
    const h = new DetectorHealth()
    // At the share exactly, or under the minimum: healthy.
    expect(h.noteDue(1000, MASS_EXPIRY_MIN, MASS_EXPIRY_MIN / MASS_EXPIRY_SHARE)).toBe(false)
    expect(h.noteDue(1000, MASS_EXPIRY_MIN - 1, MASS_EXPIRY_MIN)).toBe(false)
    expect(h.state(1000).state).toBe('healthy')
    expect(h.noteDue(1000, MASS_EXPIRY_MIN, MASS_EXPIRY_MIN / MASS_EXPIRY_SHARE - 1)).toBe(true)
    expect(h.state(1000)).toMatchObject({ state: 'degraded', reason: 'mass expiry (100 of 999 keys due in one sweep, threshold 10%)', stretch: DETECTOR_STRETCH, episodes: 1 })
    expect(h.degraded(1000)).toBe(true)
    expect(h.answersDegraded(1000)).toBe(false)
    // A stall meanwhile: its answers say degraded, and a later mass expiry does not hide that reason.
    h.note('event-loop delay', 3000, HEALTH_LOOP_DELAY_MS, 2000)
    expect(h.answersDegraded(2000)).toBe(true)
    h.noteDue(3000, 500, 1000)
    expect(h.state(3000).reason).toBe('event-loop delay 3000 ms (threshold 500 ms)')
    // The stall's recovery time ends first (2000 + 5000); the mass expiry's (3000 + 5000) later.
    expect(h.answersDegraded(2000 + HEALTH_RECOVERY_MS)).toBe(false)
    expect(h.degraded(2000 + HEALTH_RECOVERY_MS)).toBe(true)
    expect(h.degraded(3000 + HEALTH_RECOVERY_MS)).toBe(false)
    expect(h.state(3000).episodes).toBe(1)
  })

  it('takes a credit every sweep while healthy and every DETECTOR_STRETCH-th while degraded', () => {
    const h = new DetectorHealth()
    expect([1, 2, 3].map(t => h.takeCredit(t))).toEqual([true, true, true])
    h.note('log sync', 10_000, 2000, 10)
    const taken = Array.from({ length: 4 * DETECTOR_STRETCH }, (_, i) => h.takeCredit(10 + i)).filter(Boolean).length
    expect(taken).toBe(4)
    expect(h.state(20).heldSweeps).toBe(4 * (DETECTOR_STRETCH - 1))
    expect(h.takeCredit(10 + HEALTH_RECOVERY_MS)).toBe(true)
  })

  it('a held-back sweep neither takes credits nor expires anything; stretched, a key expires DETECTOR_STRETCH times later', async () => {
    const clock = new ManualClock(0)
    const engine = await StorageEngine.open({ replicaId: 'a', clock, sweepPeriodMs: 1000 })
    await engine.put('svc', new Uint8Array([1]), { ttlMs: 2000 })
    for (let i = 0; i < 10; i++) expect(engine.sweep({ takeCredit: false })).toEqual([])
    expect(engine.get('svc')!.deleted).toBe(false)
    // Degraded throughout: 2 credits, then due, each taken every DETECTOR_STRETCH sweeps.
    const h = new DetectorHealth()
    h.note('event-loop delay', 9999, HEALTH_LOOP_DELAY_MS, 0)
    let sweeps = 0
    while (!engine.get('svc')!.deleted && sweeps < 100) { engine.sweep({ takeCredit: h.takeCredit(1) }); sweeps++ }
    expect(sweeps).toBe(3 * DETECTOR_STRETCH)
  })
})
