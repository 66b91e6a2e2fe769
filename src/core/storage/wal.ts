/**
 * The write-ahead log above a WalAdapter: framing, recovery, group commit and compaction, the same for every
 * backend.
 *
 * Recovery (recovery.ts) hands every record back newest first, cuts a torn tail and refuses (or skips)
 * damage to acknowledged data. Every open starts a fresh segment, so no file is ever appended to after a
 * crash.
 *
 * Appends are framed straight into one buffer that is handed to the adapter once per event-loop turn (or
 * when it reaches HANDOFF_BYTES), so a record costs a checksum and a copy, not an allocation and a call.
 *
 * Group commit: `sync()` callers whose appends are covered by a sync already in flight wait for it; the
 * others share the next one. Under load one fdatasync (or one IndexedDB transaction) covers a whole batch of
 * writers, which is why `sync` durability costs little more than `async` at high concurrency.
 *
 * After a failed sync nothing is known about what reached the disk, so the log refuses all further writes
 * (WalFailedError) until it is reopened and recovered — the PostgreSQL "fsyncgate" lesson.
 */
import type { Logger, Rng } from '../env.js'
import { ClosedError, WalFailedError } from '../errors.js'
import { FILE_HEADER_BYTES, FRAME_HEADER_BYTES, SEGMENT_MAGIC, SNAPSHOT_MAGIC, encodeFrame, encodeFrameInto, encodeMark, fileHeader, saltSeed } from './frame.js'
import { type CorruptionPolicy, type RecoveryReport, type ReplayRecord, recoverLog } from './recovery.js'
import type { WalAdapter } from './wal-adapter.js'

export { RECOVERY_KEEP_BYTES, type CorruptionPolicy, type Damage, type RecoveryReport, type ReplayRecord } from './recovery.js'

export interface WalOptions {
  /** A segment is closed and a new one started when the next record would take it past this. Default 64 MiB. */
  segmentBytesMax: number
  /** What recovery does on a damaged record before the tail: stop with an error (default) or skip it. */
  onCorruption: CorruptionPolicy
  /** Snapshot chunks handed to the adapter are about this large. Default 1 MiB. */
  snapshotChunkBytes: number
  log: Logger
  /** Draws each new file's random salt (frame.ts): records copied into values never pass as frames. */
  rng: Rng
}

export const DEFAULT_WAL_OPTIONS: Omit<WalOptions, 'log' | 'rng'> = {
  segmentBytesMax: 64 * 1024 * 1024,
  onCorruption: 'fail',
  snapshotChunkBytes: 1024 * 1024
}

/** Buffered appends are handed to the adapter at the end of the turn, or at once beyond this size. */
const HANDOFF_BYTES = 256 * 1024
/**
 * Syncs allowed in flight at once. Two let the next batch's sync start while the previous one's completion is
 * still travelling back through libuv's thread pool (measured here, before FileWal preallocated: 0.61x ->
 * 0.66x of the fdatasync floor with 64 writers); more would only queue fdatasyncs behind each other.
 */
export const SYNCS_IN_FLIGHT_MAX = 2

export class Wal {
  private segmentId: number
  private segmentBytes = 0
  /** CRC seed of the current segment's salt. */
  private seed = 0
  /** Record frames appended since the last sync marker (a sync that covers only a marker writes no new one). */
  private unmarked = 0
  private buffer = new Uint8Array(HANDOFF_BYTES)
  private buffered = 0
  private handoffScheduled = false
  private appendSeq = 0
  private durableSeq = 0
  /** Syncs in flight, oldest first; each makes durable every record up to its `upTo`. */
  private inflight: Array<{ promise: Promise<void>; upTo: number }> = []
  private queued: Promise<void> | null = null
  private compacting: Promise<void> | null = null
  private failure: WalFailedError | null = null
  private closed = false
  /** Bytes appended since the last snapshot started (the log a recovery would replay). */
  bytesSinceSnapshot: number
  /** Size of the last snapshot written or read, in bytes. */
  snapshotBytes: number
  /** Sync calls made to the adapter (one per group commit). */
  syncCount = 0
  /** Records appended since the log was opened (sync markers not included). */
  recordsAppended = 0
  /** Frame bytes (records and sync markers) appended since the log was opened. */
  bytesAppended = 0
  /** Compactions (snapshot written, older segments dropped) finished, and failed, since the log was opened. */
  compactions = 0
  compactionsFailed = 0

