/**
 * The TTL clock of a storage engine: which keys have a TTL, and expiring them by a second-chance clock sweep
 * (KnucklesDB). Each write of a TTL key gives it `ceil(ttlMs / sweepPeriodMs)` credits (at least one, the
 * "reference bit"); every sweep takes one credit from each TTL key and expires those that had none left. So
 * a key never expires before its TTL has passed since its last write, and always expires within two sweep
 * periods after that — with no clock read per key and no timer per key, which is what lets one peer track
 * thousands of heartbeating services. An expiry is a write through the engine (a last-writer-wins tombstone,
 * or the record `expiredValue` gives), so it is logged, versioned and replicated like any other.
 *
 * A refresh (`refresh`) gives a key full credits again without a write: a heartbeat that only says its
 * service is still alive (replication/refresh.ts). The clock remembers the newest refresh's wall-clock time
 * per key (`refreshedWall`), in memory only, like the credits themselves: a restarted replica gives every TTL
 * key full credits from its recovery anyway.
 */
import { ConfigError } from '../errors.js'
import type { Logger } from '../env.js'
import { type KeyState, isDeleted, newestTs } from '../version/dvv.js'
import type { StorageEngine } from './engine.js'

/** The engine's options about expiry (see EngineOptions). */
export interface ExpiryOptions {
  /**
   * Called by sweep() for a key whose credits ran out, instead of expiring it there; the owner then calls
   * `expire(key, state)` (or refreshes the key by a write or merge). Called once per key until one of those.
   */
  onExpiring?: (key: string, state: KeyState) => void
  /**
   * What an expiring key becomes: a value to write in its place (last-writer-wins, no TTL), null for a
   * tombstone (the default: the key reads as deleted), or 'keep' if the state already is an expiry (then
   * only its TTL is dropped). Heartbeat keys use it to keep an "expired" record. `refreshedWall` is the
   * wall-clock ms of the newest refresh the key took while it had its TTL (0: none).
   */
  expiredValue?: (key: string, state: KeyState, refreshedWall: number) => Uint8Array | null | 'keep'
}

export interface ExpiredEvent {
  readonly key: string
  /** The state that expired (its newest write was not refreshed within its TTL). */
  readonly state: KeyState
  /** The state written for the expiry: a last-writer-wins tombstone, or the record `expiredValue` gave. */
  readonly expired: KeyState
}

interface Ttl {
  ttlMs: number
  /** Sweeps left before expiry. */
  credit: number
  /** Handed to `onExpiring`, waiting for its verdict (expire() or a refreshing write). */
  pending: boolean
  /** Not offered to `onExpiring` again before this (the clock's ms; 0: no hold): see hold(). */
  holdUntilMs: number
  /** Wall-clock ms (hybrid logical clock) of the newest refresh; 0: none. Kept across writes (readers take
   * the newer of this and the state's own timestamp). */
  refreshedWall: number
  /** Wall-clock ms of the newest sign of life that was no refresh taken here (noteAlive): a beat this peer
   * refused but noted, or one another replica reported while this one held the key; 0: none. */
  aliveWall: number
}

export class TtlClock {
  /** TTL keys only. */
  private readonly ttls = new Map<string, Ttl>()
  private expired = 0

  constructor (private readonly engine: StorageEngine, private readonly log: Logger, private readonly expiredValue: ExpiryOptions['expiredValue']) {}

  /** Number of TTL keys. */
  get size (): number { return this.ttls.size }

  /** Keys expired since the engine opened. */
  get expiredCount (): number { return this.expired }

