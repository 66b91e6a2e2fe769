/**
 * Storage suite. Each metric is measured next to a floor in the same run:
 *
 *   engine.put / engine.get      the engine in memory, no WAL          vs a plain Map set / get
 *   wal.append.async             Wal + FileWal, 100-byte records       vs fs.writeSync per record, no sync
 *   wal.append.sync (64 writers) Wal + FileWal, group commit           vs 64 records per write + fdatasync
 *                                (also reported against the same floor with fdatasync on the thread pool)
 *   engine.put.sync (64 writers) the engine on a FileWal, sync durability, 65,536 keys, same floor
 *
 * Rates are medians over several rounds after a warm-up.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { VersionVector } from '../src/core/version/vv.js'
import { built } from './built.js'
import { emit, median, progress, rate } from './report.js'

// The engine and its log as node/peer.js runs them (bench/built.ts).
const { FileWal } = await built<typeof import('../src/adapters/wal-file.js')>('src/adapters/wal-file.js')
const { systemClock } = await built<typeof import('../src/adapters/node-env.js')>('src/adapters/node-env.js')
const { cryptoRng } = await built<typeof import('../src/adapters/random.js')>('src/adapters/random.js')
const { silentLogger } = await built<typeof import('../src/core/env.js')>('src/core/env.js')
const { StorageEngine } = await built<typeof import('../src/core/storage/engine.js')>('src/core/storage/engine.js')
const { FRAME_HEADER_BYTES } = await built<typeof import('../src/core/storage/frame.js')>('src/core/storage/frame.js')
const { DEFAULT_WAL_OPTIONS, Wal } = await built<typeof import('../src/core/storage/wal.js')>('src/core/storage/wal.js')

const SUITE = 'storage'
const RECORD_BYTES = 100
const WRITERS = 64

function tmpDir (): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-bench-'))
}

async function timed (fn: () => Promise<void> | void): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

/**
 * Runs `writers` concurrent loops of `op` for `ms` and returns completed ops per second. A timer ends the run
 * (rather than a clock read per operation, which would cost as much as a small operation).
 */
async function concurrentRate (writers: number, ms: number, op: () => Promise<unknown>): Promise<number> {
  let done = 0
  let running = true
  const timer = setTimeout(() => { running = false }, ms)
  const start = performance.now()
  await Promise.all(Array.from({ length: writers }, async () => {
    while (running) { await op(); done++ }
  }))
  clearTimeout(timer)
  return done / ((performance.now() - start) / 1000)
}

async function engineInMemory (quick: boolean): Promise<void> {
  const ops = quick ? 200_000 : 500_000
  const rounds = quick ? 3 : 7
  const keyCount = 1 << 16
  const mask = keyCount - 1
  const keys = Array.from({ length: keyCount }, (_, i) => `user:${i}:session`)
  const value = new Uint8Array(RECORD_BYTES).fill(7)

  progress(`engine.put: ${rounds} rounds of ${ops} puts over ${keyCount} keys, each with the context of the previous write`)
  const engine = await StorageEngine.open({ replicaId: 'bench-replica', clock: systemClock })
  const contexts: Array<VersionVector | undefined> = new Array(keyCount)
  const put = await rate(ops, rounds, () => timed(async () => {
    for (let i = 0; i < ops; i++) {
      const k = i & mask
      const result = await engine.put(keys[k]!, value, { context: contexts[k] })
      contexts[k] = result.context
    }
  }))
  const map = new Map<string, unknown>()
  const mapSet = await rate(ops, rounds, () => timed(() => {
    for (let i = 0; i < ops; i++) map.set(keys[i & mask]!, { value, i })
  }))
  emit({ suite: SUITE, metric: 'engine.put', value: put, unit: 'ops/s', inFlight: 1, baseline: mapSet, baselineMetric: 'Map.set', target: 1_300_000 })

  progress(`engine.get: ${rounds} rounds of ${ops} gets`)
  let sink = 0
  const get = await rate(ops, rounds, () => timed(() => {
    for (let i = 0; i < ops; i++) sink += engine.get(keys[i & mask]!)!.values.length
  }))
  const mapGet = await rate(ops, rounds, () => timed(() => {
    for (let i = 0; i < ops; i++) sink += map.get(keys[i & mask]!) === undefined ? 0 : 1
  }))
  if (sink === 0) throw new Error('unreachable: keeps the loops from being optimised away')
  emit({ suite: SUITE, metric: 'engine.get', value: get, unit: 'ops/s', baseline: mapGet, baselineMetric: 'Map.get', target: 1_300_000 })
  await engine.close()
}

