/**
 * The failure detector's own health (Lifeguard's local health awareness, applied to the TTL sweep): a replica
 * that is itself slow — its event loop stalled, its own log syncs pending, its sweeps running late, or its
 * admission control turning work away — receives beats late or not at all, and would expire services that
 * are still beating. A sweep that finds a large share of the services it holds due at once is a signal too
 * (Eureka's self-preservation, bounded): services rarely stop together, while a client or a mesh too slow to
 * carry every beat makes many late at once, and expiring them would add the expiries' own work (and, when
 * they come back, new-key writes) to the overload that caused it. That one says nothing against this
 * replica's own view (it is not slow; the beats are), so it stretches this replica's sweeps and holds its own
 * expiry checks, but its answers to other replicas' checks stay healthy (`answersDegraded`): past the hold
 * they decide, so detection stays bounded while every replica sees the same lateness. While it notices any
 * of these, it calls itself degraded and stretches its TTL credits instead: a sweep takes a credit only every
 * DETECTOR_STRETCH-th time, so a service's TTL runs DETECTOR_STRETCH times slower here, never more. Once every
 * signal has been back under its threshold for HEALTH_RECOVERY_MS it is healthy again, and keys expire by the
 * normal rule from the credits they have left (what is still overdue expires; what was beaten meanwhile was
 * refreshed). The trade-off: while a replica is sick, the services it holds are detected up to
 * DETECTOR_STRETCH times later.
 */

/** Event-loop delay (a timer's lateness) past which the detector is degraded. */
export const HEALTH_LOOP_DELAY_MS = 500
/** A sync of this peer's own log pending (or taking) longer than this makes the detector degraded: its disk
 * is behind, and every write and beat it takes waits for it. */
export const HEALTH_LOG_SYNC_MS = 2000
/** A TTL sweep that runs this many sweep periods late makes the detector degraded. */
export const HEALTH_SWEEP_LAG_PERIODS = 2
/**
 * A sweep that finds at least MASS_EXPIRY_MIN services' keys due, and more than MASS_EXPIRY_SHARE of the
 * services' keys held here, makes the detector degraded ('mass expiry'). 100 stopped services of the
 * heartbeat benchmark's 2,000 (`--quick`) are 5%: under the share. Other TTL keys (a cache's, written
 * together and expiring together) do not count.
 */
export const MASS_EXPIRY_SHARE = 0.1
export const MASS_EXPIRY_MIN = 100
/** How long every signal must stay under its threshold before the detector is healthy again. */
export const HEALTH_RECOVERY_MS = 5000
/** While degraded, a sweep takes a TTL credit only every this many sweeps (the stretch, bounded). */
export const DETECTOR_STRETCH = 4

export interface DetectorState {
  readonly state: 'healthy' | 'degraded'
  /** What made it degraded last, with the figure and its threshold; null while healthy. */
  readonly reason: string | null
  /** Since when (the host clock's ms) it has been degraded; null while healthy. */
  readonly sinceMs: number | null
  /** How many times slower TTLs run here now: 1 healthy, DETECTOR_STRETCH degraded. */
  readonly stretch: number
  /** Times it went degraded, and sweeps it held back, since the peer started. */
  readonly episodes: number
  readonly heldSweeps: number
}

export class DetectorHealth {
  private badUntilMs = -Infinity
  /** Until when the last mass expiry keeps it degraded (noteDue): its own sweeps and checks, not its answers. */
  private massUntilMs = -Infinity
  private reason: string | null = null
  private sinceMs: number | null = null
  private sweeps = 0
  private episodes = 0
  private heldSweeps = 0

  /** A figure of one signal at `nowMs`: past its threshold, the detector is degraded for a while. */
  note (what: 'event-loop delay' | 'log sync' | 'sweep lag', valueMs: number, thresholdMs: number, nowMs: number): void {
    if (!(valueMs > thresholdMs)) return
    this.degrade(nowMs, `${what} ${Math.round(valueMs)} ms (threshold ${thresholdMs} ms)`)
  }

  /**
   * This peer refused a beat (admission control): it cannot take what the mesh sends it, so it cannot vouch
   * that a service whose beats it turned away has stopped. Degraded, as by any signal.
   */
  noteOverload (nowMs: number, detail: string): void {
    this.degrade(nowMs, `refusing beats (${detail})`)
  }

  /**
   * One sweep found `due` of the `held` services' keys here due: past MASS_EXPIRY_MIN and MASS_EXPIRY_SHARE
   * of them, too many late at once to be services that stopped. Returns whether that made it degraded.
   */
  noteDue (nowMs: number, due: number, held: number): boolean {
    if (due < MASS_EXPIRY_MIN || !(due > MASS_EXPIRY_SHARE * held)) return false
    this.degrade(nowMs, `mass expiry (${due} of ${held} keys due in one sweep, threshold ${Math.round(MASS_EXPIRY_SHARE * 100)}%)`, true)
    return true
  }

  /**
   * Degraded from `nowMs` until HEALTH_RECOVERY_MS after it, for `reason` (a new episode if it was healthy);
   * `mass` (a mass expiry) leaves what it answers other replicas healthy.
   */
  private degrade (nowMs: number, reason: string, mass = false): void {
    if (!this.degraded(nowMs)) {
      this.sinceMs = nowMs
      this.episodes++
    }
    // A mass expiry does not hide a signal of this replica's own slowness, which decides what it answers.
    if (!mass || !this.answersDegraded(nowMs)) this.reason = reason
    if (mass) this.massUntilMs = nowMs + HEALTH_RECOVERY_MS
    else this.badUntilMs = nowMs + HEALTH_RECOVERY_MS
  }

  /** Degraded by any signal: its sweeps are stretched, and it holds its own expiry checks. */
  degraded (nowMs: number): boolean {
    return nowMs < this.badUntilMs || nowMs < this.massUntilMs
  }

  /**
   * What it answers other replicas' expiry checks: degraded only by a signal of its own slowness (a stall,
   * its disk, late sweeps, refusals), not by a mass expiry, which it only sees.
   */
  answersDegraded (nowMs: number): boolean {
    return nowMs < this.badUntilMs
  }

  /** Whether the sweep running now takes a credit from every TTL key (always while healthy). */
  takeCredit (nowMs: number): boolean {
    if (!this.degraded(nowMs)) { this.sweeps = 0; return true }
    this.sweeps++
    if (this.sweeps % DETECTOR_STRETCH === 0) return true
    this.heldSweeps++
    return false
  }

  state (nowMs: number): DetectorState {
    const degraded = this.degraded(nowMs)
    return {
      state: degraded ? 'degraded' : 'healthy',
      reason: degraded ? this.reason : null,
      sinceMs: degraded ? this.sinceMs : null,
      stretch: degraded ? DETECTOR_STRETCH : 1,
      episodes: this.episodes,
      heldSweeps: this.heldSweeps
    }
  }
}