  private constructor (private readonly adapter: WalAdapter, private readonly options: WalOptions, lastId: number, replayed: number, snapshotBytes: number) {
    this.segmentId = lastId
    this.bytesSinceSnapshot = replayed
    this.snapshotBytes = snapshotBytes
  }

  get location (): string { return this.adapter.location }

  /**
   * Recovers the log, handing every record to `apply` newest first (see ReplayRecord), then opens a new
   * segment for appends.
   */
  static async open (adapter: WalAdapter, options: WalOptions, apply: ReplayRecord): Promise<{ wal: Wal; report: RecoveryReport }> {
    try {
      return await Wal.recover(adapter, options, apply)
    } catch (error) {
      await adapter.close().catch(() => {})
      throw error
    }
  }

  private static async recover (adapter: WalAdapter, options: WalOptions, apply: ReplayRecord): Promise<{ wal: Wal; report: RecoveryReport }> {
    const { lastId, bytes, snapshotBytes, report } = await recoverLog(adapter, options, apply)
    const wal = new Wal(adapter, options, lastId, bytes, snapshotBytes)
    wal.startSegment(lastId + 1)
    return { wal, report }
  }

  private newSalt (): number {
    return Math.floor(this.options.rng.next() * 0x100000000) >>> 0
  }

  private startSegment (id: number): void {
    this.handoff()
    this.adapter.startSegment(id)
    this.segmentId = id
    const salt = this.newSalt()
    this.seed = saltSeed(salt)
    this.adapter.append(fileHeader(SEGMENT_MAGIC, salt))
    this.segmentBytes = FILE_HEADER_BYTES
    this.appendSeq++
  }

  private check (): void {
    if (this.closed) throw new ClosedError(`WAL ${this.adapter.location}`)
    if (this.failure !== null) throw this.failure
  }

  private fail (error: unknown): WalFailedError {
    this.failure ??= error instanceof WalFailedError ? error : new WalFailedError(this.adapter.location, error)
    return this.failure
  }

  /**
   * Gives the buffered frames to the adapter, as a copy it owns from then on; the buffer is reused. (It used
   * to hand over the buffer itself and allocate a fresh 256 KiB one, zero-filled, every turn that wrote
   * anything: for a peer taking a write a turn, 256 KiB allocated per write.)
   */
  private handoff (): void {
    if (this.buffered === 0) return
    const bytes = this.buffer.slice(0, this.buffered)
    // A buffer grown for one large frame goes back to the usual size.
    if (this.buffer.length > HANDOFF_BYTES) this.buffer = new Uint8Array(HANDOFF_BYTES)
    this.buffered = 0
    try {
      this.adapter.append(bytes)
    } catch (error) {
      throw this.fail(error)
    }
  }

  /** Appends one record. Durable once a later `sync()` resolves. Returns the bytes written. */
  append (payload: Uint8Array): number {
    this.check()
    const frameBytes = this.put(payload, 'record')
    this.unmarked++
    this.recordsAppended++
    return frameBytes
  }

  private put (payload: Uint8Array, kind: 'record' | 'marker'): number {
    const frameBytes = FRAME_HEADER_BYTES + payload.length
    if (this.segmentBytes + frameBytes > this.options.segmentBytesMax && this.segmentBytes > FILE_HEADER_BYTES) {
      this.startSegment(this.segmentId + 1)
    }
    if (this.buffered + frameBytes > this.buffer.length) {
      this.handoff()
      if (frameBytes > this.buffer.length) this.buffer = new Uint8Array(frameBytes)
    }
    this.buffered += encodeFrameInto(this.buffer, this.buffered, payload, this.seed, kind)
    this.segmentBytes += frameBytes
    this.bytesSinceSnapshot += frameBytes
    this.bytesAppended += frameBytes
    this.appendSeq++
    if (this.buffered >= HANDOFF_BYTES) this.handoff()
    else if (!this.handoffScheduled) {
      this.handoffScheduled = true
      this.adapter.nextTurn().then(() => {
        this.handoffScheduled = false
        if (!this.closed && this.failure === null) this.handoff()
      }).catch(() => { /* recorded in this.failure: the next append or sync reports it */ })
    }
    return frameBytes
  }

