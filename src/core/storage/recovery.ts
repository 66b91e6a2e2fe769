/**
 * Recovery of the write-ahead log (wal.ts), the same for every backend: which records a log holds, what
 * damage in it means, and handing the records over newest first.
 *
 * Records come back newest first: the segments after the newest snapshot from their last record to their
 * first, then the snapshot's (see recoverLog for the two passes and what they hold in memory). After each
 * completed sync the log gets a *sync marker* frame naming the position up to which everything was durable.
 * A frame that fails its length or checksum check at or after the highest marker found anywhere is a *torn
 * tail*: no acknowledged write lies there (a write is acknowledged only once a sync covering it completed,
 * and a completed sync leaves no hole before the data it covers), so the log is cut there with a warning —
 * this covers a process crash mid-write and also a power loss whose page writeback landed out of order (a
 * hole followed by later, unacknowledged frames). Damage *before* the highest marker is damage to
 * acknowledged data: recovery stops with WalCorruptError naming the segment and offset; with
 * `onCorruption: 'skip'` the damaged bytes are skipped (and reported) instead. Nothing on disk changes
 * unless recovery succeeds.
 */
import type { Logger } from '../env.js'
import { WalCorruptError, WalFormatError } from '../errors.js'
import { FILE_HEADER_BYTES, FRAME_BAD, FRAME_END, FRAME_HEADER_BYTES, FRAME_PARTIAL, SEGMENT_MAGIC, SNAPSHOT_MAGIC, checkFrame, decodeMark, findNextFrame, frameLength, isMarker, lengthField, readFileHeader, readFrame, saltSeed } from './frame.js'
import type { WalAdapter } from './wal-adapter.js'

export type CorruptionPolicy = 'fail' | 'skip'

