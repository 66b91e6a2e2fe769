/**
 * The write-ahead log above a WalAdapter: framing, recovery, group commit and compaction, the same for every
 * backend.
 *
 * Recovery reads the newest snapshot, then replays every later segment in order. A frame that fails its
 * length or checksum check is a *torn tail* when no valid frame follows it anywhere in the log — what a crash
 * in the middle of a write leaves — and is truncated with a warning. If valid frames follow, the damage is
 * in the middle of the log: recovery stops with WalCorruptError naming the segment and offset, because what
 * follows may be acknowledged writes; with `onCorruption: 'skip'` the damaged bytes are skipped (and
 * reported) instead. Every open starts a fresh segment, so no file is ever appended to after a crash.
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
import type { Logger } from '../env.js'
import { ClosedError, WalCorruptError, WalFailedError, WalFormatError } from '../errors.js'
import { FRAME_HEADER_BYTES, MAGIC_BYTES, SEGMENT_MAGIC, SNAPSHOT_MAGIC, encodeFrame, encodeFrameInto, findNextFrame, hasMagic, readFrame } from './frame.js'
import type { WalAdapter } from './wal-adapter.js'

export type CorruptionPolicy = 'fail' | 'skip'

export interface WalOptions {
  /** A segment is closed and a new one started when the next record would take it past this. Default 64 MiB. */
  segmentBytesMax: number
  /** What recovery does on a damaged record before the tail: stop with an error (default) or skip it. */
  onCorruption: CorruptionPolicy
  /** Snapshot chunks handed to the adapter are about this large. Default 1 MiB. */
  snapshotChunkBytes: number
  log: Logger
}

export const DEFAULT_WAL_OPTIONS: Omit<WalOptions, 'log'> = {
  segmentBytesMax: 64 * 1024 * 1024,
  onCorruption: 'fail',
  snapshotChunkBytes: 1024 * 1024
}

export interface Damage {
  /** The segment or snapshot, as the adapter names it. */
  readonly location: string
  readonly offset: number
  /** Bytes dropped (torn tail) or skipped (corruption). */
  readonly bytes: number
  readonly reason: string
}

export interface RecoveryReport {
  readonly snapshot: number | null
  readonly snapshotRecords: number
  readonly segments: number
  readonly records: number
  readonly bytes: number
  readonly tornTails: readonly Damage[]
  readonly skipped: readonly Damage[]
}

interface SegmentRead { id: number; bytes: Uint8Array }

/** Buffered appends are handed to the adapter at the end of the turn, or at once beyond this size. */
const HANDOFF_BYTES = 256 * 1024
/**
 * Syncs allowed in flight at once. Two let the next batch's sync start while the previous one's completion is
 * still travelling back through libuv's thread pool (measured here: 0.61x -> 0.66x of the fdatasync floor
 * with 64 writers); more would only queue fdatasyncs behind each other in the kernel.
 */
export const SYNCS_IN_FLIGHT_MAX = 2

function containsValidFrame (bytes: Uint8Array, from: number): boolean {
  if (bytes.length <= from) return false
  return readFrame(bytes, from).kind === 'record' || findNextFrame(bytes, from) >= 0
}

export class Wal {
  private segmentId: number
  private segmentBytes = 0
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

  private constructor (private readonly adapter: WalAdapter, private readonly options: WalOptions, lastId: number, replayed: number, snapshotBytes: number) {
    this.segmentId = lastId
    this.bytesSinceSnapshot = replayed
    this.snapshotBytes = snapshotBytes
  }

  get location (): string { return this.adapter.location }

  /**
   * Recovers the log, calling `apply` with every record payload in order (snapshot first), then opens a new
   * segment for appends.
   */
  static async open (adapter: WalAdapter, options: WalOptions, apply: (payload: Uint8Array) => void): Promise<{ wal: Wal; report: RecoveryReport }> {
    try {
      return await Wal.recover(adapter, options, apply)
    } catch (error) {
      await adapter.close().catch(() => {})
      throw error
    }
  }

