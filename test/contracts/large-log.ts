/**
 * Logs far beyond what a test usually writes, through the storage engine, so that "intact" means every key
 * reads back its last value: a segment of `segmentRecords` records, and `totalRecords` records across many
 * segments with every key written `rounds` times, each with and without a snapshot. Recovery used to spread
 * a segment's records into one call's arguments and died with "Maximum call stack size exceeded" at about
 * 150,000 records (issue 10).
 *
 * Free of any test framework: the contract suite runs these cases under vitest against the file adapter,
 * and test/e2e/pages/wal-lab.ts runs the same cases in a real Chromium against IndexedDB.
 */
import { ManualClock, SeededRng } from '../../src/core/env.js'
import { type EngineOptions, StorageEngine } from '../../src/core/storage/engine.js'
import { FILE_HEADER_BYTES } from '../../src/core/storage/frame.js'
import type { WalAdapter } from '../../src/core/storage/wal-adapter.js'

export interface LargeLogSizes {
  /** Records in the one segment of the first two cases. */
  segmentRecords: number
  /** Records in the multi-segment log of the last two cases (each key written `rounds` times). */
  totalRecords: number
  rounds: number
  /** Segment size for the last two cases, so that the log spans many segments. */
  segmentBytesMax: number
}

/** The sizes, for the file adapter in CI. */
export const LARGE_LOG: LargeLogSizes = { segmentRecords: 500_000, totalRecords: 2_000_000, rounds: 4, segmentBytesMax: 8 * 1024 * 1024 }

export interface LargeLogHarness {
  /** A new adapter over the same stored log (a restart). */
  make(): WalAdapter
}

export interface LargeLogCase {
  name: (sizes: LargeLogSizes) => string
  run: (h: LargeLogHarness, sizes: LargeLogSizes) => Promise<void>
}

function check (ok: boolean, what: string): void {
  if (!ok) throw new Error(`large log: ${what}`)
}

function equal (actual: unknown, expected: unknown, what: string): void {
  check(actual === expected, `${what}: expected ${String(expected)}, got ${String(actual)}`)
}

/** Key i's value in round r: small, and different for every key and round, so a stale record shows. */
function value (i: number, round: number): Uint8Array {
  return Uint8Array.of(i & 0xff, (i >>> 8) & 0xff, (i >>> 16) & 0xff, round)
}

const key = (i: number): string => `k${i}`

function open (h: LargeLogHarness, options: Partial<EngineOptions> = {}): Promise<StorageEngine> {
  return StorageEngine.open({ replicaId: 'large-log', clock: new ManualClock(1_000), rng: new SeededRng(3), wal: h.make(), durability: 'async', walCompactAfterBytes: Number.MAX_SAFE_INTEGER, ...options })
}

/** Puts keys [from, to) with round `round`'s value, each replacing what it read. */
async function putRange (e: StorageEngine, from: number, to: number, round: number): Promise<void> {
  for (let i = from; i < to; i++) {
    await e.put(key(i), value(i, round), { context: e.get(key(i))?.context })
    if ((i & 0x3fff) === 0x3fff) await new Promise(resolve => { setTimeout(resolve, 0) }) // let the log hand off
  }
}

/** Checks that every key in [0, keys) holds exactly its value of round `roundOf(i)`, or a tombstone. */
function checkKeys (e: StorageEngine, keys: number, roundOf: (i: number) => number | 'deleted'): void {
  const bad: string[] = []
  for (let i = 0; i < keys && bad.length < 5; i++) {
    const read = e.get(key(i))
    const round = roundOf(i)
    if (round === 'deleted') {
      if (read?.deleted !== true) bad.push(key(i))
      continue
    }
    const expected = value(i, round)
    const got = read?.values.length === 1 ? read.values[0]!.value : null
    if (got === null || got.length !== expected.length || got.some((b, k) => b !== expected[k])) bad.push(key(i))
  }
  check(bad.length === 0, `keys not intact after reopening: ${bad.join(', ')}`)
}