  /**
   * Resolves when every record appended before the call is durable (group commit). A sync starts at the end
   * of the event-loop turn in which it was first asked for, and everyone who asks meanwhile shares it. So
   * writers woken together by one sync append and share the next, and under load each fdatasync (or
   * IndexedDB transaction) carries a whole batch. A lone writer pays one turn of delay. At most
   * SYNCS_IN_FLIGHT_MAX run at once; beyond that the next waits for the oldest.
   */
  sync (): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure)
    const target = this.appendSeq
    if (this.durableSeq >= target) return Promise.resolve()
    const newest = this.inflight[this.inflight.length - 1]
    if (newest !== undefined && newest.upTo >= target) return newest.promise
    if (this.queued !== null) return this.queued
    const gate = this.inflight.length >= SYNCS_IN_FLIGHT_MAX ? this.inflight[0]!.promise.catch(() => {}) : Promise.resolve()
    this.queued = gate
      .then(() => this.adapter.nextTurn())
      .then(() => {
        this.queued = null
        return this.startSync()
      })
    return this.queued
  }

  private startSync (): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure)
    try {
      this.handoff()
    } catch (error) {
      return Promise.reject(error)
    }
    const upTo = this.appendSeq
    const covered = { segment: this.segmentId, offset: this.segmentBytes }
    const marks = this.unmarked > 0
    this.unmarked = 0
    this.syncCount++
    const entry = {
      upTo,
      promise: this.adapter.sync().then(
        () => {
          if (this.failure !== null) throw this.failure // an overlapping sync failed: nothing is known durable
          if (upTo > this.durableSeq) this.durableSeq = upTo
          // Record how far the log is durable; it becomes durable itself with a later sync (or never, which
          // only makes a later recovery more lenient about the stretch after the previous marker).
          if (marks && !this.closed) this.put(encodeMark(covered.segment, covered.offset), 'marker')
        },
        (error: unknown) => { throw this.fail(error) }
      ).finally(() => {
        const at = this.inflight.indexOf(entry)
        if (at >= 0) this.inflight.splice(at, 1)
      })
    }
    this.inflight.push(entry)
    return entry.promise
  }

  /**
   * Writes a snapshot of the state and drops the segments it makes obsolete. `payloads` must describe the
   * state as of this call: compact() starts the new segment before it returns to the event loop, so records
   * appended after the call land in the segment the snapshot does not cover. Concurrent calls share one run.
   */
  compact (payloads: Iterable<Uint8Array>): Promise<void> {
    this.check()
    if (this.compacting !== null) return this.compacting
    const id = this.segmentId + 1
    this.startSegment(id)
    this.bytesSinceSnapshot = 0
    let written = 0
    const chunkBytes = this.options.snapshotChunkBytes
    const salt = this.newSalt()
    const seed = saltSeed(salt)
    const chunks = function * (): Generator<Uint8Array> {
      let parts: Uint8Array[] = [fileHeader(SNAPSHOT_MAGIC, salt)]
      let size = FILE_HEADER_BYTES
      for (const payload of payloads) {
        const frame = encodeFrame(payload, seed)
        parts.push(frame)
        size += frame.length
        if (size >= chunkBytes) {
          yield concat(parts, size)
          written += size
          parts = []
          size = 0
        }
      }
      if (size > 0) { written += size; yield concat(parts, size) }
    }
    this.compacting = (async () => {
      await this.adapter.writeSnapshot(id, chunks())
      this.snapshotBytes = written
      await this.adapter.dropBefore(id)
      this.options.log.info(`WAL ${this.adapter.location}: snapshot ${id} written (${written} bytes); older segments dropped`)
      this.compactions++
    })().catch((error: unknown) => {
      this.compactionsFailed++
      throw error
    }).finally(() => { this.compacting = null })
    return this.compacting
  }

  get isCompacting (): boolean { return this.compacting !== null }

  /** Makes everything appended durable, waits for a running compaction, and releases the backend. */
  async close (): Promise<void> {
    if (this.closed) return
    try {
      if (this.failure === null) await this.sync()
      if (this.compacting !== null) await this.compacting.catch(() => {})
    } finally {
      this.closed = true
      await this.adapter.close()
    }
  }
}

function concat (parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(size)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
