/**
 * The pure parts of the heartbeat suite's capacity search (bench/heartbeat.ts `--find-capacity`): which
 * service count to probe next given the probes so far, where the knee lies, and how late a stopped service
 * may be detected while a replica's failure detector is degraded (the stretched bound). No I/O and no clock
 * here, so the search is table-tested (test/unit/capacity-search.test.ts) without running a mesh.
 */

/** One measured probe: a service count and whether the mesh tracked it (see heartbeat.ts `passes`). */
export interface Probe {
  readonly services: number
  readonly pass: boolean
}

export interface SearchPlan {
  /** The first count probed. */
  readonly startServices: number
  /** The search stops once the failing count is within max(this, resolutionShare of the passing one) of it. */
  readonly resolutionServices: number
  readonly resolutionShare: number
  /** At most this many probes in all. */
  readonly probesMax: number
  /** Below this no probe is made (the stopped services must be a small part of the count). */
  readonly servicesMin: number
}

/**
 * How a probe is judged (`--knee-rule`):
 *
 * - 'tracked' (the default, issue 16's definition of the knee): zero false expirations (expired events for
 *   services still beating, and such services any peer lists expired at the end), every stopped service
 *   detected within the bound, and at least SUSTAINED_SHARE of the beats due after the start
 *   (steadyFromMs) acknowledged, so that a run whose generator fell behind for good (and so beat less often
 *   than once an interval) cannot pass. The start is judged by the false expirations alone: there every
 *   service's first beat is a new key's full quorum write, and a generator that falls an interval behind
 *   skips one beat of every service (bench/heartbeat.ts pump) while it catches up. Skipped beats are
 *   reported, and the whole run's rate beside the steady share, but they fail nothing by themselves.
 * - 'strict': all of that, at least SUSTAINED_SHARE of every scheduled beat of the whole run acknowledged,
 *   and no beat skipped at all.
 */
export type KneeRule = 'tracked' | 'strict'
export const KNEE_RULES: readonly KneeRule[] = ['tracked', 'strict']
/** Share of the beats a passing probe acknowledged, at least (after the start; 'strict': of the whole run). */
export const SUSTAINED_SHARE = 0.99
/** The start of a run, not judged by the sustained share under 'tracked': its first this many ms, or its first
 * half if that is shorter. */
export const STEADY_AFTER_MS = 10_000

/** Where the steady part of a run of `runMs` begins: beats due from then on count for the steady share. */
export function steadyFromMs (runMs: number): number {
  return Math.min(STEADY_AFTER_MS, runMs / 2)
}

/** What the verdict reads of one run (bench/heartbeat.ts RunSummary). */
export interface ProbeFigures {
  readonly beatsPerS: number
  readonly scheduledPerS: number
  /** Share of the beats due after the start (steadyFromMs) that were acknowledged, 0..1. */
  readonly steadyShare: number
  readonly skipped: number
  readonly falseExpirations: number
  readonly listedFalse: number
  readonly starved: number
  readonly early: number
  readonly stop: number
  readonly detected: number
  readonly withinBound: number
  readonly boundMs: number
}

/** Why a run fails under `rule`; empty when it passes. */
export function probeFailures (f: ProbeFigures, rule: KneeRule): string[] {
  const why: string[] = []
  const beats = `${percent(f.steadyShare)} of the beats due after the start acknowledged; whole run ${Math.round(f.beatsPerS)}/s of ${Math.round(f.scheduledPerS)}/s, ${f.skipped} skipped`
  if (f.steadyShare < SUSTAINED_SHARE) why.push(`beats not sustained (${beats})`)
  else if (rule === 'strict' && f.beatsPerS < SUSTAINED_SHARE * f.scheduledPerS) why.push(`beats not sustained over the whole run (${beats})`)
  else if (rule === 'strict' && f.skipped > 0) why.push(`beats skipped (${beats})`)
  if (f.falseExpirations + f.listedFalse > 0) why.push(`${f.falseExpirations} false expirations (${f.starved} starved, ${f.early} early), ${f.listedFalse} listed expired`)
  if (f.withinBound < f.stop) why.push(`${f.withinBound}/${f.stop} stopped detected within ${f.boundMs} ms (${f.detected} at all)`)
  return why
}

