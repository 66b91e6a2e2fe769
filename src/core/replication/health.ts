/**
 * The failure detector's own health (Lifeguard's local health awareness, applied to the TTL sweep): a replica
 * that is itself slow — its event loop stalled, its own log syncs pending, its sweeps running late, or its
 * admission control turning work away — receives beats late or not at all, and would expire services that
 * are still beating. While it notices that, it calls
 * itself degraded and stretches its TTL credits instead: a sweep takes a credit only every
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

  /** Degraded from `nowMs` until HEALTH_RECOVERY_MS after it, for `reason` (a new episode if it was healthy). */
  private degrade (nowMs: number, reason: string): void {
    if (!this.degraded(nowMs)) {
      this.sinceMs = nowMs
      this.episodes++
    }
    this.badUntilMs = nowMs + HEALTH_RECOVERY_MS
    this.reason = reason
  }

  degraded (nowMs: number): boolean {
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
