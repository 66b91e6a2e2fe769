/**
 * The heartbeat benchmark's capacity search (bench/capacity.ts): it brackets the knee of a mesh whose probes
 * pass up to a true capacity, within the resolution or the probe budget, never probing a count twice; and
 * the stretched detection bound it states is the worst case of the real TTL clock under a degraded detector.
 */
import { describe, expect, it } from 'vitest'
import { type Probe, type ProbeFigures, type SearchPlan, bracket, detectionBoundMs, nextProbe, probeFailures, steadyFromMs } from '../../bench/capacity.js'
import { ManualClock } from '../../src/core/env.js'
import { DETECTOR_STRETCH, DetectorHealth, HEALTH_LOOP_DELAY_MS } from '../../src/core/replication/health.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

const PLAN: SearchPlan = { startServices: 1000, resolutionServices: 250, resolutionShare: 0.05, probesMax: 8, servicesMin: 200 }

/** Runs the search against a mesh that passes exactly the counts up to `capacity`. */
function search (capacity: number, plan = PLAN): Probe[] {
  const probes: Probe[] = []
  for (let n = nextProbe(probes, plan); n !== null; n = nextProbe(probes, plan)) probes.push({ services: n, pass: n <= capacity })
  return probes
}

describe('capacity search', () => {
  for (const capacity of [3000, 5200, 700, 1000]) {
    it(`brackets a knee of ${capacity} services within max(250, 5%) in at most 8 probes`, () => {
      const probes = search(capacity)
      const { passed, failed, inconsistent } = bracket(probes)
      expect(probes.length).toBeLessThanOrEqual(PLAN.probesMax)
      expect(new Set(probes.map(p => p.services)).size).toBe(probes.length)
      expect(passed).not.toBeNull()
      expect(passed!).toBeLessThanOrEqual(capacity)
      expect(failed!).toBeGreaterThan(capacity)
      expect(failed! - passed!).toBeLessThanOrEqual(Math.max(250, 0.05 * passed!))
      expect(inconsistent).toEqual([])
    })
  }

  it('doubles from the start while probes pass: 1000, 2000, 4000, 8000 then bisects', () => {
    expect(search(5200).slice(0, 5).map(p => p.services)).toEqual([1000, 2000, 4000, 8000, 6000])
  })

  it('stops at the probe budget with the bracket so far', () => {
    const probes = search(10_000_000)
    expect(probes.map(p => p.services)).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000])
    expect(bracket(probes)).toEqual({ passed: 128000, failed: null, inconsistent: [] })
  })

  it('gives up below the smallest count it may probe', () => {
    const probes = search(100)
    expect(probes.map(p => p.services)).toEqual([1000, 500, 250])
    expect(bracket(probes).passed).toBeNull()
  })

  it('takes the largest pass below the smallest failure, and lists a pass above it as inconsistent', () => {
    const probes: Probe[] = [{ services: 1000, pass: true }, { services: 2000, pass: false }, { services: 1500, pass: true }, { services: 4000, pass: true }]
    expect(bracket(probes)).toEqual({ passed: 1500, failed: 2000, inconsistent: [4000] })
    expect(nextProbe(probes, PLAN)).toBe(1750)
  })
})