export interface RecoveryOptions {
  /** What recovery does on a damaged record before the tail: stop with an error (default) or skip it. */
  onCorruption: CorruptionPolicy
  log: Logger
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

/**
 * Segments recovery keeps in memory between its validating pass and its replay pass, newest first, in bytes
 * (beyond it, older segments are read a second time). Recovery holds at most this plus one segment.
 */
export const RECOVERY_KEEP_BYTES = 64 * 1024 * 1024
/** Recovery reports progress for each segment or snapshot at least this large. */
const PROGRESS_BYTES = 16 * 1024 * 1024

/**
 * Where recovery hands each record: `bytes[start, end)` is the payload, a view into the read buffer valid
 * only during the call (decode it there, copy what must outlive it). Records come newest first: the
 * segments after the snapshot from their last record back to their first, then the snapshot's records
 * (`from` says which). Since a record holds a key's whole state, the first record of a key is its state and
 * the engine skips every older one (DESIGN §4: replay is "last record per key wins").
 */
export type ReplayRecord = (bytes: Uint8Array, start: number, end: number, from: 'segment' | 'snapshot') => void

function allZero (data: Uint8Array, from: number, to = data.length): boolean {
  for (let i = from; i < to; i++) if (data[i] !== 0) return false
  return true
}

/** A stretch of a file that is not a valid frame, up to the next valid one (or the end). */
interface DamagedStretch { offset: number; end: number; reason: string }

interface FrameVisitor {
  record (offset: number, length: number): void
  marker (offset: number, length: number): void
  damage (stretch: DamagedStretch): void
}

/**
 * Checks the frames of `data[from, to)` in place and reports each to `visit`. With `final` false more bytes
 * may follow `to`: the scan stops at the first frame not all there, or at the first damage (resolving
 * damage needs the rest of the file), and returns the offset to resume from with more data. With `final`
 * true it runs to the end: after damage it resumes at the next valid frame (salted checksums keep
 * look-alikes inside payloads from passing), and zeros to the end are a backend's zero-filled space, not
 * damage. Returns where it stopped.
 */
function scanFrames (data: Uint8Array, from: number, to: number, seed: number, final: boolean, visit: FrameVisitor): number {
  let offset = from
  for (;;) {
    const field = checkFrame(data, offset, to, seed, final)
    if (field === FRAME_END || field === FRAME_PARTIAL) return offset
    if (field === FRAME_BAD) {
      if (!final) return offset
      if (allZero(data, offset, to)) return to
      const step = readFrame(data.subarray(0, to), offset, seed)
      const next = findNextFrame(data.subarray(0, to), offset, seed)
      visit.damage({ offset, end: next >= 0 ? next : to, reason: step.kind === 'bad' ? step.reason : 'unreadable frame' })
      if (next < 0) return to
      offset = next
      continue
    }
    const length = frameLength(field)
    if (isMarker(field)) visit.marker(offset, length)
    else visit.record(offset, length)
    offset += FRAME_HEADER_BYTES + length
  }
}

interface ChunkVisitor {
  /** `bytes[at, at + length)` is the payload: a view valid only during the call. */
  record (offset: number, length: number, bytes: Uint8Array, at: number): void
  damage (stretch: DamagedStretch): void
}

/**
 * Reads a file delivered as chunks through one window, checking frames as they complete, so a large
 * snapshot never sits in memory whole: the window holds the unconsumed rest of the previous chunk (at most
 * one frame) plus the new one. After damage the rest of the file is read in (damage is rare, and
 * resynchronising needs it). Visit offsets are file offsets. Returns the file's size.
 */
async function scanChunks (chunks: AsyncIterable<Uint8Array>, magic: Uint8Array, location: string, visit: ChunkVisitor): Promise<number> {
  let window = new Uint8Array(0)
  let start = 0 // first unconsumed byte in window
  let end = 0 // bytes of window in use
  let base = 0 // file offset of window[0]
  let seed: number | null = null
  let draining = false
  const add = (chunk: Uint8Array): void => {
    if (end + chunk.length > window.length) {
      // Drop what was consumed; grow only when the unconsumed rest plus the chunk do not fit.
      const keep = end - start
      if (keep + chunk.length <= window.length) window.copyWithin(0, start, end)
      else {
        const grown = new Uint8Array(Math.max(keep + chunk.length, window.length * 2))
        grown.set(window.subarray(start, end))
        window = grown
      }
      base += start
      end = keep
      start = 0
    }
    window.set(chunk, end)
    end += chunk.length
  }
  const inFile: FrameVisitor = {
    record: (offset, length) => { visit.record(base + offset, length, window, offset + FRAME_HEADER_BYTES) },
    marker: () => { /* snapshots hold no sync markers; one would be ignored */ },
    damage: stretch => { visit.damage({ offset: base + stretch.offset, end: base + stretch.end, reason: stretch.reason }) }
  }
  for await (const chunk of chunks) {
    add(chunk)
    if (seed === null) {
      if (end < FILE_HEADER_BYTES) continue
      const salt = readFileHeader(window.subarray(0, FILE_HEADER_BYTES), magic)
      if (salt === null) throw new WalFormatError(location, 'missing or unknown snapshot header')
      seed = saltSeed(salt)
      start = FILE_HEADER_BYTES
    }
    if (draining) continue
    start = scanFrames(window, start, end, seed, false, inFile)
    // Stopped short of the data's end at a complete frame: that is damage; read the rest before resolving it.
    if (checkFrame(window, start, end, seed, false) === FRAME_BAD) draining = true
  }
  if (seed === null) throw new WalFormatError(location, 'missing or unknown snapshot header')
  scanFrames(window, start, end, seed, true, inFile)
  return base + end
}

/** What recovery found, and where the log continues. */
export interface RecoveredLog {
  /** The highest segment id present (or the snapshot's): appends continue in a new segment after it. */
  lastId: number
  /** Bytes of log read after the snapshot, and the snapshot's size. */
  bytes: number
  snapshotBytes: number
  report: RecoveryReport
}

/**
 * Two passes over the segments after the snapshot, each holding one segment in memory (plus up to
 * RECOVERY_KEEP_BYTES of the newest ones kept from the first pass for the second):
 *   1. oldest to newest, check every frame's checksum, find the highest sync marker and every damaged
 *      stretch, and decide what damage means: corruption before the marker, a torn tail at or after it
 *      (nothing after it is applied, and it is cut on disk once recovery succeeded);
 *   2. newest to oldest, hand each record to `apply`, last record first, so the engine decodes only the
 *      newest record of each key.
 * Then the snapshot's records, streamed in chunks. Nothing collects records: memory is the engine's
 * state plus the read buffers, whatever the log's length.
 */
export async function recoverLog (adapter: WalAdapter, options: RecoveryOptions, apply: ReplayRecord): Promise<RecoveredLog> {
  const log = options.log
  const listing = await adapter.open()
  const tornTails: Damage[] = []
  const skipped: Damage[] = []
  /** Damage to data that was durable: stop, or skip it and say so, as the caller asked. */
  const corrupt = (location: string, item: DamagedStretch): void => {
    if (options.onCorruption === 'fail') throw new WalCorruptError(location, item.offset, item.reason)
    skipped.push({ location, offset: item.offset, bytes: item.end - item.offset, reason: item.reason })
    log.warn(`WAL ${location}: skipping ${item.end - item.offset} corrupt bytes at offset ${item.offset} (${item.reason}) as asked`)
  }
  let records = 0
  let snapshotRecords = 0
  let bytes = 0
  let snapshotBytes = 0

  // The segments the snapshot does not cover. Older ones are leftovers of a compaction cut short.
  const floor = listing.snapshot ?? 0
  const live = listing.segments.filter(id => id >= floor)

  // Pass 1: validate, oldest to newest.
  let durable: Position = { segment: floor, offset: 0 }
  const damage: Array<DamagedStretch & { segment: number; recordsBefore: number }> = []
  const kept = new Map<number, { data: Uint8Array; seed: number }>()
  let keptBytes = 0
  for (const id of live) {
    const data = await adapter.readSegment(id)
    bytes += data.length
    if (data.length === 0) continue
    const salt = readFileHeader(data, SEGMENT_MAGIC)
    if (salt === null) {
      if (data.length >= FILE_HEADER_BYTES && !allZero(data, 0, 4)) {
        throw new WalFormatError(adapter.describe('segment', id), 'missing or unknown segment header')
      }
      damage.push({ segment: id, offset: 0, end: data.length, reason: 'partial or blank segment header', recordsBefore: records })
      continue
    }
    const seed = saltSeed(salt)
    scanFrames(data, FILE_HEADER_BYTES, data.length, seed, true, {
      record: () => { records++ },
      marker: (offset, length) => {
        const mark = decodeMark(data, offset + FRAME_HEADER_BYTES, length)
        if (mark !== null && before(durable, mark)) durable = mark
      },
      damage: stretch => { damage.push({ ...stretch, segment: id, recordsBefore: records }) }
    })
    kept.set(id, { data, seed })
    keptBytes += data.length
    // Keep the newest segments: the replay pass starts with them.
    for (const [oldId, old] of kept) {
      if (keptBytes <= RECOVERY_KEEP_BYTES || oldId === id) break
      kept.delete(oldId)
      keptBytes -= old.data.length
    }
  }
  // Damage before the durable position hit acknowledged data (corruption); damage at or after it is a
  // torn tail, and nothing after it was acknowledged either: the log is cut there.
  const skips = new Map<number, DamagedStretch[]>()
  let cut: Position | null = null
  for (const item of damage) {
    const location = adapter.describe('segment', item.segment)
    if (before(item, durable)) {
      corrupt(location, item)
      const list = skips.get(item.segment) ?? []
      list.push(item)
      skips.set(item.segment, list)
      continue
    }
    const dropped = records - item.recordsBefore
    tornTails.push({ location, offset: item.offset, bytes: item.end - item.offset, reason: item.reason })
    log.warn(`WAL ${location}: torn tail at offset ${item.offset} (${item.reason}); truncating it and ${dropped} later unacknowledged record(s) — the writes a crash interrupted`)
    records = item.recordsBefore
    cut = { segment: item.segment, offset: item.offset }
    break
  }

  // Pass 2: replay, newest to oldest, each segment's records from its last back to its first.
  let offsets = new Float64Array(1024)
  for (let i = live.length - 1; i >= 0; i--) {
    const id = live[i]!
    if (cut !== null && id > cut.segment) continue
    let segment = kept.get(id)
    kept.delete(id)
    let verify = false
    if (segment === undefined) {
      // Read again: check the checksums again too, as these are not the bytes pass 1 checked.
      const data = await adapter.readSegment(id)
      const salt = readFileHeader(data, SEGMENT_MAGIC)
      if (salt === null) continue // pass 1 reported it
      segment = { data, seed: saltSeed(salt) }
      verify = true
    }
    const { data, seed } = segment
    const limit = cut !== null && id === cut.segment ? cut.offset : data.length
    const holes = skips.get(id) ?? []
    let count = 0
    let hole = 0
    for (let offset = FILE_HEADER_BYTES; offset + FRAME_HEADER_BYTES <= limit;) {
      if (hole < holes.length && offset === holes[hole]!.offset) { offset = holes[hole++]!.end; continue }
      const field = verify ? checkFrame(data, offset, limit, seed) : lengthField(data, offset)
      const length = frameLength(field)
      if (field < 0 || length === 0 || offset + FRAME_HEADER_BYTES + length > limit) {
        if (verify && field === FRAME_BAD && !allZero(data, offset, limit)) throw new WalCorruptError(adapter.describe('segment', id), offset, 'changed while being recovered')
        break // zero-filled space: the end
      }
      if (!isMarker(field)) {
        if (count === offsets.length) { const grown = new Float64Array(count * 2); grown.set(offsets); offsets = grown }
        offsets[count++] = offset
      }
      offset += FRAME_HEADER_BYTES + length
    }
    for (let k = count - 1; k >= 0; k--) {
      const at = offsets[k]! + FRAME_HEADER_BYTES
      apply(data, at, at + frameLength(lengthField(data, at - FRAME_HEADER_BYTES)), 'segment')
    }
    // Progress for an operator watching a large store come back (the caller times the whole).
    if (data.length >= PROGRESS_BYTES) log.info(`WAL ${adapter.location}: replayed segment ${id} (${live.length - i} of ${live.length}, ${count} records)`)
  }

  // The snapshot, streamed: it was written whole or not at all, so any damage in it is corruption.
  if (listing.snapshot !== null) {
    const location = adapter.describe('snapshot', listing.snapshot)
    snapshotBytes = await scanChunks(adapter.readSnapshot(listing.snapshot), SNAPSHOT_MAGIC, location, {
      record: (_offset, length, data, at) => { apply(data, at, at + length, 'snapshot'); snapshotRecords++ },
      damage: stretch => { corrupt(location, stretch) }
    })
    if (snapshotBytes >= PROGRESS_BYTES) log.info(`WAL ${adapter.location}: loaded snapshot ${listing.snapshot} (${snapshotRecords} records, ${snapshotBytes} bytes)`)
  }

  // Only now that everything is read and nothing failed does recovery change the log: a failed open leaves
  // it as it was. The torn tail is cut, with everything after it; leftovers of a compaction cut short go.
  if (cut !== null) {
    await adapter.truncateSegment(cut.segment, cut.offset)
    for (const id of live) if (id > cut.segment) await adapter.truncateSegment(id, 0)
  }
  if (live.length < listing.segments.length) await adapter.dropBefore(floor)

  const report: RecoveryReport = { snapshot: listing.snapshot, snapshotRecords, segments: live.length, records, bytes, tornTails, skipped }
  return { lastId: Math.max(floor, listing.segments.at(-1) ?? 0), bytes, snapshotBytes, report }
}

