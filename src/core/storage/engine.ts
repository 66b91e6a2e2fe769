/**
 * The storage engine of one replica: keys to version states (siblings with dotted version vectors) held in
 * memory, every change recorded in the write-ahead log before it is acknowledged, recovered on open from the
 * newest snapshot plus the log's tail, and compacted into a new snapshot as it grows (compaction.ts). TTL keys
 * expire by a second-chance clock sweep (ttl-clock.ts); the option, result and event types are in
 * engine-types.ts. The engine is pure: time comes from the injected Clock, the log from the injected
 * WalAdapter, and `sweep()` is called by whoever owns the timer.
 */
import { raceAbort, throwIfAborted } from '../abort.js'
import { Writer, utf8Length } from '../codec.js'
import { type Durability, MEMORY_MERGE_MARGIN, type StorageConfig, defaultStorageConfig, validateStorageConfig } from '../config.js'
import { Emitter } from '../emitter.js'
import { type Clock, type Logger, silentLogger } from '../env.js'
import { ClosedError, ConfigError, InvalidKeyError, RecordTooLargeError, SiblingLimitError, StoreFullError, ValueTooLargeError } from '../errors.js'
import { REPLICA_ID_BYTES_MAX } from '../version/context.js'
import { type KeyState, EMPTY_STATE, isDeleted, newestTs, stateEquals, sync, update, valuesOf } from '../version/dvv.js'
import { type Hlc, HybridClock, ZERO_HLC, compareHlc } from '../version/hlc.js'
import { EMPTY_VV, vvGet } from '../version/vv.js'
import { Compaction } from './compaction.js'
import type { EngineEvents, EngineOptions, EngineStats, MergeResult, ReadResult, WalStats, WriteOptions, WriteResult } from './engine-types.js'
import { encodeDotLease, encodePut, encodeRemove } from './records.js'
import { type EngineRecovery, Replay } from './replay.js'
import { type ExpiredEvent, TtlClock } from './ttl-clock.js'
import { DEFAULT_WAL_OPTIONS, Wal } from './wal.js'

export type { EngineEvents, EngineOptions, EngineStats, MergeResult, ReadResult, WalStats, WarningEvent, WriteOptions, WriteResult } from './engine-types.js'
export type { EngineRecovery } from './replay.js'
export type { ExpiredEvent } from './ttl-clock.js'

const RESOLVED = Promise.resolve()

/**
 * What one key costs in memory besides its key and values, estimated: the map entry, the state and version
 * vector objects, the TTL clock's and the replication key index's entries. Calibrated with `npm run bench
 * -- storage` (about 930 MB resident for 1,000,000 keys of 100 bytes).
 */
export const KEY_OVERHEAD_BYTES = 800
/** Each sibling's cost besides its value's bytes (object, dot, timestamp). */
export const SIBLING_OVERHEAD_BYTES = 64

/** The memory a key's state is counted as against `memoryBytesMax`. */
export function stateBytes (key: string, state: KeyState): number {
  let bytes = KEY_OVERHEAD_BYTES + key.length * 2 + state.vv.length * 16
  for (const s of state.siblings) bytes += SIBLING_OVERHEAD_BYTES + (s.value === null ? 0 : s.value.length)
  return bytes
}

/**
 * How far ahead of the dots it issues a replica leases dot counters (counters are milliseconds of the wall
 * clock or above, dvv.ts update()): a new lease record is logged once half of this is used, about every 30 s
 * under steady writes, and its fsync shares the group commit of the writes around it. A restart after a crash
 * issues dots from the recovered lease, at most this far (a minute of counters) above what it had issued.
 */
export const DOT_LEASE_SPAN = 60_000

