/**
 * One phase of the recovery benchmark, in a process of its own so that each memory figure starts from a
 * fresh heap (run by bench/recovery.ts with --expose-gc; prints one JSON line on stdout):
 *
 *   live <keys>                 puts <keys> keys into an in-memory engine (no log): the rate, and the memory
 *                               the same keys take when written live
 *   write <keys> <dir> <snap> [<rounds>]
 *                               writes them to a FileWal (async durability, one sync at the end); with snap=1
 *                               compacts at the end, so the log is one snapshot; with snap=0 no compaction
 *                               runs; with rounds > 1, keys/rounds keys are each written `rounds` times
 *   recover <dir>               StorageEngine.open on the directory: time, records/s, memory after recovery
 *   read <dir>                  the floor: read every file of the log and CRC-check every frame, nothing else
 *
 * Keys are `key:<i>` and values 100 bytes, each in its own buffer (as values arriving from the network are).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { StorageEngine as Engine } from '../src/core/storage/engine.js'
import { built } from './built.js'

// The engine and its log as node/peer.js runs them (bench/built.ts).
await built('src/polyfills.js')
const { FileWal } = await built<typeof import('../src/adapters/wal-file.js')>('src/adapters/wal-file.js')
const { systemClock } = await built<typeof import('../src/adapters/node-env.js')>('src/adapters/node-env.js')
const { cryptoRng } = await built<typeof import('../src/adapters/random.js')>('src/adapters/random.js')
const { StorageEngine } = await built<typeof import('../src/core/storage/engine.js')>('src/core/storage/engine.js')
const { FILE_HEADER_BYTES, FRAME_HEADER_BYTES, checkFrame, frameLength, readFileHeader, SEGMENT_MAGIC, SNAPSHOT_MAGIC, saltSeed } = await built<typeof import('../src/core/storage/frame.js')>('src/core/storage/frame.js')

const VALUE_BYTES = 100
/** Beyond any log this benchmark writes: the "without a snapshot" case never compacts. */
const NO_COMPACTION = Number.MAX_SAFE_INTEGER

function value (i: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES)
  v[0] = i & 0xff
  v[1] = (i >>> 8) & 0xff
  v[2] = (i >>> 16) & 0xff
  return v
}

function gc (): void {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error('run with --expose-gc')
  collect()
  collect()
}

/** Memory after a full collection: resident set, V8 heap, and the peak resident set of the process so far. */
function memory (): { rssBytes: number; heapUsedBytes: number; externalBytes: number; peakRssBytes: number } {
  gc()
  const m = process.memoryUsage()
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external + m.arrayBuffers, peakRssBytes: process.resourceUsage().maxRSS * 1024 }
}

function out (result: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(result) + '\n')
}

function keyOf (i: number): string { return `key:${i}` }

/** The engine on a FileWal in `dir`: async durability (one sync at close), never compacting on its own. */
function openLog (dir: string): Promise<Engine> {
  return StorageEngine.open({ replicaId: 'bench-replica', clock: systemClock, rng: cryptoRng, wal: new FileWal(dir, { backgroundSyncMs: 0 }), durability: 'async', walCompactAfterBytes: NO_COMPACTION })
}

async function live (keys: number): Promise<void> {
  const engine = await StorageEngine.open({ replicaId: 'bench-replica', clock: systemClock })
  const start = performance.now()
  for (let i = 0; i < keys; i++) await engine.put(keyOf(i), value(i))
  const ms = performance.now() - start
  out({ ms, opsPerSec: keys / (ms / 1000), keys: engine.size, ...memory() })
}

async function write (records: number, dir: string, snapshot: boolean, rounds: number): Promise<void> {
  const keys = Math.floor(records / rounds)
  fs.rmSync(dir, { recursive: true, force: true })
  const engine = await openLog(dir)
  for (let n = 0; n < keys * rounds; n++) {
    const i = n % keys
    await engine.put(keyOf(i), value(n), { context: engine.get(keyOf(i))?.context })
    if ((n & 0xffff) === 0xffff) await new Promise(resolve => { setImmediate(resolve) }) // let the log hand off
  }
  if (snapshot) await engine.compact()
  await engine.close()
  const files = fs.readdirSync(dir).filter(f => f !== 'LOCK')
  const bytes = files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0)
  out({ files, bytes })
}

async function recover (dir: string): Promise<void> {
  const start = performance.now()
  const engine = await openLog(dir)
  const ms = performance.now() - start
  const report = engine.recovery!
  const records = report.records + report.snapshotRecords
  const mem = memory()
  // Every key must be there, with its value.
  const probe = engine.get(keyOf(engine.size - 1))
  if (probe === undefined || probe.values[0]?.value?.length !== VALUE_BYTES) throw new Error('recovered store lacks its last key')
  out({ ms, records, superseded: report.superseded, recordsPerSec: records / (ms / 1000), keys: engine.size, ...mem })
  await engine.close()
}

function read (dir: string): void {
  const start = performance.now()
  let frames = 0
  let bytes = 0
  for (const name of fs.readdirSync(dir).sort()) {
    const magic = name.endsWith('.wal') ? SEGMENT_MAGIC : name.endsWith('.snap') ? SNAPSHOT_MAGIC : null
    if (magic === null) continue
    const data = new Uint8Array(fs.readFileSync(path.join(dir, name)))
    bytes += data.length
    const salt = readFileHeader(data, magic)
    if (salt === null) continue
    const seed = saltSeed(salt)
    for (let at = FILE_HEADER_BYTES; ;) {
      const field = checkFrame(data, at, data.length, seed)
      if (field < 0) break
      frames++
      at += FRAME_HEADER_BYTES + frameLength(field)
    }
  }
  const ms = performance.now() - start
  out({ ms, frames, bytes, framesPerSec: frames / (ms / 1000) })
}

const [phase, ...args] = process.argv.slice(2)
if (phase === 'live') await live(Number(args[0]))
else if (phase === 'write') await write(Number(args[0]), args[1]!, args[2] === '1', Number(args[3] ?? 1))
else if (phase === 'recover') await recover(args[0]!)
else if (phase === 'read') read(args[0]!)
else throw new Error(`unknown phase ${phase}`)
