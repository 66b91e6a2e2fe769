/**
 * One contract for every WalAdapter (automerge-repo's storage-adapter-tests are the model): the same
 * scenarios — an empty log, a restart, a torn last record, a flipped bit in the middle, segment rolling,
 * group commit, a restart after compaction — run against the memory, file and IndexedDB backends through the
 * Wal above them.
 */
import { describe, expect, it } from 'vitest'
import { WalCorruptError } from '../../src/core/errors.js'
import { SeededRng, silentLogger } from '../../src/core/env.js'
import { FILE_HEADER_BYTES, FRAME_HEADER_BYTES, encodeFrame, saltSeed } from '../../src/core/storage/frame.js'
import type { WalAdapter } from '../../src/core/storage/wal-adapter.js'
import { DEFAULT_WAL_OPTIONS, type RecoveryReport, Wal, type WalOptions } from '../../src/core/storage/wal.js'
import { LARGE_LOG, LARGE_LOG_CASES, type LargeLogSizes } from './large-log.js'

export interface WalHarness {
  /** A new adapter over the same stored log (a restart). */
  make(): WalAdapter
  /** Raw bytes of a segment, and a way to replace them (to damage the log as a crash or a disk would). */
  readRaw(id: number): Promise<Uint8Array>
  writeRaw(id: number, bytes: Uint8Array): Promise<void>
  dispose(): Promise<void>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function record (i: number): Uint8Array {
  return enc.encode(`record-${i}-${'x'.repeat(i % 37)}`)
}

/**
 * Opens the log and returns its records oldest first. Recovery hands them over newest first — the segments'
 * records from the last back, then the snapshot's — and this checks that order while undoing it.
 */
async function open (adapter: WalAdapter, options: Partial<WalOptions> = {}): Promise<{ wal: Wal; records: string[]; report: RecoveryReport }> {
  const fromSegments: string[] = []
  const fromSnapshot: string[] = []
  const { wal, report } = await Wal.open(adapter, { ...DEFAULT_WAL_OPTIONS, log: silentLogger, rng: new SeededRng(7), ...options }, (bytes, start, end, from) => {
    const text = dec.decode(bytes.subarray(start, end))
    if (from === 'segment') {
      if (fromSnapshot.length > 0) throw new Error('a segment record came after the snapshot\'s')
      fromSegments.push(text)
    } else fromSnapshot.push(text)
  })
  return { wal, records: [...fromSnapshot, ...fromSegments.reverse()], report }
}

async function writeAndClose (adapter: WalAdapter, from: number, count: number, options: Partial<WalOptions> = {}): Promise<void> {
  const { wal } = await open(adapter, options)
  for (let i = from; i < from + count; i++) wal.append(record(i))
  await wal.sync()
  await wal.close()
}

function names (from: number, count: number): string[] {
  return Array.from({ length: count }, (_, k) => dec.decode(record(from + k)))
}

/** The newest segment holding records, found by a listing. */
async function lastDataSegment (h: WalHarness): Promise<number> {
  const a = h.make()
  const { segments } = await a.open()
  await a.close()
  for (const id of [...segments].reverse()) if ((await h.readRaw(id)).length > FILE_HEADER_BYTES) return id
  throw new Error('no segment with records')
}

/** The frames of a segment: offset and whether it is a sync marker (bit 31 of the length field). */
function frames (bytes: Uint8Array): Array<{ offset: number; marker: boolean }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out: Array<{ offset: number; marker: boolean }> = []
  for (let at = FILE_HEADER_BYTES; at + FRAME_HEADER_BYTES <= bytes.length;) {
    const field = view.getUint32(at, true)
    out.push({ offset: at, marker: field >= 0x80000000 })
    at += FRAME_HEADER_BYTES + (field & 0x7fffffff)
  }
  return out
}

/** Byte offsets of the record frames (not sync markers) in a segment. */
function frameOffsets (bytes: Uint8Array): number[] {
  return frames(bytes).filter(f => !f.marker).map(f => f.offset)
}