export class StorageEngine {
  readonly config: StorageConfig
  readonly events: Emitter<EngineEvents>
  readonly hlc: HybridClock
  /** What recovery found when the engine opened (null without a WAL). */
  recovery: EngineRecovery | null = null
  /** Key -> state. States are immutable; the map holds nothing else, so a lookup is one hop. */
  private readonly map = new Map<string, KeyState>()
  /** The TTL keys, and their expiry. */
  private readonly ttls: TtlClock
  private readonly writer = new Writer(1024)
  private readonly log: Logger
  private wal: Wal | null = null
  /** Set with `wal`. */
  private compaction: Compaction | null = null
  private closed = false
  /**
   * Dot-counter leases (Riak's vnode counter leases, `riak_kv_vnode_status_mgr`): this replica issues no dot
   * whose counter is at or above a lease before that lease is durable in its log, so after a crash it starts
   * above every counter it could have issued (`dotFloor`, the highest lease recovered). Then a new dot may
   * reach other replicas before its own record is durable here: the coordinator sends a write to the other
   * replicas while it syncs its own log (coordinator.ts), one fsync on the critical path instead of two.
   */
  private dotFloor = 0
  /** The store's size by stateBytes, against config.memoryBytesMax. */
  private heldBytes = 0
  /** Writes and merges refused with StoreFullError. */
  private storeFull = 0
  private leaseAppended = 0
  private leaseDurable = 0

  /** See EngineOptions.onExpiring; the owner may set it after opening. */
  onExpiring: EngineOptions['onExpiring']
  /**
   * Called after every change of a key's state here — a write, a merge that brought something new, an
   * expiry, a removal — with the state before and after (undefined: absent), synchronously, before the
   * change is durable. Not called during recovery. Indexes over the keys (replication/key-index.ts) follow
   * it, so no caller has to keep them in step.
   */
  onChange: ((key: string, prior: KeyState | undefined, state: KeyState | undefined) => void) | undefined

  private constructor (readonly replicaId: string, private readonly clock: Clock, config: StorageConfig, log: Logger, expiredValue: EngineOptions['expiredValue']) {
    this.config = config
    this.log = log
    this.hlc = new HybridClock(clock)
    this.events = new Emitter<EngineEvents>(error => { log.error('engine event listener threw', error) })
    this.ttls = new TtlClock(this, log, expiredValue)
  }