function percent (share: number): string {
  return `${Math.floor(share * 10_000 + 1e-6) / 100}%`
}

/** Probed counts are rounded to this many services. */
export const PROBE_GRAIN = 50

/**
 * Where the probes put the knee: `failed` is the smallest count that failed, `passed` the largest count
 * below it that passed (null if none yet). A pass above a failure is noise on a shared machine or a
 * threshold the load sits on: it is listed in `inconsistent`, never taken as the knee.
 */
export function bracket (probes: readonly Probe[]): { passed: number | null; failed: number | null; inconsistent: number[] } {
  const fails = probes.filter(p => !p.pass).map(p => p.services)
  const failed = fails.length === 0 ? null : Math.min(...fails)
  const below = probes.filter(p => p.pass && (failed === null || p.services < failed)).map(p => p.services)
  const passed = below.length === 0 ? null : Math.max(...below)
  const inconsistent = probes.filter(p => p.pass && failed !== null && p.services >= failed).map(p => p.services)
  return { passed, failed, inconsistent }
}

/**
 * The next count to probe, or null when the search is over: double from the start while probes pass, halve
 * while they fail, then bisect between the largest pass and the smallest failure until they are within the
 * resolution; never more than `probesMax` probes, never a count probed before, never below `servicesMin`.
 */
export function nextProbe (probes: readonly Probe[], plan: SearchPlan): number | null {
  if (probes.length >= plan.probesMax) return null
  if (probes.length === 0) return Math.max(plan.servicesMin, plan.startServices)
  const { passed, failed } = bracket(probes)
  const tried = new Set(probes.map(p => p.services))
  let next: number
  if (failed === null) {
    next = 2 * passed!
  } else if (passed === null) {
    next = grain(failed / 2)
    if (next < plan.servicesMin) return null
  } else {
    if (failed - passed <= Math.max(plan.resolutionServices, plan.resolutionShare * passed)) return null
    next = grain((passed + failed) / 2)
    if (next <= passed || next >= failed) return null
  }
  return tried.has(next) ? null : next
}

function grain (services: number): number {
  return Math.max(PROBE_GRAIN, Math.round(services / PROBE_GRAIN) * PROBE_GRAIN)
}

/**
 * The latest a stopped service's expiry may come, in ms past (its last write + its TTL), when every sweep
 * runs on time and `stretch` is how many sweeps take one TTL credit (src/core/storage/ttl-clock.ts,
 * src/core/replication/health.ts). A write gives the key c = ceil(ttl / sweep) credits, and it expires at
 * the (c + 1)-th sweep after the write that takes a credit. Healthy, every sweep takes one; degraded, one in
 * every `stretch` consecutive sweeps does (a healthy sweep takes one too and restarts the count), so that is
 * at most the stretch·(c + 1)-th sweep after the write, and the first sweep comes within one period of it:
 * the expiry comes at most stretch·(c + 1)·sweep after the write. With stretch 1 that is within two sweeps
 * past the TTL for any TTL (since c·sweep < TTL + sweep; one sweep when the TTL is a multiple of it), the
 * bound the TTL clock documents; with DETECTOR_STRETCH (4), a 3 s TTL and a 1 s sweep it is 13 s past the
 * TTL (16 s after the last beat).
 *
 * The expiry check's hold while another replica is degraded or silent ends DETECTOR_STRETCH TTLs after the
 * last beat (src/core/replication/expiry.ts), within this bound but for the check's round trip. Not
 * included, since neither has a bound of its own: a sweep that itself runs late (past
 * HEALTH_SWEEP_LAG_PERIODS it makes the detector degraded), and the wait while every other replica that
 * answers is degraded or refuses the check as overloaded (the key is offered again at each later sweep
 * until one of them is healthy).
 */
export function detectionBoundMs (ttlMs: number, sweepPeriodMs: number, stretch: number): number {
  const credits = Math.max(1, Math.ceil(ttlMs / sweepPeriodMs))
  return stretch * (credits + 1) * sweepPeriodMs - ttlMs
}