export function runWalContract (name: string, setup: () => Promise<WalHarness>): void {
  describe(`WAL contract: ${name}`, () => {
    const withHarness = (fn: (h: WalHarness) => Promise<void>) => async () => {
      const h = await setup()
      try { await fn(h) } finally { await h.dispose() }
    }

    it('an empty log recovers to nothing, twice', withHarness(async h => {
      for (let round = 0; round < 2; round++) {
        const { wal, records, report } = await open(h.make())
        expect(records).toEqual([])
        expect(report.tornTails).toEqual([])
        await wal.close()
      }
    }))

    it('replays synced records in order after a restart, and appends after them', withHarness(async h => {
      await writeAndClose(h.make(), 0, 100)
      await writeAndClose(h.make(), 100, 50)
      const { wal, records, report } = await open(h.make())
      expect(records).toEqual(names(0, 150))
      expect(report.records).toBe(150)
      await wal.close()
    }))

    it('truncates a torn last record with a warning and keeps everything before it', withHarness(async h => {
      await writeAndClose(h.make(), 0, 20)
      const id = await lastDataSegment(h)
      const bytes = await h.readRaw(id)
      const last = frameOffsets(bytes).at(-1)!
      await h.writeRaw(id, bytes.subarray(0, last + 11)) // the last record's write stopped 3 bytes into it
      const warnings: string[] = []
      const first = await open(h.make(), { log: { ...silentLogger, warn: m => { warnings.push(m) } } })
      expect(first.records).toEqual(names(0, 19))
      expect(first.report.tornTails).toHaveLength(1)
      expect(first.report.tornTails[0]!.offset).toBe(frameOffsets(bytes)[19])
      expect(warnings.join('\n')).toMatch(/torn tail/)
      first.wal.append(record(100))
      await first.wal.sync()
      await first.wal.close()
      // The truncation was durable: the next recovery is clean and sees the record appended after it.
      const second = await open(h.make())
      expect(second.records).toEqual([...names(0, 19), ...names(100, 1)])
      expect(second.report.tornTails).toEqual([])
      await second.wal.close()
    }))

    it('reads a zero-filled tail (preallocated space) as the clean end of a segment', withHarness(async h => {
      await writeAndClose(h.make(), 0, 5)
      const id = await lastDataSegment(h)
      const bytes = await h.readRaw(id)
      const padded = new Uint8Array(bytes.length + 4096)
      padded.set(bytes)
      await h.writeRaw(id, padded)
      const { wal, records, report } = await open(h.make())
      expect(records).toEqual(names(0, 5))
      expect(report.tornTails).toEqual([])
      expect(report.skipped).toEqual([])
      await wal.close()
    }))

    it('stops at a flipped bit in the middle, naming the segment and offset, unless asked to skip', withHarness(async h => {
      await writeAndClose(h.make(), 0, 20)
      const id = await lastDataSegment(h)
      const bytes = (await h.readRaw(id)).slice()
      const at = frameOffsets(bytes)[7]!
      bytes[at + FRAME_HEADER_BYTES + 2]! ^= 0x10
      await h.writeRaw(id, bytes)
      const error = await open(h.make()).then(() => null, (e: unknown) => e)
      expect(error).toBeInstanceOf(WalCorruptError)
      const corrupt = error as WalCorruptError
      expect(corrupt.offset).toBe(at)
      expect(corrupt.location).toBe(h.make().describe('segment', id))
      expect(corrupt.message).toContain(corrupt.location)
      // Nothing was changed by the failed recovery: it fails the same way again.
      await expect(open(h.make())).rejects.toBeInstanceOf(WalCorruptError)
      const skipped = await open(h.make(), { onCorruption: 'skip' })
      expect(skipped.records).toEqual([...names(0, 7), ...names(8, 12)])
      expect(skipped.report.skipped).toHaveLength(1)
      expect(skipped.report.skipped[0]!.offset).toBe(at)
      await skipped.wal.close()
    }))

    it('detects a flipped bit in a length field that makes a record run past the end', withHarness(async h => {
      await writeAndClose(h.make(), 0, 20)
      const id = await lastDataSegment(h)
      const bytes = (await h.readRaw(id)).slice()
      const at = frameOffsets(bytes)[3]!
      bytes[at + 3]! ^= 0x40 // the length's top byte: now far beyond the end of the segment
      await h.writeRaw(id, bytes)
      const error = await open(h.make()).then(() => null, (e: unknown) => e)
      expect(error).toBeInstanceOf(WalCorruptError)
      expect((error as WalCorruptError).offset).toBe(at)
    }))

    it('rolls segments at segmentBytesMax and replays across them', withHarness(async h => {
      const small = { segmentBytesMax: 512 }
      await writeAndClose(h.make(), 0, 200, small)
      const a = h.make()
      const { segments } = await a.open()
      await a.close()
      expect(segments.length).toBeGreaterThan(5)
      const { wal, records } = await open(h.make(), small)
      expect(records).toEqual(names(0, 200))
      await wal.close()
    }))

    it('shares one sync among concurrent writers (group commit)', withHarness(async h => {
      const { wal } = await open(h.make())
      const before = wal.syncCount
      const writers = Array.from({ length: 64 }, async (_, i) => { wal.append(record(i)); await wal.sync() })
      await Promise.all(writers)
      expect(wal.syncCount - before).toBeLessThanOrEqual(2)
      await wal.close()
      const { wal: again, records } = await open(h.make())
      expect(records).toHaveLength(64)
      await again.close()
    }))

    it('recovers after a power loss that kept later, unacknowledged frames but lost some before them', withHarness(async h => {
      const a = h.make()
      const { wal } = await open(a)
      for (let i = 0; i < 20; i++) wal.append(record(i))
      await wal.sync() // acknowledged: records 0-19 (a sync marker now follows them)
      for (let i = 20; i < 30; i++) wal.append(record(i)) // never synced
      await a.nextTurn() // the WAL hands its buffer to the adapter at the end of the turn: stored, not durable
      await a.close() // the process dies here
      const id = await lastDataSegment(h)
      const bytes = (await h.readRaw(id)).slice()
      // Writeback landed out of order: record 24's page never made it, the ones after did.
      const hole = frameOffsets(bytes)[24]!
      bytes.fill(0, hole, hole + FRAME_HEADER_BYTES + 4)
      await h.writeRaw(id, bytes)
      const { wal: again, records, report } = await open(h.make())
      expect(records).toEqual(names(0, 24))
      expect(report.tornTails).toHaveLength(1)
      expect(report.tornTails[0]!.offset).toBe(hole)
      await again.close()
    }))

    it('never takes a frame stored inside a value for a record of the log', withHarness(async h => {
      const forged = enc.encode('forged-record')
      // A client stores a value that holds a well-formed frame (it cannot know this file's salt).
      const carrier = new Uint8Array(200)
      for (let salt = 0; salt < 4; salt++) carrier.set(encodeFrame(forged, saltSeed(salt)), salt * 40)
      const a = h.make()
      const { wal } = await open(a)
      for (let i = 0; i < 5; i++) wal.append(record(i))
      wal.append(carrier)
      await a.nextTurn() // handed to the adapter, not synced
      await a.close() // crash before any sync
      const id = await lastDataSegment(h)
      const bytes = await h.readRaw(id)
      const tornAt = frameOffsets(bytes)[5]!
      await h.writeRaw(id, bytes.subarray(0, tornAt + FRAME_HEADER_BYTES + 190)) // the carrier's write was torn
      const { wal: again, records, report } = await open(h.make())
      expect(records).toEqual(names(0, 5))
      expect(report.tornTails[0]!.offset).toBe(tornAt)
      await again.close()
    }))

    it('restarts from a snapshot plus the records appended after it, with old segments dropped', withHarness(async h => {
      const small = { segmentBytesMax: 1024 }
      const { wal } = await open(h.make(), small)
      for (let i = 0; i < 100; i++) wal.append(record(i))
      await wal.sync()
      const compaction = wal.compact(names(1000, 10).map(s => enc.encode(s)))
      for (let i = 100; i < 110; i++) wal.append(record(i)) // during the compaction: must survive it
      await compaction
      await wal.sync()
      await wal.close()
      const a = h.make()
      const listing = await a.open()
      await a.close()
      expect(listing.snapshot).not.toBeNull()
      expect(Math.min(...listing.segments)).toBeGreaterThanOrEqual(listing.snapshot!)
      const { wal: again, records, report } = await open(h.make(), small)
      expect(records).toEqual([...names(1000, 10), ...names(100, 10)])
      expect(report.snapshotRecords).toBe(10)
      await again.close()
    }))
  })
}

/**
 * The large-log cases (large-log.ts, shared with the browser test that runs them in a real Chromium) against
 * one adapter: a segment of 500,000 records and 2,000,000 records across segments, each with and without a
 * snapshot.
 */
export function runLargeLogContract (name: string, setup: () => Promise<WalHarness>, sizes: LargeLogSizes = LARGE_LOG, timeoutMs = 300_000): void {
  describe(`WAL contract, large logs: ${name}`, () => {
    for (const c of LARGE_LOG_CASES) {
      it(c.name(sizes), async () => {
        const h = await setup()
        try { await c.run(h, sizes) } finally { await h.dispose() }
      }, timeoutMs)
    }
  })
}
