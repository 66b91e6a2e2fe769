/**
 * Log compaction for a storage engine: a snapshot of every key's state and TTL replaces the log segments
 * written before it, so a restart replays one snapshot plus a short tail. A compaction starts once the log
 * written since the last snapshot outgrows both `walCompactAfterBytes` and the snapshot itself (so rewriting
 * the snapshot costs no more than the log it retires), and runs in the background: the write that triggered
 * it is already applied and logged, so a failure is reported as a `compaction-failed` warning and never
 * fails that write. The snapshot is frozen when the compaction starts; writes after that go to the new tail.
 */
import { Writer } from '../codec.js'
import type { Logger } from '../env.js'
import { errorMessage } from '../errors.js'
import type { KeyState } from '../version/dvv.js'
import type { StorageEngine } from './engine.js'
import { encodeDotLease, encodePut } from './records.js'
import type { TtlClock } from './ttl-clock.js'
import type { Wal } from './wal.js'

export class Compaction {
  constructor (private readonly engine: StorageEngine, private readonly wal: Wal, private readonly log: Logger) {}

  /** Starts a compaction (through `engine.compact()`) if the log has outgrown its threshold and none runs. */
  maybeStart (): void {
    const wal = this.wal
    if (wal.isCompacting || wal.bytesSinceSnapshot <= Math.max(this.engine.config.walCompactAfterBytes, wal.snapshotBytes)) return
    const report = (error: unknown): void => {
      this.log.error('compaction failed', error)
      this.engine.events.emit('warning', { code: 'compaction-failed', message: `compaction failed: ${errorMessage(error)}` })
    }
    // The write that triggered this is already applied and logged: a compaction failure must not fail it.
    try {
      this.engine.compact().catch(report)
    } catch (error) {
      report(error)
    }
  }

  /** Writes a snapshot of `map` (with the TTLs `ttlClock` holds) and drops the log segments it replaces. */
  run (map: ReadonlyMap<string, KeyState>, ttlClock: TtlClock): Promise<void> {
    // A frozen copy: states are immutable, so copying the references is a consistent snapshot. Three flat
    // arrays (16-24 bytes a key) rather than an array per key, as this runs with the whole state in memory.
    const size = map.size
    const keys = new Array<string>(size)
    const states = new Array<KeyState>(size)
    const ttls = new Float64Array(ttlClock.size === 0 ? 0 : size)
    let i = 0
    for (const [key, state] of map) {
      keys[i] = key
      states[i] = state
      if (ttls.length > 0) ttls[i] = ttlClock.ttlOf(key)
      i++
    }
    const writer = new Writer(1024)
    // The dot-counter lease goes into the snapshot too: the segments it replaces may hold the only record.
    const lease = this.engine.dotLease
    return this.wal.compact((function * () {
      if (lease > 0) yield encodeDotLease(writer, lease)
      for (let k = 0; k < size; k++) yield encodePut(writer, keys[k]!, ttls.length > 0 ? ttls[k]! : 0, states[k]!)
    })())
  }
}
