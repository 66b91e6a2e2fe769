/**
 * Replaying a recovered log into a storage engine (recovery.ts hands the records over newest first).
 */
import { type NewestTs, RECORD_DOT_LEASE, RECORD_PUT, RecordDecoder, raiseTs } from './records.js'
import type { StorageEngine } from './engine.js'
import type { RecoveryReport } from './wal.js'

/**
 * What recovery accepts whatever the configuration: the largest values any valid configuration allows, so
 * that lowering keyBytesMax or valueBytesMax never makes an existing log unreadable.
 */
const RECOVERY_LIMITS = { keyBytesMax: 64 * 1024, valueBytesMax: 256 * 1024 * 1024 }

export interface EngineRecovery extends RecoveryReport {
  /** Records skipped because a newer record of the same key came first (replay is newest first). */
  readonly superseded: number
}

/**
 * Replays the log into an engine as recovery hands it over, newest record first (recovery.ts). The first record
 * of a key is its state; older ones are skipped after reading only their key (and their timestamps, which
 * the hybrid clock must still pass, as it would have had it replayed them). A removal that comes first
 * leaves the key absent, remembered until recovery ends so that older records do not bring it back.
 */
export class Replay {
  superseded = 0
  private readonly decoder = new RecordDecoder(RECOVERY_LIMITS)
  private readonly removed = new Set<string>()
  /**
   * The newest timestamp of any record that the clock accepts: observed once at the end rather than per
   * record. The same drift limit as HybridClock.observe applies, so a record from a peer whose clock ran far
   * ahead is rejected on its own, as it would have been per record, not with everything else.
   */
  private readonly newest: NewestTs

  constructor (private readonly engine: StorageEngine) {
    this.newest = { wall: 0, logical: 0, limit: engine.hlc.acceptLimitMs(), rejected: 0 }
  }

  /** The highest dot-counter lease in the log (0 if none). */
  private lease = 0

  record (bytes: Uint8Array, start: number, end: number): void {
    const d = this.decoder
    const key = d.key(bytes, start, end)
    if (d.type === RECORD_DOT_LEASE) {
      const lease = d.lease()
      if (lease > this.lease) this.lease = lease
      return
    }
    if (this.engine.hasRecovered(key) || this.removed.has(key)) {
      this.superseded++
      if (d.type === RECORD_PUT) d.skim(this.newest)
      return
    }
    if (d.type !== RECORD_PUT) {
      d.endRemove()
      this.removed.add(key)
      return
    }
    const { ttlMs, state } = d.rest()
    this.engine.recovered(key, state, ttlMs)
    for (const s of state.siblings) raiseTs(this.newest, s.wall, s.logical)
  }

  finish (): void {
    const { wall, logical, rejected } = this.newest
    if (wall > 0 || logical > 0) this.engine.hlc.observe({ wall, logical })
    this.engine.hlc.rejected += rejected
    this.engine.recoveredLease(this.lease)
    this.removed.clear()
  }
}