  private static async recover (adapter: WalAdapter, options: WalOptions, apply: (payload: Uint8Array) => void): Promise<{ wal: Wal; report: RecoveryReport }> {
    const log = options.log
    const listing = await adapter.open()
    const tornTails: Damage[] = []
    const skipped: Damage[] = []
    let records = 0
    let snapshotRecords = 0
    let bytes = 0
    let snapshotBytes = 0

    const replay = (data: Uint8Array, from: number, location: string, isTail: (offset: number) => boolean): number => {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
      let offset = from
      for (;;) {
        const step = readFrame(data, offset, view)
        if (step.kind === 'end') return data.length
        if (step.kind === 'record') {
          apply(step.payload)
          records++
          offset += FRAME_HEADER_BYTES + step.payload.length
          continue
        }
        if (isTail(offset)) {
          tornTails.push({ location, offset, bytes: data.length - offset, reason: step.reason })
          log.warn(`WAL ${location}: torn tail at offset ${offset} (${data.length - offset} bytes: ${step.reason}); truncating — these are the unacknowledged writes of a crash`)
          return offset
        }
        if (options.onCorruption === 'fail') throw new WalCorruptError(location, offset, step.reason)
        const next = findNextFrame(data, offset)
        const end = next >= 0 ? next : data.length
        skipped.push({ location, offset, bytes: end - offset, reason: step.reason })
        log.warn(`WAL ${location}: skipping ${end - offset} corrupt bytes at offset ${offset} (${step.reason}) as asked`)
        if (next < 0) return data.length
        offset = next
      }
    }

    // 1. The newest snapshot. It was written whole or not at all, so any damage in it is corruption.
    if (listing.snapshot !== null) {
      const data = await adapter.readSnapshot(listing.snapshot)
      const location = adapter.describe('snapshot', listing.snapshot)
      if (!hasMagic(data, SNAPSHOT_MAGIC)) throw new WalFormatError(location, 'missing snapshot header')
      replay(data, MAGIC_BYTES, location, () => false)
      snapshotRecords = records
      records = 0
      snapshotBytes = data.length
    }

    // 2. The segments the snapshot does not cover. Older ones are leftovers of a compaction cut short.
    const floor = listing.snapshot ?? 0
    const live = listing.segments.filter(id => id >= floor)
    if (live.length < listing.segments.length) await adapter.dropBefore(floor)
    const reads: SegmentRead[] = []
    for (const id of live) reads.push({ id, bytes: await adapter.readSegment(id) })

    // A bad frame is a torn tail when nothing valid follows it in this segment or any later one.
    const laterHasData = (index: number): boolean => reads.slice(index + 1).some(s => containsValidFrame(s.bytes, MAGIC_BYTES))
    for (let i = 0; i < reads.length; i++) {
      const { id, bytes: data } = reads[i]!
      const location = adapter.describe('segment', id)
      if (data.length === 0) continue
      bytes += data.length
      const tailFrom = (offset: number): boolean => findNextFrame(data, offset) < 0 && !laterHasData(i)
      if (!hasMagic(data, SEGMENT_MAGIC)) {
        if (data.length < MAGIC_BYTES && !laterHasData(i)) {
          tornTails.push({ location, offset: 0, bytes: data.length, reason: 'partial segment header' })
          log.warn(`WAL ${location}: partial segment header; truncating`)
          await adapter.truncateSegment(id, 0)
          continue
        }
        throw new WalFormatError(location, 'missing segment header')
      }
      const end = replay(data, MAGIC_BYTES, location, tailFrom)
      if (end < data.length) {
        await adapter.truncateSegment(id, end)
        // Whatever follows a torn tail holds no valid frame: empty it so a later recovery finds a clean end.
        for (const later of reads.slice(i + 1)) if (later.bytes.length > 0) await adapter.truncateSegment(later.id, 0)
        break
      }
    }
    const lastId = Math.max(floor, ...listing.segments)
    const wal = new Wal(adapter, options, lastId, bytes, snapshotBytes)
    wal.startSegment(lastId + 1)
    const report: RecoveryReport = { snapshot: listing.snapshot, snapshotRecords, segments: live.length, records, bytes, tornTails, skipped }
    return { wal, report }
  }

  private startSegment (id: number): void {
    this.handoff()
    this.adapter.startSegment(id)
    this.segmentId = id
    this.adapter.append(SEGMENT_MAGIC)
    this.segmentBytes = MAGIC_BYTES
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

  /** Gives the buffered frames to the adapter (which owns them from then on). */
  private handoff (): void {
    if (this.buffered === 0) return
    const bytes = this.buffer.subarray(0, this.buffered)
    this.buffer = new Uint8Array(Math.max(HANDOFF_BYTES, this.buffer.length === this.buffered ? HANDOFF_BYTES : this.buffer.length))
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
    const frameBytes = FRAME_HEADER_BYTES + payload.length
    if (this.segmentBytes + frameBytes > this.options.segmentBytesMax && this.segmentBytes > MAGIC_BYTES) {
      this.startSegment(this.segmentId + 1)
    }
    if (this.buffered + frameBytes > this.buffer.length) {
      this.handoff()
      if (frameBytes > this.buffer.length) this.buffer = new Uint8Array(frameBytes)
    }
    this.buffered += encodeFrameInto(this.buffer, this.buffered, payload)
    this.segmentBytes += frameBytes
    this.bytesSinceSnapshot += frameBytes
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
    this.syncCount++
    const entry = {
      upTo,
      promise: this.adapter.sync().then(
        () => {
          if (this.failure !== null) throw this.failure // an overlapping sync failed: nothing is known durable
          if (upTo > this.durableSeq) this.durableSeq = upTo
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
    const chunks = function * (): Generator<Uint8Array> {
      let parts: Uint8Array[] = [SNAPSHOT_MAGIC]
      let size = MAGIC_BYTES
      for (const payload of payloads) {
        const frame = encodeFrame(payload)
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
    })().finally(() => { this.compacting = null })
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
