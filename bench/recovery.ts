/**
 * Recovery suite: how fast a store reopens, and what it holds in memory afterwards, against baselines from
 * the same run. Each phase runs in a fresh process (bench/recovery-phase.ts) so that memory figures do not
 * carry over:
 *
 *   live       the same keys put into an in-memory engine: the engine.put rate (the baseline for records/s)
 *              and the resident memory of the keys written live (the baseline for memory after recovery)
 *   read       reading the log's files and CRC-checking every frame (the floor for the time to reopen)
 *   recover    StorageEngine.open of the log, written once without a snapshot (one record per key across
 *              segments), once compacted into a snapshot, and once with a quarter of the keys each written
 *              four times (the same number of records; replay decodes only each key's newest)
 *
 * `--keys=N` (default 1,000,000; `--quick` 200,000); keys `key:<i>`, 100-byte values. Times are medians of
 * three runs.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { emit, median, progress } from './report.js'

const SUITE = 'recovery'
const PHASE = fileURLToPath(new URL('./recovery-phase.ts', import.meta.url))
const ROUNDS = 3
/** A phase that takes longer than this is stuck: the benchmark fails instead of hanging. */
const PHASE_TIMEOUT_MS = 10 * 60_000

type Figures = Record<string, number>

function phase (args: string[]): Promise<Figures> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', PHASE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, PHASE_TIMEOUT_MS)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0) { reject(new Error(`phase ${args.join(' ')} failed (${signal ?? `exit ${code}`})`)); return }
      try { resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as Figures) } catch (error) { reject(error) }
    })
  })
}

/** Runs a phase ROUNDS times; returns the run with the median time. */
async function medianRun (args: string[]): Promise<Figures> {
  const runs: Figures[] = []
  for (let i = 0; i < ROUNDS; i++) runs.push(await phase(args))
  const ms = median(runs.map(r => r.ms!))
  return runs.find(r => r.ms === ms) ?? runs.sort((a, b) => a.ms! - b.ms!)[ROUNDS >> 1]!
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`

export async function run (args: string[]): Promise<void> {
  const keysArg = args.find(a => a.startsWith('--keys='))
  const keys = keysArg !== undefined ? Number(keysArg.slice('--keys='.length)) : args.includes('--quick') ? 200_000 : 1_000_000
  if (!Number.isInteger(keys) || keys < 4 || keys > 50_000_000) throw new Error(`--keys must be an integer in [4, 50000000], got ${keysArg}`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-bench-recovery-'))
  try {
    progress(`live baseline: ${keys} puts into an in-memory engine, ${ROUNDS} runs`)
    const live = await medianRun(['live', String(keys)])
    progress(`  ${Math.round(live.opsPerSec!)} puts/s, resident ${mb(live.rssBytes!)} (heap ${mb(live.heapUsedBytes!)})`)
    emit({ suite: SUITE, metric: 'live.put', value: live.opsPerSec!, unit: 'ops/s', keys })
    emit({ suite: SUITE, metric: 'live.rss', value: live.rssBytes! / 1e6, unit: 'MB', keys, heapUsedMB: Math.round(live.heapUsedBytes! / 1e6) })
    const cases = [
      { name: 'log', snapshot: false, rounds: 1, what: `${keys} keys, no compaction` },
      { name: 'snapshot', snapshot: true, rounds: 1, what: `${keys} keys, compacted into a snapshot` },
      { name: 'rewritten', snapshot: false, rounds: 4, what: `${keys / 4} keys written 4 times each, no compaction` }
    ]
    for (const { name, snapshot, rounds, what } of cases) {
      const data = path.join(dir, name)
      progress(`${name}: writing ${what}`)
      const written = await phase(['write', String(keys), data, snapshot ? '1' : '0', String(rounds)])
      progress(`  ${mb(written.bytes!)} in ${(written.files as unknown as string[]).join(', ')}`)
      progress(`${name}: reading and CRC-checking the files, ${ROUNDS} runs`)
      const read = await medianRun(['read', data])
      progress(`${name}: reopening, ${ROUNDS} runs`)
      const recovered = await medianRun(['recover', data])
      if (recovered.keys !== Math.floor(keys / rounds)) throw new Error(`recovered ${recovered.keys} keys of ${Math.floor(keys / rounds)}`)
      progress(`  ${recovered.ms!.toFixed(0)} ms (read floor ${read.ms!.toFixed(0)} ms), ${Math.round(recovered.recordsPerSec!)} records/s (${recovered.superseded} superseded), resident ${mb(recovered.rssBytes!)}, peak ${mb(recovered.peakRssBytes!)}`)
      const common = { suite: SUITE, keys: recovered.keys!, records: recovered.records!, logBytes: written.bytes! }
      emit({ ...common, metric: `${name}.open.ms`, value: recovered.ms!, unit: 'ms', baseline: read.ms!, baselineMetric: 'read + CRC-check the files' })
      emit({ ...common, metric: `${name}.records`, value: recovered.recordsPerSec!, unit: 'records/s', superseded: recovered.superseded!, baseline: live.opsPerSec!, baselineMetric: `engine.put in memory, ${keys} keys`, target: 0.5 })
      // Memory is comparable only where the same keys are held: the rewritten case holds a quarter of them.
      if (rounds === 1) emit({ ...common, metric: `${name}.rss`, value: recovered.rssBytes! / 1e6, unit: 'MB', baseline: live.rssBytes! / 1e6, baselineMetric: 'resident after the same keys written live', target: 1.1, heapUsedMB: Math.round(recovered.heapUsedBytes! / 1e6), peakRssMB: Math.round(recovered.peakRssBytes! / 1e6) })
      else emit({ ...common, metric: `${name}.rss`, value: recovered.rssBytes! / 1e6, unit: 'MB', heapUsedMB: Math.round(recovered.heapUsedBytes! / 1e6), peakRssMB: Math.round(recovered.peakRssBytes! / 1e6) })
      fs.rmSync(data, { recursive: true, force: true })
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