async function walAsync (quick: boolean): Promise<void> {
  const records = quick ? 100_000 : 200_000
  const rounds = quick ? 3 : 5
  const payload = new Uint8Array(RECORD_BYTES).fill(1)
  const frameBytes = new Uint8Array(RECORD_BYTES + FRAME_HEADER_BYTES).fill(1)

  progress(`wal.append.async: ${rounds} rounds of ${records} appends of ${RECORD_BYTES}-byte records`)
  const dir = tmpDir()
  try {
    const adapter = new FileWal(dir, { backgroundSyncMs: 0 })
    const { wal } = await Wal.open(adapter, { ...DEFAULT_WAL_OPTIONS, log: silentLogger, rng: cryptoRng }, () => {})
    const appends = await rate(records, rounds, () => timed(async () => {
      for (let i = 0; i < records; i++) wal.append(payload)
      await adapter.nextTurn() // the last buffered bytes reach the OS
    }))
    await wal.close()

    const floorFile = path.join(dir, 'floor.bin')
    const fd = fs.openSync(floorFile, 'a')
    const floor = await rate(records, rounds, () => timed(() => {
      for (let i = 0; i < records; i++) fs.writeSync(fd, frameBytes)
    }))
    fs.closeSync(fd)
    emit({ suite: SUITE, metric: 'wal.append.async', value: appends, unit: 'ops/s', recordBytes: RECORD_BYTES, baseline: floor, baselineMetric: 'fs.writeSync per record' })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The floor for group commit: batches of WRITERS records, each batch one write and one fdatasync, called on
 * the main thread (`blocking`, the raw floor) or through libuv's thread pool as a non-blocking server must.
 */
async function fdatasyncFloor (dir: string, ms: number, blocking: boolean): Promise<number> {
  const batch = new Uint8Array(WRITERS * (RECORD_BYTES + FRAME_HEADER_BYTES)).fill(2)
  const fd = fs.openSync(path.join(dir, 'floor-sync.bin'), 'a')
  let records = 0
  const start = performance.now()
  while (performance.now() - start < ms) {
    fs.writeSync(fd, batch)
    if (blocking) fs.fdatasyncSync(fd)
    else await new Promise<void>((resolve, reject) => { fs.fdatasync(fd, e => { if (e === null) resolve(); else reject(e) }) })
    records += WRITERS
  }
  const elapsed = performance.now() - start
  fs.closeSync(fd)
  return records / (elapsed / 1000)
}

async function walSync (quick: boolean): Promise<void> {
  const ms = quick ? 700 : 1500
  const rounds = quick ? 3 : 5
  const payload = new Uint8Array(RECORD_BYTES).fill(3)
  progress(`wal.append.sync: ${rounds} rounds of ${ms} ms, ${WRITERS} writers each appending and awaiting sync, vs the fdatasync-per-batch floor`)
  const dir = tmpDir()
  try {
    const adapter = new FileWal(path.join(dir, 'wal'), { backgroundSyncMs: 0 })
    const { wal } = await Wal.open(adapter, { ...DEFAULT_WAL_OPTIONS, log: silentLogger, rng: cryptoRng }, () => {})
    const engine = await StorageEngine.open({ replicaId: 'bench-replica', clock: systemClock, rng: cryptoRng, wal: new FileWal(path.join(dir, 'engine'), { backgroundSyncMs: 0 }), durability: 'sync' })
    const keyCount = 1 << 16
    const keys = Array.from({ length: keyCount }, (_, i) => `user:${i}:session`)
    const contexts: Array<VersionVector | undefined> = new Array(keyCount)
    let next = 0
    const put = async (): Promise<void> => {
      const k = next++ & (keyCount - 1)
      contexts[k] = (await engine.put(keys[k]!, payload, { context: contexts[k] })).context
    }
    const walRates: number[] = []
    const engineRates: number[] = []
    const floors: number[] = []
    const nonBlockingFloors: number[] = []
    // Interleave the rounds so that a burst of load elsewhere on the machine hits all three alike.
    for (let round = 0; round <= rounds; round++) {
      const w = await concurrentRate(WRITERS, ms, () => { wal.append(payload); return wal.sync() })
      const e = await concurrentRate(WRITERS, ms, put)
      const f = await fdatasyncFloor(dir, ms, true)
      const n = await fdatasyncFloor(dir, ms, false)
      if (round > 0) { walRates.push(w); engineRates.push(e); floors.push(f); nonBlockingFloors.push(n) } // round 0 warms up
    }
    const syncs = wal.syncCount
    await wal.close()
    await engine.close()
    const floor = median(floors)
    const nonBlocking = median(nonBlockingFloors)
    const value = median(walRates)
    emit({
      suite: SUITE,
      metric: 'wal.append.sync',
      value,
      unit: 'ops/s',
      inFlight: WRITERS,
      recordBytes: RECORD_BYTES,
      baseline: floor,
      baselineMetric: `write + fdatasyncSync per ${WRITERS} records`,
      target: 0.7,
      syncs,
      nonBlockingFloor: Math.round(nonBlocking),
      nonBlockingRatio: Math.round(value / nonBlocking * 1000) / 1000
    })
    emit({ suite: SUITE, metric: 'engine.put.sync', value: median(engineRates), unit: 'ops/s', inFlight: WRITERS, valueBytes: RECORD_BYTES, baseline: floor, baselineMetric: `write + fdatasync per ${WRITERS} records` })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

export async function run (flags: string[]): Promise<void> {
  const quick = flags.includes('--quick')
  await engineInMemory(quick)
  await walAsync(quick)
  await walSync(quick)
}