describe('probe verdict', () => {
  /** A clean run of 20,000 services: every beat acknowledged, nothing expired falsely, 100 of 100 detected. */
  const clean: ProbeFigures = { beatsPerS: 19_960, scheduledPerS: 19_967, steadyShare: 1, skipped: 0, falseExpirations: 0, listedFalse: 0, starved: 0, early: 0, stop: 100, detected: 100, withinBound: 100, boundMs: 2000 }

  it('passes a clean run by either rule', () => {
    expect(probeFailures(clean, 'tracked')).toEqual([])
    expect(probeFailures(clean, 'strict')).toEqual([])
  })

  it('fails a run with skipped beats only by the strict rule while 99% of the beats were acknowledged', () => {
    const skipped = { ...clean, beatsPerS: 19_900, skipped: 1354 }
    expect(probeFailures(skipped, 'tracked')).toEqual([])
    expect(probeFailures(skipped, 'strict')).toEqual(['beats skipped (100% of the beats due after the start acknowledged; whole run 19900/s of 19967/s, 1354 skipped)'])
  })

  it('judges the start by false expirations alone under the tracked rule: a generator that caught up after it passes', () => {
    // One beat of every service skipped while the generator caught up an interval at the start; 98.3% of the
    // whole run, all of it after the start.
    const caughtUp = { ...clean, beatsPerS: 19_630, skipped: 20_000, steadyShare: 0.9995 }
    expect(probeFailures(caughtUp, 'tracked')).toEqual([])
    expect(probeFailures(caughtUp, 'strict')[0]).toMatch(/^beats not sustained over the whole run \(99\.95% of the beats due after the start acknowledged; whole run 19630\/s of 19967\/s, 20000 skipped\)/)
  })

  it('fails by either rule a run that acknowledged less than 99% of the beats due after the start, skipped or not', () => {
    for (const f of [{ ...clean, beatsPerS: 19_700, steadyShare: 0.985, skipped: 80_000 }, { ...clean, beatsPerS: 19_900, steadyShare: 0.9899 }]) {
      for (const rule of ['tracked', 'strict'] as const) {
        const failures = probeFailures(f, rule)
        expect(failures).toHaveLength(1)
        expect(failures[0]).toMatch(/^beats not sustained \(98\.(5|99)% of the beats due after the start acknowledged/)
      }
    }
  })

  it('starts the steady part 10 s into a run, or half-way through a shorter one', () => {
    expect(steadyFromMs(60_000)).toBe(10_000)
    expect(steadyFromMs(12_000)).toBe(6000)
  })

  it('fails by either rule on one false expiration, one service listed expired, or one stopped service detected late', () => {
    const cases: Array<[Partial<ProbeFigures>, RegExp]> = [
      [{ falseExpirations: 1, starved: 1 }, /^1 false expirations \(1 starved, 0 early\)/],
      [{ listedFalse: 1 }, /^0 false expirations .*1 listed expired/],
      [{ withinBound: 99 }, /^99\/100 stopped detected within 2000 ms/]
    ]
    for (const [change, why] of cases) {
      for (const rule of ['tracked', 'strict'] as const) {
        const failures = probeFailures({ ...clean, ...change }, rule)
        expect(failures).toHaveLength(1)
        expect(failures[0]).toMatch(why)
      }
    }
  })
})

describe('stretched detection bound', () => {
  /**
   * The latest expiry, past the TTL, of a key written 1 ms after a sweep, over every phase of the degraded
   * detector's sweep count, with sweeps every `sweepMs` on a manual clock.
   */
  async function worstDelayMs (ttlMs: number, sweepMs: number, degraded: boolean): Promise<number> {
    let worst = -Infinity
    for (let phase = 0; phase < DETECTOR_STRETCH; phase++) {
      const clock = new ManualClock(0)
      const engine = await StorageEngine.open({ replicaId: 'a', clock, sweepPeriodMs: sweepMs })
      const health = new DetectorHealth()
      const sweep = (): void => {
        if (degraded) health.note('event-loop delay', 10 * HEALTH_LOOP_DELAY_MS, HEALTH_LOOP_DELAY_MS, clock.nowMs())
        engine.sweep({ takeCredit: health.takeCredit(clock.nowMs()) })
      }
      for (let i = 0; i < phase; i++) { clock.advance(sweepMs); sweep() }
      clock.advance(1)
      const writtenMs = clock.nowMs()
      await engine.put('svc', new Uint8Array([1]), { ttlMs })
      clock.advance(sweepMs - 1)
      for (let i = 0; !engine.get('svc')!.deleted; i++) {
        expect(i).toBeLessThan(1000)
        sweep()
        if (!engine.get('svc')!.deleted) clock.advance(sweepMs)
      }
      worst = Math.max(worst, clock.nowMs() - writtenMs - ttlMs)
    }
    return worst
  }

  for (const [ttlMs, sweepMs] of [[3000, 1000], [2500, 1000], [1000, 1000], [500, 1000], [3000, 700]] as const) {
    it(`is the TTL clock's worst case, ${ttlMs} ms TTL and ${sweepMs} ms sweep, healthy and degraded`, async () => {
      // Written 1 ms after a sweep: the worst case comes within that 1 ms of the bound.
      expect(await worstDelayMs(ttlMs, sweepMs, false)).toBe(detectionBoundMs(ttlMs, sweepMs, 1) - 1)
      expect(await worstDelayMs(ttlMs, sweepMs, true)).toBe(detectionBoundMs(ttlMs, sweepMs, DETECTOR_STRETCH) - 1)
      expect(detectionBoundMs(ttlMs, sweepMs, 1)).toBeLessThanOrEqual(2 * sweepMs)
    })
  }

  it('is 13 s past a 3 s TTL with 1 s sweeps stretched 4 times', () => {
    expect(DETECTOR_STRETCH).toBe(4)
    expect(detectionBoundMs(3000, 1000, DETECTOR_STRETCH)).toBe(13_000)
  })
})