/** Segments holding at least one record. */
async function dataSegments (h: LargeLogHarness): Promise<number> {
  const a = h.make()
  const { segments } = await a.open()
  let n = 0
  for (const id of segments) if ((await a.readSegment(id)).length > FILE_HEADER_BYTES) n++
  await a.close()
  return n
}

export const LARGE_LOG_CASES: LargeLogCase[] = [
  {
    name: s => `reopens one segment of ${s.segmentRecords} records with every key intact`,
    run: async (h, s) => {
      const keys = s.segmentRecords
      const e = await open(h)
      await putRange(e, 0, keys, 1)
      await e.close()
      equal(await dataSegments(h), 1, 'segments holding records')
      const again = await open(h)
      equal(again.recovery!.records, keys, 'records replayed')
      equal(again.size, keys, 'keys')
      checkKeys(again, keys, () => 1)
      await again.close()
    }
  },
  {
    name: s => `reopens a snapshot plus one segment of ${s.segmentRecords} records, half of them rewriting the snapshot's keys`,
    run: async (h, s) => {
      const half = s.segmentRecords / 2
      const e = await open(h)
      await putRange(e, 0, half, 1)
      await e.compact()
      await putRange(e, 0, 2 * half, 2) // half rewrite the snapshot's keys, half are new
      await e.close()
      equal(await dataSegments(h), 1, 'segments holding records')
      const again = await open(h)
      equal(again.recovery!.snapshotRecords, half, 'snapshot records')
      equal(again.recovery!.records, 2 * half, 'log records')
      equal(again.recovery!.superseded, half, 'superseded records') // the snapshot's, for the keys rewritten
      equal(again.size, 2 * half, 'keys')
      checkKeys(again, 2 * half, () => 2)
      await again.close()
    }
  },
  {
    name: s => `reopens ${s.totalRecords} records across segments, every key written ${s.rounds} times`,
    run: async (h, s) => {
      const keys = s.totalRecords / s.rounds
      const options = { walSegmentBytesMax: s.segmentBytesMax }
      const e = await open(h, options)
      for (let round = 1; round <= s.rounds; round++) await putRange(e, 0, keys, round)
      await e.close()
      check(await dataSegments(h) > 3, 'the log spans more than three segments')
      const again = await open(h, options)
      equal(again.recovery!.records, s.totalRecords, 'records replayed')
      equal(again.recovery!.superseded, s.totalRecords - keys, 'superseded records')
      equal(again.size, keys, 'keys')
      checkKeys(again, keys, () => s.rounds)
      await again.close()
    }
  },
  {
    name: s => `reopens a snapshot plus ${s.totalRecords} records across segments, with deletes`,
    run: async (h, s) => {
      const keys = s.totalRecords / s.rounds
      const extra = keys / 10
      const options = { walSegmentBytesMax: s.segmentBytesMax }
      const e = await open(h, options)
      // The snapshot holds keys [0, keys + extra) at round 1; the log after it rewrites [0, keys) in every
      // round, then deletes every tenth of them. [keys, keys + extra) live only in the snapshot.
      await putRange(e, 0, keys + extra, 1)
      await e.compact()
      for (let round = 2; round <= s.rounds + 1; round++) await putRange(e, 0, keys, round)
      for (let i = 0; i < keys; i += 10) await e.delete(key(i), { context: e.get(key(i))!.context })
      await e.close()
      check(await dataSegments(h) > 3, 'the log spans more than three segments')
      const again = await open(h, options)
      equal(again.recovery!.snapshotRecords, keys + extra, 'snapshot records')
      equal(again.recovery!.records, s.totalRecords + keys / 10, 'log records')
      equal(again.size, keys + extra, 'keys')
      checkKeys(again, keys + extra, i => (i >= keys ? 1 : i % 10 === 0 ? 'deleted' : s.rounds + 1))
      await again.close()
    }
  }
]