  static async open (options: EngineOptions): Promise<StorageEngine> {
    const { replicaId, clock, wal, rng, log = silentLogger, expiredValue, onExpiring, ...overrides } = options
    if (typeof replicaId !== 'string' || replicaId.length === 0 || utf8Length(replicaId) > REPLICA_ID_BYTES_MAX) {
      throw new ConfigError('replicaId', `must be a non-empty string of at most ${REPLICA_ID_BYTES_MAX} bytes`)
    }
    const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))
    const config = validateStorageConfig({ ...defaultStorageConfig(), ...defined })
    const engine = new StorageEngine(replicaId, clock, config, log, expiredValue)
    engine.onExpiring = onExpiring
    if (wal !== undefined) {
      if (rng === undefined) throw new ConfigError('rng', 'an engine with a WAL needs an Rng (for the log files\' salts)')
      const replay = new Replay(engine)
      const opened = await Wal.open(wal, {
        rng,
        ...DEFAULT_WAL_OPTIONS,
        segmentBytesMax: config.walSegmentBytesMax,
        onCorruption: config.onCorruption,
        log
      }, (bytes, start, end) => { replay.record(bytes, start, end) })
      replay.finish()
      engine.wal = opened.wal
      engine.compaction = new Compaction(engine, opened.wal, log)
      engine.recovery = { ...opened.report, superseded: replay.superseded }
      // A log that outgrew the threshold before the restart (a crash before compaction ran, or a lower
      // threshold now) is compacted at once, not at the next write, so the next restart replays less.
      engine.compaction.maybeStart()
      const { tornTails, skipped } = opened.report
      for (const d of [...tornTails, ...skipped]) {
        engine.events.emit('warning', { code: 'wal-recovery', message: `${d.location} offset ${d.offset}: ${d.bytes} bytes dropped (${d.reason})` })
      }
    }
    return engine
  }

  /** Recovery only: the state of a key whose newest record this is (see Replay). */
  recovered (key: string, state: KeyState, ttlMs: number): void {
    this.setEntry(key, state, ttlMs)
    const hard = this.mergeBytesMax()
    if (this.heldBytes > hard) throw new StoreFullError(this.heldBytes, hard, 'recovery')
  }

  /** Bytes a merge may grow the store to (MEMORY_MERGE_MARGIN above the budget); Infinity without one. */
  private mergeBytesMax (): number {
    return this.config.memoryBytesMax === 0 ? Infinity : Math.floor(this.config.memoryBytesMax * (1 + MEMORY_MERGE_MARGIN))
  }

  /** Throws StoreFullError if replacing `prior` by `state` would grow the store past `limit`. */
  private checkRoom (key: string, prior: KeyState | undefined, state: KeyState, limit: number, during: 'write' | 'merge'): void {
    if (limit === Infinity) return
    const growth = stateBytes(key, state) - (prior === undefined ? 0 : stateBytes(key, prior))
    if (growth > 0 && this.heldBytes + growth > limit) {
      this.storeFull++
      throw new StoreFullError(this.heldBytes, limit, during)
    }
  }

  /** Recovery only: the highest dot-counter lease in the log. */
  recoveredLease (lease: number): void {
    this.dotFloor = Math.max(this.dotFloor, lease)
    this.leaseAppended = Math.max(this.leaseAppended, lease)
    this.leaseDurable = Math.max(this.leaseDurable, lease)
  }

  /** The highest dot-counter lease logged (0 before the first; for snapshots). */
  get dotLease (): number { return this.leaseAppended }

  /** Recovery only: whether a key already has its state (a newer record was replayed). */
  hasRecovered (key: string): boolean {
    return this.map.has(key)
  }

  private checkOpen (): void {
    if (this.closed) throw new ClosedError('storage engine')
  }

  /** Throws InvalidKeyError unless `key` is a non-empty string within `keyBytesMax` UTF-8 bytes. */
  checkKey (key: string): void {
    if (typeof key !== 'string') throw new InvalidKeyError('not a string')
    if (key.length === 0) throw new InvalidKeyError('empty')
    // A UTF-16 unit is at most 3 UTF-8 bytes, so short keys need no byte count.
    if (key.length * 3 > this.config.keyBytesMax) {
      const bytes = utf8Length(key)
      if (bytes > this.config.keyBytesMax) throw new InvalidKeyError(`${bytes} bytes exceeds the limit of ${this.config.keyBytesMax}`, bytes, this.config.keyBytesMax)
    }
  }

  private setEntry (key: string, state: KeyState, ttlMs: number): void {
    const prior = this.map.get(key)
    this.heldBytes += stateBytes(key, state) - (prior === undefined ? 0 : stateBytes(key, prior))
    this.map.set(key, state)
    if (this.onChange !== undefined) this.changed(key, prior, state)
    this.ttls.set(key, ttlMs)
  }

  private removeEntry (key: string): void {
    const prior = this.map.get(key)
    if (prior !== undefined) this.heldBytes -= stateBytes(key, prior)
    this.map.delete(key)
    this.ttls.delete(key)
    if (this.onChange !== undefined && prior !== undefined) this.changed(key, prior, undefined)
  }

  private changed (key: string, prior: KeyState | undefined, state: KeyState | undefined): void {
    try {
      this.onChange!(key, prior, state)
    } catch (error) {
      // The change itself stands (it is logged); a listener's failure must not fail the write.
      this.log.error(`change listener failed for ${JSON.stringify(key)}`, error)
    }
  }

  /**
   * Logs and applies a key's new state; resolves when it is durable under `durability`. The state changes in
   * memory only if the log accepted the record.
   */
  private commit (key: string, state: KeyState, ttlMs: number, durability: Durability | undefined, signal: AbortSignal | undefined): Promise<void> {
    const wal = this.wal
    if (wal === null) {
      this.setEntry(key, state, ttlMs)
      return RESOLVED
    }
    const payload = encodePut(this.writer, key, ttlMs, state)
    if (payload.length > this.config.walRecordBytesMax) throw new RecordTooLargeError(payload.length, this.config.walRecordBytesMax)
    wal.append(payload)
    this.setEntry(key, state, ttlMs)
    this.compaction?.maybeStart()
    if ((durability ?? this.config.durability) === 'async') return RESOLVED
    return raceAbort(wal.sync(), signal)
  }

  private warnSiblings (key: string, state: KeyState): void {
    if (state.siblings.length > this.config.siblingsWarn) {
      this.events.emit('warning', { code: 'siblings', key, message: `key ${JSON.stringify(key)} has ${state.siblings.length} siblings (warning threshold ${this.config.siblingsWarn}); read it and write a resolved value` })
    }
  }

  /** Reads a key: undefined if this replica has never seen it (or it expired or was reaped). */
  get (key: string): ReadResult | undefined {
    this.checkOpen()
    const state = this.map.get(key)
    if (state === undefined) return undefined
    return { key, values: valuesOf(state), context: state.vv, ts: newestTs(state) ?? null, deleted: isDeleted(state), state, ttlMs: this.ttls.ttlOf(key) }
  }

  /** The raw state of a key, for replication. */
  state (key: string): KeyState | undefined {
    return this.map.get(key)
  }

  /** A write coordinated by this replica. */
  put (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<WriteResult> {
    if (!(value instanceof Uint8Array)) return Promise.reject(new TypeError('value must be a Uint8Array'))
    if (value.length > this.config.valueBytesMax) return Promise.reject(new ValueTooLargeError(value.length, this.config.valueBytesMax))
    return this.write(key, value, options)
  }

  /** Deletes by writing a tombstone that supersedes what `context` covers. */
  delete (key: string, options: Omit<WriteOptions, 'ttlMs'> = {}): Promise<WriteResult> {
    return this.write(key, null, options)
  }

  private write (key: string, value: Uint8Array | null, options: WriteOptions): Promise<WriteResult> {
    try {
      const { state, done } = this.writeLocal(key, value, options)
      const result: WriteResult = { key, state, context: state.vv }
      return done === RESOLVED ? Promise.resolve(result) : done.then(() => result)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * A coordinated write, split for replication: the new state is applied (and returned) at once, so the
   * coordinator can send it to the other replicas while `done` waits for its own log. `shareable` says
   * whether it may do so before `done`: the new dot is below a durable lease (or this engine has no log, or
   * async durability, where nothing waits). When it is not (the first write after a start, or a counter that
   * outran the lease), a new lease is logged with the write, and the state must wait for `done` (or
   * `durable()`) before any other replica sees it. Throws synchronously on bad input; `value` null writes a
   * tombstone.
   */
  writeLocal (key: string, value: Uint8Array | null, options: WriteOptions): { state: KeyState; done: Promise<void>; shareable: boolean } {
    this.checkOpen()
    this.checkKey(key)
    throwIfAborted(options.signal)
    if (value !== null && value.length > this.config.valueBytesMax) throw new ValueTooLargeError(value.length, this.config.valueBytesMax)
    const ttlMs = value === null ? 0 : this.ttls.check(options.ttlMs)
    const current = this.map.get(key) ?? EMPTY_STATE
    // Stamp the write after everything it causally follows, including values this replica has not seen yet.
    if (options.contextTs !== undefined && options.contextTs !== null) this.hlc.observe(options.contextTs)
    const state = update(current, options.context ?? EMPTY_VV, { value, ts: this.hlc.now(), lww: options.lww === true }, this.replicaId, this.dotFloor)
    if (state.siblings.length > this.config.siblingsMax) throw new SiblingLimitError(key, state.siblings.length, this.config.siblingsMax)
    // Deletes pass (they are how a full store makes room; a tombstone can still grow a key by a version
    // vector entry, or arrive for a key not held here), as do expiries; a write that shrinks a key passes
    // by checkRoom's own rule.
    if (value !== null && options.unbudgeted !== true) this.checkRoom(key, this.map.get(key), state, this.config.memoryBytesMax === 0 ? Infinity : this.config.memoryBytesMax, 'write')
    const shareable = this.leaseDot(vvGet(state.vv, this.replicaId))
    const done = this.commit(key, state, ttlMs, options.durability, options.signal)
    this.warnSiblings(key, state)
    return { state, done, shareable }
  }

  /**
   * Whether dot counter `n` is covered by a durable lease (see dotFloor); logs a new lease once half of the
   * current one is used, so under steady writes the next is durable before it is needed.
   */
  private leaseDot (n: number): boolean {
    const wal = this.wal
    // The engine's durability, not the write's: the coordinator writes with 'async' and persists itself.
    if (wal === null || this.config.durability === 'async') return true
    if (n >= this.leaseAppended - DOT_LEASE_SPAN / 2) {
      const lease = n + DOT_LEASE_SPAN
      wal.append(encodeDotLease(this.writer, lease))
      this.leaseAppended = lease
      wal.sync().then(() => { if (lease > this.leaseDurable) this.leaseDurable = lease }, () => { /* the log failed: every later sync reports it */ })
    }
    return n < this.leaseDurable
  }

  /**
   * Merges a state received from another replica (replication, read repair, hinted handoff, anti-entropy).
   * Never refused for sibling count: a replica must not drop what another acknowledged.
   */
  merge (key: string, remote: KeyState, options: { ttlMs?: number; durability?: Durability; signal?: AbortSignal } = {}): Promise<MergeResult> {
    try {
      throwIfAborted(options.signal)
      const result = this.mergeNow(key, remote, options.ttlMs)
      if (this.wal === null || (options.durability ?? this.config.durability) === 'async') return Promise.resolve(result)
      // Also for a merge that brought nothing new: an identical merge may arrive while the first one's sync
      // is still running, and is acknowledged only once what is held is durable.
      return raceAbort(this.wal.sync(), options.signal).then(() => result)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * merge() applied at once, without waiting for the log: the state is in memory and its record appended
   * when this returns (throws on bad input). The caller makes it durable with durable() before it
   * acknowledges it to anyone (the replication state machine's `persist`).
   */
  mergeNow (key: string, remote: KeyState, ttlMs?: number): MergeResult {
    this.checkOpen()
    this.checkKey(key)
    for (const s of remote.siblings) {
      if (s.value !== null && s.value.length > this.config.valueBytesMax) throw new ValueTooLargeError(s.value.length, this.config.valueBytesMax)
    }
    const existing = this.map.get(key)
    const current = existing ?? EMPTY_STATE
    const currentTtl = this.ttls.ttlOf(key)
    const ts = newestTs(remote)
    if (ts !== undefined) this.hlc.observe(ts)
    const state = sync(current, remote)
    // Nothing new: the key keeps its TTL and its credits (a stale copy must neither attach its TTL to a
    // newer write nor keep an expiring key alive).
    if (existing !== undefined && stateEquals(state, current)) return { key, state: current, context: current.vv, changed: false }
    // The TTL of whichever side holds the newest write.
    this.checkRoom(key, existing, state, this.mergeBytesMax(), 'merge')
    const remoteNewer = ts !== undefined && compareHlc(ts, newestTs(current) ?? ZERO_HLC) > 0
    const ttl = ttlMs === undefined || !remoteNewer ? (existing === undefined ? this.ttls.check(ttlMs) : currentTtl) : this.ttls.check(ttlMs)
    void this.commit(key, state, ttl, 'async', undefined) // resolved at once: async durability does not wait
    this.warnSiblings(key, state)
    return { key, state, context: state.vv, changed: true }
  }

  /**
   * One turn of the TTL clock: every TTL key loses a credit, and keys with none left expire: the replica
   * writes a new version in their place — a last-writer-wins tombstone, or the record `expiredValue` gives —
   * so the expiry is replicated and versioned like any write (a stale copy of the old value cannot bring it
   * back, and a later write revives the key), and `expired` is emitted. Call every `sweepPeriodMs`.
   */
  sweep (options: { takeCredit?: boolean } = {}): ExpiredEvent[] {
    this.checkOpen()
    return this.ttls.sweep(options.takeCredit ?? true, this.clock.nowMs())
  }

  /**
   * Whether `key` still holds `expected` and waits for the owner's verdict since it was handed to
   * `onExpiring` (no write, merge or refresh gave it credits since).
   */
  expiryPending (key: string, expected: KeyState): boolean {
    return this.map.get(key) === expected && this.ttls.isPending(key)
  }

  /**
   * The owner could not decide on a key handed to `onExpiring` yet: offer it again at the next sweep, or
   * with `untilMs` (this engine's clock) at the first sweep from then on. A write since it was offered wins.
   */
  postponeExpiry (key: string, untilMs = 0): void {
    this.ttls.postpone(key, untilMs)
  }

  /**
   * A refresh of a TTL key whose state here is still `expected`, with TTL `ttlMs` (a heartbeat that only says
   * its service is alive, replication/refresh.ts): the key gets credits again, for `forMs` (default: its
   * whole TTL, as a write would give it), with nothing logged and its state unchanged; `ts` is the beat's
   * timestamp. False (nothing done) if the key changed or has another TTL.
   */
  refresh (key: string, expected: KeyState, ttlMs: number, ts: Hlc, forMs = ttlMs): boolean {
    this.checkOpen()
    if (ttlMs <= 0 || this.map.get(key) !== expected || this.ttls.ttlOf(key) !== ttlMs) return false
    // A timestamp further ahead than the clock accepts (a peer with a wrong clock) refreshes nothing: kept,
    // it would keep a stopped service alive until this clock caught up with it.
    if (!this.hlc.observe(ts)) return false
    return this.ttls.refresh(key, ts.wall, forMs)
  }

  /** Wall-clock ms (hybrid logical clock) of the newest refresh the key took here while it had its TTL; 0 if none. */
  refreshedWall (key: string): number { return this.ttls.refreshedWall(key) }

  /**
   * A sign of life of a TTL key's service at `ts` that is no refresh taken here, while its state here is still
   * `expected` with TTL `ttlMs`: a beat this peer refused for overload (with `credit`: the key gets full
   * credits, nothing logged), or a refresh another replica reported in an expiry check (without). Kept apart
   * from refreshedWall (lastAliveWall reads both). False (nothing done) as for refresh(), or once closed.
   */
  noteAlive (key: string, expected: KeyState, ttlMs: number, ts: Hlc, credit: boolean): boolean {
    if (this.closed || ttlMs <= 0 || this.map.get(key) !== expected || this.ttls.ttlOf(key) !== ttlMs) return false
    if (!this.hlc.observe(ts)) return false
    return this.ttls.noteAlive(key, ts.wall, credit)
  }

  /** The newest sign of life of the key here: its newest refresh, or a later noteAlive; 0 if none. */
  lastAliveWall (key: string): number { return Math.max(this.ttls.refreshedWall(key), this.ttls.aliveWall(key)) }

  /** Until when a key's expiry was held (postponeExpiry with `untilMs`) since its last write; 0 if not. */
  expiryHeldUntil (key: string): number { return this.ttls.heldUntil(key) }

  /**
   * Expires a TTL key now if its state is still `expected` (a write since refreshed it): writes the expiry
   * and emits `expired`. Returns the event, or null if the key changed or is not a TTL key.
   */
  expire (key: string, expected: KeyState): ExpiredEvent | null {
    this.checkOpen()
    return this.ttls.expire(key, expected)
  }

  private removeLogged (key: string): void {
    // Logged without waiting for durability: if the removal is lost in a crash, the key comes back with fresh
    // credits and expires again within two sweeps.
    if (this.wal !== null) this.wal.append(encodeRemove(this.writer, key))
    this.removeEntry(key)
  }

  /**
   * Removes a deleted key's tombstones if its state is still exactly `expected`. The caller decides when that
   * is safe (every primary holds the tombstone and the grace period has passed). Returns whether it reaped.
   */
  reap (key: string, expected: KeyState): boolean {
    this.checkOpen()
    const state = this.map.get(key)
    if (state === undefined || !isDeleted(state) || !stateEquals(state, expected) || this.countsAhead(state)) return false
    this.removeLogged(key)
    return true
  }

  /**
   * Whether this replica's counter in the key's history is still ahead of the clock (a key written more
   * than once a millisecond). Forgetting such a key now would let the next write reuse a dot (update()
   * starts a forgotten key's counter at the wall clock), so it is kept until the clock passes the counter.
   */
  private countsAhead (state: KeyState): boolean {
    return vvGet(state.vv, this.replicaId) >= this.clock.nowMs()
  }

  /**
   * Removes a key this replica holds for others (a delivered hint, a handed-off range) if its state is still
   * exactly `expected`: a write that arrived since keeps it. Returns whether it removed the key.
   */
  drop (key: string, expected: KeyState): boolean {
    this.checkOpen()
    if (this.map.get(key) !== expected && !stateEquals(this.map.get(key) ?? EMPTY_STATE, expected)) return false
    if (!this.map.has(key) || this.countsAhead(expected)) return false
    this.removeLogged(key)
    return true
  }

  /**
   * Resolves once every change made so far is durable (`sync` durability; at once with `async`, or without
   * a log). A replica shares a state with others — read replies, read repair, anti-entropy, handoff — only
   * after this: a dot that reached another replica before it was durable here could be lost in a crash
   * and issued again after the restart for a different value, and the replicas holding the first would take
   * the second for it (found by the fault simulator: an anti-entropy round shipped a delete whose fdatasync
   * had not completed; a power cut lost it, and the restarted coordinator gave the same dot to a put, which
   * the others then dropped as already seen). Shares the group commit in flight, so it costs nothing extra.
   */
  durable (): Promise<void> {
    if (this.wal === null || this.config.durability === 'async') return RESOLVED
    return this.wal.sync()
  }

  /** Bytes of log on disk (the last snapshot and the segments after it); 0 without a log. */
  walBytes (): number {
    return (this.wal?.bytesSinceSnapshot ?? 0) + (this.wal?.snapshotBytes ?? 0)
  }

  /** TTL of a key in ms, 0 if none. */
  ttl (key: string): number { return this.ttls.ttlOf(key) }

  get size (): number { return this.map.size }

  keys (): IterableIterator<string> { return this.map.keys() }

  /** Key states, for anti-entropy and transfer. */
  * entries (): Generator<[string, KeyState]> {
    yield * this.map
  }

  /** Writes a snapshot of the current state and drops the log segments it replaces (compaction.ts). */
  compact (): Promise<void> {
    this.checkOpen()
    return this.compaction === null ? RESOLVED : this.compaction.run(this.map, this.ttls)
  }

  /** Keys this replica's TTL sweep has expired since it started. */
  get expiredCount (): number { return this.ttls.expiredCount }
  /** The store's estimated memory (stateBytes over every key) and the writes and merges refused for it. */
  get memoryBytes (): number { return this.heldBytes }
  get storeFullCount (): number { return this.storeFull }

  /** The log's counters (see WalStats), without stats()'s walk over every key. */
  walStats (): WalStats {
    const wal = this.wal
    if (wal === null) return { bytes: 0, records: 0, bytesAppended: 0, syncs: 0, compactions: 0, compactionsFailed: 0 }
    return { bytes: wal.bytesSinceSnapshot + wal.snapshotBytes, records: wal.recordsAppended, bytesAppended: wal.bytesAppended, syncs: wal.syncCount, compactions: wal.compactions, compactionsFailed: wal.compactionsFailed }
  }

  stats (): EngineStats {
    let tombstones = 0
    for (const state of this.map.values()) if (isDeleted(state)) tombstones++
    return {
      keys: this.map.size,
      ttlKeys: this.ttls.size,
      tombstones,
      walBytesSinceSnapshot: this.wal?.bytesSinceSnapshot ?? 0,
      walSnapshotBytes: this.wal?.snapshotBytes ?? 0,
      walSyncs: this.wal?.syncCount ?? 0,
      expired: this.ttls.expiredCount,
      memoryBytes: this.heldBytes,
      memoryBytesMax: this.config.memoryBytesMax,
      storeFull: this.storeFull
    }
  }

  /** Makes every write durable and closes the log. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.wal?.close()
  }
}