  /** Throws ConfigError unless `ttlMs` is a TTL a write may ask for; returns it, 0 when absent. */
  check (ttlMs: number | undefined): number {
    if (ttlMs === undefined) return 0
    const max = this.engine.config.ttlMsMax
    if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > max) throw new ConfigError('ttlMs', `must be an integer in [0, ${max}], got ${ttlMs}`)
    return ttlMs
  }

  private credits (ttlMs: number): number {
    return Math.max(1, Math.ceil(ttlMs / this.engine.config.sweepPeriodMs))
  }

  /** TTL of a key in ms, 0 if none. */
  ttlOf (key: string): number {
    return this.ttls.size === 0 ? 0 : this.ttls.get(key)?.ttlMs ?? 0
  }

  /** A key was written with `ttlMs` (0: no TTL): it gets full credits again, or leaves the clock. */
  set (key: string, ttlMs: number): void {
    if (ttlMs > 0) {
      const ttl = this.ttls.get(key)
      if (ttl === undefined) this.ttls.set(key, { ttlMs, credit: this.credits(ttlMs), pending: false, holdUntilMs: 0, refreshedWall: 0, aliveWall: 0 })
      else { ttl.ttlMs = ttlMs; ttl.credit = this.credits(ttlMs); ttl.pending = false; ttl.holdUntilMs = 0 }
    } else if (this.ttls.size > 0) {
      this.ttls.delete(key)
    }
  }

  delete (key: string): void {
    this.ttls.delete(key)
  }

  /**
   * A refresh of a TTL key (its state unchanged): credits for `forMs` again (a whole TTL, as a write gives,
   * unless less is left of it), and `wallMs` remembered if it is the newest. False if the key has no TTL here.
   */
  refresh (key: string, wallMs: number, forMs = Infinity): boolean {
    const ttl = this.ttls.get(key)
    if (ttl === undefined) return false
    ttl.credit = this.credits(Math.min(ttl.ttlMs, forMs))
    ttl.pending = false
    ttl.holdUntilMs = 0
    if (wallMs > ttl.refreshedWall) ttl.refreshedWall = wallMs
    return true
  }

  /**
   * A sign of life of the key's service that is not a refresh this replica took (StorageEngine.noteAlive):
   * kept apart from refreshedWall, which says when a beat last got through (the beats' urgent lane and the
   * services listing read that). With `credit`, the key also gets full credits, as a refresh gives.
   */
  noteAlive (key: string, wallMs: number, credit: boolean): boolean {
    const ttl = this.ttls.get(key)
    if (ttl === undefined) return false
    if (credit) {
      ttl.credit = this.credits(ttl.ttlMs)
      ttl.pending = false
      ttl.holdUntilMs = 0
    }
    if (wallMs > ttl.aliveWall) ttl.aliveWall = wallMs
    return true
  }

  /** Wall-clock ms of the key's newest sign of life noted here (noteAlive; 0: none, or not a TTL key). */
  aliveWall (key: string): number {
    return this.ttls.size === 0 ? 0 : this.ttls.get(key)?.aliveWall ?? 0
  }

  /** Wall-clock ms of the key's newest refresh here (0: none, or not a TTL key). */
  refreshedWall (key: string): number {
    return this.ttls.size === 0 ? 0 : this.ttls.get(key)?.refreshedWall ?? 0
  }

  /**
   * One turn of the clock (StorageEngine.sweep): every TTL key loses a credit; a key with none left is handed
   * to the engine's `onExpiring` if the owner set one, or else expired here. Returns what expired. With
   * `takeCredit` false the turn is held back: nothing changes.
   */
  sweep (takeCredit: boolean, nowMs: number): ExpiredEvent[] {
    const expired: ExpiredEvent[] = []
    // A held-back turn (a degraded detector stretching its TTLs): no key loses a credit, none expires.
    if (!takeCredit) return expired
    for (const [key, ttl] of this.ttls) {
      if (ttl.credit > 0) { ttl.credit--; continue }
      if (ttl.holdUntilMs > nowMs) continue
      const state = this.engine.state(key)!
      if (this.engine.onExpiring !== undefined) {
        // The owner checks first (a replicated store asks the other replicas for newer writes).
        if (!ttl.pending) {
          ttl.pending = true
          this.engine.onExpiring(key, state)
        }
        continue
      }
      const event = this.expire(key, state)
      if (event !== null) expired.push(event)
    }
    return expired
  }

  /**
   * The owner could not decide on a key handed to `onExpiring` yet: offer it again at the next sweep, or,
   * with `untilMs`, at the first sweep from then on (a hold, ended by any write). Nothing happens if a write
   * refreshed the key meanwhile (it is no longer pending): its new credits stand.
   */
  postpone (key: string, untilMs = 0): void {
    const ttl = this.ttls.get(key)
    if (ttl === undefined || !ttl.pending) return
    ttl.pending = false
    if (untilMs > 0) ttl.holdUntilMs = untilMs
  }

  /** Whether a key was handed to `onExpiring` and is still waiting for its verdict (no write or refresh since). */
  isPending (key: string): boolean {
    return this.ttls.get(key)?.pending === true
  }

  /** Whether a key was held (postpone with `untilMs`) since it was last written, and until when; 0 if not. */
  heldUntil (key: string): number {
    return this.ttls.get(key)?.holdUntilMs ?? 0
  }

  /**
   * Expires a TTL key now if its state is still `expected` (a write since refreshed it): writes the expiry
   * and emits `expired`. Returns the event, or null if the key changed or is not a TTL key.
   */
  expire (key: string, expected: KeyState): ExpiredEvent | null {
    const state = this.engine.state(key)
    const ttl = this.ttls.get(key)
    if (state !== expected || ttl === undefined) return null
    // Credits again with the state unchanged: refreshed since they ran out (while the owner checked the other
    // replicas), so alive after all.
    if (ttl.credit > 0) return null
    // Already final (a tombstone, or a record the caller says is already an expiry): only the TTL goes.
    const value = isDeleted(state) ? 'keep' : this.expiredValue?.(key, state, ttl.refreshedWall) ?? null
    if (value === 'keep') {
      this.ttls.delete(key)
      return null
    }
    let written: KeyState
    try {
      // Logged without waiting for durability: if it is lost in a crash the key comes back with fresh
      // credits and expires again within two sweeps. No TTL on it, so it leaves the TTL map.
      written = this.engine.writeLocal(key, value, { context: state.vv, contextTs: newestTs(state) ?? null, lww: true, durability: 'async', unbudgeted: true }).state
      if (value !== null) this.ttls.delete(key)
    } catch (error) {
      this.log.error(`expiring ${JSON.stringify(key)} failed; retrying at the next sweep`, error)
      ttl.pending = false
      return null
    }
    this.expired++
    const event = { key, state, expired: written }
    this.engine.events.emit('expired', event)
    return event
  }
}
