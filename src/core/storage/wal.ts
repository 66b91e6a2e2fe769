/**
 * The write-ahead log above a WalAdapter: framing, recovery, group commit and compaction, the same for every
 * backend.
 *
 * Recovery reads the newest snapshot, then replays every later segment in order. After each completed sync
 * the log gets a *sync marker* frame naming the position up to which everything was durable. A frame that
 * fails its length or checksum check at or after the highest marker found anywhere is a *torn tail*: no
 * acknowledged write lies there (a write is acknowledged only once a sync covering it completed, and a
 * completed sync leaves no hole before the data it covers), so the log is cut there with a warning — this
 * covers a process crash mid-write and also a power loss whose page writeback landed out of order (a hole
 * followed by later, unacknowledged frames). Damage *before* the highest marker is damage to acknowledged
 * data: recovery stops with WalCorruptError naming the segment and offset; with `onCorruption: 'skip'` the
 * damaged bytes are skipped (and reported) instead. Every open starts a fresh segment, so no file is ever
 * appended to after a crash.
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
import type { Rng } from '../env.js'
import { FILE_HEADER_BYTES, FRAME_HEADER_BYTES, SEGMENT_MAGIC, SNAPSHOT_MAGIC, decodeMark, encodeFrame, encodeFrameInto, encodeMark, fileHeader, findNextFrame, readFileHeader, readFrame, saltSeed } from './frame.js'
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
  /** Draws each new file's random salt (frame.ts): records copied into values never pass as frames. */
  rng: Rng
}

export const DEFAULT_WAL_OPTIONS: Omit<WalOptions, 'log' | 'rng'> = {
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

/** A position in the log: segment id, then byte offset in it. */
interface Position { segment: number; offset: number }

function before (a: Position, b: Position): boolean {
  return a.segment < b.segment || (a.segment === b.segment && a.offset < b.offset)
}

type Scanned =
  | { kind: 'record'; segment: number; offset: number; payload: Uint8Array }
  | { kind: 'damage'; segment: number; offset: number; end: number; reason: string }

/** Buffered appends are handed to the adapter at the end of the turn, or at once beyond this size. */
const HANDOFF_BYTES = 256 * 1024
/**
 * Syncs allowed in flight at once. Two let the next batch's sync start while the previous one's completion is
 * still travelling back through libuv's thread pool (measured here, before FileWal preallocated: 0.61x ->
 * 0.66x of the fdatasync floor with 64 writers); more would only queue fdatasyncs behind each other.
 */
export const SYNCS_IN_FLIGHT_MAX = 2

function allZero (data: Uint8Array, from: number): boolean {
  for (let i = from; i < data.length; i++) if (data[i] !== 0) return false
  return true
}

/**
 * Every frame and damaged stretch of one file, in order; sync markers are reported through `onMark`. After
 * damage the scan resumes at the next valid frame (salted checksums keep look-alikes inside payloads from
 * passing).
 */
function scanFile (data: Uint8Array, segment: number, seed: number, onMark: (p: Position) => void): Scanned[] {
  const out: Scanned[] = []
  let offset = FILE_HEADER_BYTES
  for (;;) {
    const step = readFrame(data, offset, seed)
    if (step.kind === 'end') return out
    // Zeros to the end: space a backend zero-filled ahead of its writes, not damage.
    if (step.kind === 'bad' && allZero(data, offset)) return out
    if (step.kind === 'bad') {
      const next = findNextFrame(data, offset, seed)
      const end = next >= 0 ? next : data.length
      out.push({ kind: 'damage', segment, offset, end, reason: step.reason })
      if (next < 0) return out
      offset = next
      continue
    }
    if (step.kind === 'marker') {
      const mark = decodeMark(step.payload)
      if (mark !== null) onMark(mark)
    } else {
      out.push({ kind: 'record', segment, offset, payload: step.payload })
    }
    offset += FRAME_HEADER_BYTES + step.payload.length
  }
}

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
    /** Damage to data that was durable: stop, or skip it and say so, as the caller asked. */
    const corrupt = (location: string, item: { offset: number; end: number; reason: string }): void => {
      if (options.onCorruption === 'fail') throw new WalCorruptError(location, item.offset, item.reason)
      skipped.push({ location, offset: item.offset, bytes: item.end - item.offset, reason: item.reason })
      log.warn(`WAL ${location}: skipping ${item.end - item.offset} corrupt bytes at offset ${item.offset} (${item.reason}) as asked`)
    }
    let records = 0
    let snapshotRecords = 0
    let bytes = 0
    let snapshotBytes = 0

    // 1. The newest snapshot. It was written whole or not at all, so any damage in it is corruption.
    if (listing.snapshot !== null) {
      const data = await adapter.readSnapshot(listing.snapshot)
      const location = adapter.describe('snapshot', listing.snapshot)
      const salt = readFileHeader(data, SNAPSHOT_MAGIC)
      if (salt === null) throw new WalFormatError(location, 'missing or unknown snapshot header')
      for (const item of scanFile(data, listing.snapshot, saltSeed(salt), () => {})) {
        if (item.kind === 'record') { apply(item.payload); snapshotRecords++ } else corrupt(location, item)
      }
      snapshotBytes = data.length
    }

    // 2. The segments the snapshot does not cover. Older ones are leftovers of a compaction cut short.
    const floor = listing.snapshot ?? 0
    const live = listing.segments.filter(id => id >= floor)
    if (live.length < listing.segments.length) await adapter.dropBefore(floor)
    // First pass: every frame and damaged stretch, and the highest durable position any marker names.
    let durable: Position = { segment: floor, offset: 0 }
    const items: Scanned[] = []
    for (const id of live) {
      const data = await adapter.readSegment(id)
      bytes += data.length
      if (data.length === 0) continue
      const salt = readFileHeader(data, SEGMENT_MAGIC)
      if (salt === null) {
        if (data.length >= FILE_HEADER_BYTES && data.subarray(0, 4).some(b => b !== 0)) {
          throw new WalFormatError(adapter.describe('segment', id), 'missing or unknown segment header')
        }
        items.push({ kind: 'damage', segment: id, offset: 0, end: data.length, reason: 'partial or blank segment header' })
        continue
      }
      items.push(...scanFile(data, id, saltSeed(salt), mark => { if (before(durable, mark)) durable = mark }))
    }
    // Second pass: apply in order. Damage before the durable position hit acknowledged data (corruption);
    // damage at or after it is a torn tail, and nothing after it was acknowledged either.
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      if (item.kind === 'record') { apply(item.payload); records++; continue }
      const location = adapter.describe('segment', item.segment)
      if (before(item, durable)) {
        corrupt(location, item)
        continue
      }
      const dropped = items.slice(i + 1).filter(x => x.kind === 'record').length
      tornTails.push({ location, offset: item.offset, bytes: item.end - item.offset, reason: item.reason })
      log.warn(`WAL ${location}: torn tail at offset ${item.offset} (${item.reason}); truncating it and ${dropped} later unacknowledged record(s) — the writes a crash interrupted`)
      await adapter.truncateSegment(item.segment, item.offset)
      for (const id of live) if (id > item.segment) await adapter.truncateSegment(id, 0)
      break
    }
    const lastId = Math.max(floor, ...listing.segments)
    const wal = new Wal(adapter, options, lastId, bytes, snapshotBytes)
    wal.startSegment(lastId + 1)
    const report: RecoveryReport = { snapshot: listing.snapshot, snapshotRecords, segments: live.length, records, bytes, tornTails, skipped }
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
    const frameBytes = this.put(payload, 'record')
    this.unmarked++
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
