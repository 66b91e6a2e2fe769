/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): timestamps that follow wall-clock
 * time when clocks agree, and still order every event after the events it has seen when they do not. meshkv
 * stamps every write with one; the opt-in last-writer-wins mode orders siblings by it.
 */
import type { Clock } from '../env.js'

export interface Hlc {
  /** Milliseconds since the epoch, the largest physical time seen. */
  readonly wall: number
  /** Counter that orders events within one `wall` millisecond. */
  readonly logical: number
}

export const ZERO_HLC: Hlc = Object.freeze({ wall: 0, logical: 0 })

export function compareHlc (a: Hlc, b: Hlc): number {
  return a.wall !== b.wall ? a.wall - b.wall : a.logical - b.logical
}

export class HybridClock {
  private last: Hlc = ZERO_HLC
  /** Remote timestamps ignored because they were further ahead of our clock than `maxDriftMs`. */
  rejected = 0

  /**
   * @param maxDriftMs a remote timestamp more than this far ahead of local time is not adopted, so one peer
   *   with a wrong clock cannot drag every clock in the mesh into the future. Default 60 s.
   */
  constructor (private readonly clock: Clock, private readonly maxDriftMs = 60_000) {}

  /** A timestamp greater than every one this clock issued or observed. */
  now (): Hlc {
    const physical = this.clock.nowMs()
    const last = this.last
    this.last = physical > last.wall
      ? { wall: physical, logical: 0 }
      : { wall: last.wall, logical: last.logical + 1 }
    return this.last
  }

  /** The latest wall time `observe` accepts now: local time plus the allowed drift. */
  acceptLimitMs (): number {
    return this.clock.nowMs() + this.maxDriftMs
  }

  /** Advances past a timestamp received from elsewhere. Returns false if it was rejected for drift. */
  observe (remote: Hlc): boolean {
    if (remote.wall > this.acceptLimitMs()) {
      this.rejected++
      return false
    }
    if (compareHlc(remote, this.last) > 0) this.last = remote
    return true
  }
}
