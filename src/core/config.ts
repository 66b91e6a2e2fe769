/**
 * Configuration, in the manner of memberlist's config.go: every field says what it does, its trade-off and
 * its default; `validate*` throws ConfigError naming the field. Profiles come from functions so nobody shares
 * a mutable default object.
 */
import { ConfigError } from './errors.js'

export type Durability = 'sync' | 'async'

export interface StorageConfig {
  /**
   * When a replica acknowledges a write. 'sync' (default): after its log record is durable (fdatasync in
   * Node, a committed IndexedDB transaction in browsers), with group commit sharing one sync among
   * concurrent writes. 'async': at once; the record reaches the OS within one event-loop turn and the disk
   * within `asyncSyncIntervalMs`, so a crash of the process may lose the writes of that last turn and a crash
   * of the machine the writes of that last interval.
   */
  durability: Durability
  /** Longest key in UTF-8 bytes. Default 1024. */
  keyBytesMax: number
  /** Largest value in bytes. Default 1 MiB. */
  valueBytesMax: number
  /** A key with more siblings than this emits a `warning` event (data is kept). Default 25 (Riak's). */
  siblingsWarn: number
  /**
   * A local write that would leave a key with more siblings than this is refused with SiblingLimitError:
   * the client must read and resolve. Merges from other replicas are never refused, so nothing is dropped.
   * Default 100 (Riak's max_siblings).
   */
  siblingsMax: number
  /** Period of the TTL clock sweep. TTL keys expire between ttlMs and ttlMs + 2 periods after their last
   * write. Default 1000 ms. */
  sweepPeriodMs: number
  /** Largest TTL a write may ask for. Default 30 days. */
  ttlMsMax: number
  /** Largest encoded key state (all siblings) the log accepts; larger writes fail. Default 64 MiB. */
  walRecordBytesMax: number
  /** Log segment size before a new segment starts. Default 64 MiB. */
  walSegmentBytesMax: number
  /**
   * Compact (snapshot + drop old segments) when the log written since the last snapshot exceeds both this
   * and the last snapshot's size, so compaction work stays proportional to writes. Default 64 MiB.
   */
  walCompactAfterBytes: number
  /** Recovery on a damaged record before the log's tail: 'fail' (default) stops with WalCorruptError; 'skip'
   * drops the damaged bytes, reports them, and continues. */
  onCorruption: 'fail' | 'skip'
  /**
   * Memory budget of the store in bytes, as estimated by `stateBytes` (keys, values and a per-key and
   * per-sibling overhead): past it, writes that would grow the store fail with StoreFullError (reads,
   * deletes and shrinking writes still work), and merges from other replicas are taken up to
   * MEMORY_MERGE_MARGIN above it. Recovery stops with StoreFullError past that margin, before the heap runs
   * out. 0 (the library's default): no bound. The Node CLI's default is half of V8's heap limit.
   */
  memoryBytesMax: number
}

/** Merges from other replicas are still taken up to this fraction above `memoryBytesMax`. */
export const MEMORY_MERGE_MARGIN = 0.25

export function defaultStorageConfig (): StorageConfig {
  return {
    durability: 'sync',
    keyBytesMax: 1024,
    valueBytesMax: 1024 * 1024,
    siblingsWarn: 25,
    siblingsMax: 100,
    sweepPeriodMs: 1000,
    ttlMsMax: 30 * 24 * 3600 * 1000,
    walRecordBytesMax: 64 * 1024 * 1024,
    walSegmentBytesMax: 64 * 1024 * 1024,
    walCompactAfterBytes: 64 * 1024 * 1024,
    onCorruption: 'fail',
    memoryBytesMax: 0
  }
}

/** Throws ConfigError unless `value` is an integer in [min, max]. */
export function integer (field: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(field, `must be an integer in [${min}, ${max}], got ${String(value)}`)
  }
}

export function validateStorageConfig (c: StorageConfig): StorageConfig {
  if (c.durability !== 'sync' && c.durability !== 'async') throw new ConfigError('durability', `must be 'sync' or 'async', got ${String(c.durability)}`)
  if (c.onCorruption !== 'fail' && c.onCorruption !== 'skip') throw new ConfigError('onCorruption', `must be 'fail' or 'skip', got ${String(c.onCorruption)}`)
  integer('keyBytesMax', c.keyBytesMax, 1, 64 * 1024)
  integer('valueBytesMax', c.valueBytesMax, 0, 256 * 1024 * 1024)
  integer('siblingsMax', c.siblingsMax, 1, 10_000)
  integer('siblingsWarn', c.siblingsWarn, 1, c.siblingsMax)
  integer('sweepPeriodMs', c.sweepPeriodMs, 10, 3_600_000)
  integer('ttlMsMax', c.ttlMsMax, 1, Number.MAX_SAFE_INTEGER)
  integer('walRecordBytesMax', c.walRecordBytesMax, 1024, 1024 * 1024 * 1024)
  integer('walSegmentBytesMax', c.walSegmentBytesMax, 4096, 4 * 1024 * 1024 * 1024)
  integer('walCompactAfterBytes', c.walCompactAfterBytes, 4096, Number.MAX_SAFE_INTEGER)
  integer('memoryBytesMax', c.memoryBytesMax, 0, Number.MAX_SAFE_INTEGER)
  return c
}
