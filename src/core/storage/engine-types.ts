/**
 * The storage engine's public vocabulary: the options it opens with, what reads, writes and merges take and
 * return, the events it emits and the figures it reports. Kept apart from engine.ts so that the engine
 * module holds behaviour only; engine.ts re-exports every name, so callers import them from there.
 */
import type { Durability, StorageConfig } from '../config.js'
import type { Clock, Logger, Rng } from '../env.js'
import type { KeyState, Sibling } from '../version/dvv.js'
import type { Hlc } from '../version/hlc.js'
import type { VersionVector } from '../version/vv.js'
import type { ExpiredEvent, ExpiryOptions } from './ttl-clock.js'
import type { WalAdapter } from './wal-adapter.js'

export interface EngineOptions extends Partial<StorageConfig>, ExpiryOptions {
  /** This replica's id (its peer id): the id in the dots of writes it coordinates. */
  replicaId: string
  clock: Clock
  /** Where the log lives. Without one the engine is memory-only: nothing survives a restart. */
  wal?: WalAdapter
  /** Randomness for the log's per-file salts; required with `wal`. */
  rng?: Rng
  log?: Logger
}

export interface ReadResult {
  readonly key: string
  /** Live values (tombstones excluded), in dot order; more than one means concurrent writes (siblings). */
  readonly values: readonly Sibling[]
  /** Hand this back with the next put/delete of the key to supersede what this read saw. */
  readonly context: VersionVector
  /** The newest write timestamp this read saw: hand it back as `contextTs` (encodeContext carries both). */
  readonly ts: Hlc | null
  /** True when every sibling is a tombstone: the key reads as absent but its context still matters. */
  readonly deleted: boolean
  readonly state: KeyState
  /** TTL of the key in ms, 0 if none. */
  readonly ttlMs: number
}

export interface WriteOptions {
  /** Causal context from an earlier read. Without it, existing values are kept as siblings. */
  context?: VersionVector
  /** The read's newest timestamp (ReadResult.ts): the write is stamped after it. */
  contextTs?: Hlc | null
  /** Last-writer-wins: the newest write by hybrid logical clock replaces every sibling. */
  lww?: boolean
  /** Expire the key this long after its last write unless written again (0 or absent: no expiry). */
  ttlMs?: number
  durability?: Durability
  signal?: AbortSignal
  /** Not counted against `memoryBytesMax` (the TTL clock's expiry writes: a full store must still expire
   * its keys). */
  unbudgeted?: boolean
}

export interface WriteResult {
  readonly key: string
  readonly state: KeyState
  readonly context: VersionVector
}

export interface MergeResult extends WriteResult {
  /** False when the local state already contained everything (nothing was written). */
  readonly changed: boolean
}

export interface WarningEvent {
  readonly code: 'siblings' | 'compaction-failed' | 'wal-recovery'
  readonly message: string
  readonly key?: string
}

export interface EngineEvents extends Record<string, unknown> {
  expired: ExpiredEvent
  warning: WarningEvent
}

/** The log's counters, cheap to read (no walk over the keys): what metrics scrape. Zero without a log. */
export interface WalStats {
  /** Bytes of log on disk: the last snapshot and the segments after it. */
  bytes: number
  /** Records appended since the peer started (sync markers not included). */
  records: number
  /** Frame bytes appended since the peer started (records and sync markers). */
  bytesAppended: number
  /** Syncs (fdatasync, or IndexedDB transactions) made: one per group commit. */
  syncs: number
  compactions: number
  compactionsFailed: number
}

export interface EngineStats {
  keys: number
  ttlKeys: number
  tombstones: number
  walBytesSinceSnapshot: number
  walSnapshotBytes: number
  walSyncs: number
  expired: number
  /** The store's estimated memory (stateBytes summed over keys) and its budget (0: none). */
  memoryBytes: number
  memoryBytesMax: number
  /** Writes and merges refused because the store was full. */
  storeFull: number
}
