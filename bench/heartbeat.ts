/**
 * Heartbeat suite: the benchmark mesh (bench/mesh.ts: this process and two `node node/peer.js` children,
 * N=3, W=2, sync durability, every peer sweeping TTLs every `--sweep-ms`) tracks `--services` services that
 * each beat every `--interval-ms` for `--seconds`, with a TTL of `--ttl-ms`; at about two thirds of the run
 * `--stop` of them stop beating. The load generator is open-loop: beat j is due at t0 + j·interval/services
 * (service j mod services), so the beats are spread evenly over each interval; a scheduler on a 1 ms timer
 * (and on every completion) issues what is due through `peer.heartbeat` on the in-process peer, at most
 * `--in-flight` at once. A beat issued more than LATE_MS after it was due is late; when the backlog exceeds one
 * whole interval a service's beat that went out after its next one fell due stands for that one, which is
 * skipped (a service keeps one beat waiting, in its place in line, not a queue of old ones), and a service
 * whose previous beat is still unanswered skips the next — both counted, never hidden. A beat the
 * peer's admission control refuses (OverloadedError: HTTP 503 ERR_OVERLOADED with Retry-After) is retried by
 * its service after the Retry-After the HTTP API sends (OVERLOADED_RETRY_AFTER_S), as meshkv/client does; the
 * service's regular beats that fall due meanwhile are skipped (`skippedRetrying`), and a stopped service
 * retries nothing after it stopped.
 *
 *   beats.ops                acknowledged beats per second over the run, against the scheduled rate (met:
 *                            at least 99% of it and no beat skipped), with the in-process peer's fdatasyncs
 *   beat.latency.p50/.p99    issue to acknowledgement; beat.lateness.p99/.max: issue after due time;
 *                            beats.late: beats issued more than LATE_MS after due (target 0)
 *   false.expirations        `expired` events (the in-process peer's watch on 'heartbeat/') for services not
 *                            stopped, split into `starved` (no acknowledged beat for a whole TTL: the load
 *                            generator fell behind, or its beats were refused) and `early` (the store expired
 *                            a service that had beaten within its TTL); plus non-stopped services each peer
 *                            lists expired at the end
 *   detection.detected       stopped services whose expiry the watch saw (neverAcknowledged: stopped
 *                            services none of whose beats was acknowledged or noted as refused, so likely
 *                            unknown to every peer);
 *                            detection.delay.p50/.p99/.max:
 *                            the expired event's arrival minus (last beat + TTL), against the bound of two
 *                            sweep periods, where the last beat is the last acknowledged one or a later
 *                            refused one the peer took as a sign of life (admission.refusedRefreshed; the
 *                            delay from the last acknowledgement alone is given beside it then); detection.listed: each peer's own records (GET
 *                            /services?local=1; the in-process peer's services()) list the stopped services
 *                            as expired
 *   wal.bytes                each peer's log (snapshot + segments after it) with bytes per beat and per service
 *   replica.expiries         expiries each peer's sweep wrote, with its anti-entropy and RPC counters
 *   memory.rss, cpu          each peer at the end, and its CPU time over the run (% of one core)
 *   memory.per.service       each child's resident memory at the end minus before the first beat, both
 *                            measured after two full GCs and pauses (POST /debug/gc), per service
 *                            (target: at most 2 KiB; the benchmark process is reported, not judged)
 *   put.baseline             the same run's general write (`--baseline-seconds`, 15; 0 skips it): plain
 *                            quorum puts of fresh keys, values as long as a beat record, open-loop at the
 *                            beats' rate, in a fresh mesh of its own before the beats' mesh
 *   cpu.per.beat             CPU-ms per acknowledged beat summed over the three peers, against the baseline's
 *                            CPU-ms per put (target: at most 0.5x)
 *   loop.delay.max           this process's longest event-loop stall during the run (p99 alongside)
 *   disk.fdatasync.p50       this disk's fdatasync latency, probed just before the mesh starts
 *
 * Before the run, 2 s of last-writer-wins puts to 256 keys `bench-warmup/*` (not measured) warm up the write path. Progress
 * (stderr, every --progress-ms) shows the last window's beat rate and latency maximum, late and skipped beats,
 * the watch's alive/expired counts and the event-loop stall maximum, and says when this peer compacted its log.
 *
 * `--find-capacity` searches for the knee instead: the largest service count the mesh tracks for
 * `--probe-seconds` (60) with zero false expirations, every stopped service detected within two sweeps and at
 * least 99% of the beats due after the start (its first 10 s) acknowledged (`--knee-rule=tracked`, the
 * default: issue 16's definition of the knee, see bench/capacity.ts probeFailures); `--knee-rule=strict` also
 * fails a probe on less than 99% of the whole run's beats acknowledged, or any skipped beat.
 * Each probe is one such run in a fresh mesh and a fresh process (the overload run too); the count
 * doubles from `--start-services` (1,000) while probes pass, halves while they fail, then bisects until the
 * smallest failure is within max(`--resolution` (250), 5%) of the largest pass, at most `--probe-max` (10)
 * probes (bench/capacity.ts). A line per probe on stderr, and per probe on stdout:
 *
 *   capacity.probe           the count, pass, why it failed, beats/s against scheduled, false expirations,
 *                            stopped detected within the bound, CPU-ms per beat summed over the three peers
 *                            (the benchmark process's share includes the load generator), resident memory
 *   capacity.knee            the largest passing count (below the smallest failing one) and its CPU-ms per beat,
 *                            and the knee the same probes give by the other rule (`otherRule`)
 *
 * Then one overload run at twice the knee (or `--overload=<services>` alone, for `--seconds`): the same run,
 * but each service is its own client — no in-flight bound of the generator's (unless `--in-flight=` is given),
 * so only the peer's admission control (kv.admit-beats-max, default 1024 beats in flight) bounds what it
 * takes. Its lines carry `run: "overload"`; detection is judged against the stretched bound (bench/capacity.ts
 * detectionBoundMs: a degraded detector takes a TTL credit every DETECTOR_STRETCH-th sweep), and it adds
 *
 *   overload.refused         beats refused (ERR_OVERLOADED, HTTP 503 + Retry-After), the retries, the
 *                            peer's own refusal counter as a cross-check, and the beats it took past its
 *                            bound in the lane of services a TTL past their last beat or new there
 *                            (urgentAdmitted; urgentNewAdmitted: the new ones' first beats), and the
 *                            refused beats that renewed their key at the peer all the same (refusedRefreshed)
 *   detector                 each peer's degraded episodes, held sweeps and expiries postponed because every
 *                            other replica was degraded
 *   overload                 the verdict: refusals seen, 0 false expirations, every stopped service detected
 *                            within the stretched bound
 *
 * Flags take `--name=value` (bench/run.ts reads bare words as suite names): --services=10000 --seconds=60
 * --interval-ms=1000 --ttl-ms=3000 --sweep-ms=1000 --in-flight=256 --stop=100 --progress-ms=5000
 * --baseline-seconds=15; --quick is 2,000 services for 15 s (and a 5 s baseline); the capacity probes and the
 * overload run measure no baseline; --find-capacity with --probe-seconds=60 --probe-max=10 --start-services=1000
 * --resolution=250; --overload=<services>. Nothing here fails the run on a missed target: each figure says
 * whether it met it.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { ServiceView } from '../src/core/kv/heartbeat.js'
import type { DetectorState } from '../src/core/replication/health.js'
import { built } from './built.js'
import { KNEE_RULES, type KneeRule, PROBE_GRAIN, type Probe, SUSTAINED_SHARE, bracket, detectionBoundMs, nextProbe, probeFailures, steadyFromMs } from './capacity.js'
import { type Mesh, getJson, rssOf, settledRssOf, waitUntil, withMesh } from './mesh.js'
import { cpuSecondsOf, onInterrupt } from './proc.js'
import { type Result, emit, progress, round3 } from './report.js'

const { OVERLOADED_RETRY_AFTER_S } = await built<typeof import('../src/cli/http-api.js')>('src/cli/http-api.js')
const { OverloadedError } = await built<typeof import('../src/core/errors.js')>('src/core/errors.js')
const { DETECTOR_STRETCH } = await built<typeof import('../src/core/replication/health.js')>('src/core/replication/health.js')
const { WATCH_TOPIC } = await built<typeof import('../src/services/watch.js')>('src/services/watch.js')

const SUITE = 'heartbeat'
/** A beat issued later than this after its due time is late. */
const LATE_MS = 100
const WARMUP_MS = 2000
/** Keys the warm-up rewrites (last-writer-wins, so each keeps one value and the log one record per key). */
const WARMUP_KEYS = 256
const FSYNC_PROBE_MS = 1000
/** How long in-flight beats may take to settle once the run is over (a request times out after 10 s). */
const DRAIN_TIMEOUT_MS = 15_000
/** Slack on top of TTL + the detection bound before the stopped services must all have been seen expiring. */
const DETECTION_SLACK_MS = 1000
const SUBSCRIBERS_TIMEOUT_MS = 15_000
/** /services of 10,000 services is about 2 MB of JSON. */
const SERVICES_FETCH_TIMEOUT_MS = 30_000
const MB = 1024 * 1024
/** How long a service waits before it retries a refused beat: the Retry-After the HTTP API sends. */
const RETRY_AFTER_MS = OVERLOADED_RETRY_AFTER_S * 1000
/** The capacity search's resolution as a share of the largest passing count (or --resolution, the larger). */
const RESOLUTION_SHARE = 0.05
/** The overload run's load, in multiples of the knee. */
const OVERLOAD_FACTOR = 2
/** KnucklesDB's claim, about 3,000 services per replica: the floor issue 16 sets for a 3-peer mesh's knee. */
const KNEE_FLOOR_SERVICES = 3000
/**
 * Internal: set by runInChild, the RunOptions (JSON) that a process started as `bench/run.ts heartbeat`
 * measures, printing the result on one stdout line after RUN_RESULT_PREFIX instead of the usual lines.
 */
const RUN_OPTIONS_ENV = 'MESHKV_BENCH_HEARTBEAT_RUN'
const RUN_RESULT_PREFIX = '@heartbeat-run '
/** A probe's process gets this long past its own run (seconds, drain, detection and listings) before it is
 * killed and the probe failed. */
const RUN_CHILD_SLACK_MS = 5 * 60_000

/** The flags: one run's options, and the capacity search's. */
interface Options extends Omit<RunOptions, 'overload'> {
  probeSeconds: number
  probeMax: number
  startServices: number
  resolution: number
  /** Services of an overload run on its own (--overload=); 0: none. */
  overload: number
  findCapacity: boolean
  /** How a probe of the capacity search is judged (--knee-rule=, bench/capacity.ts). */
  kneeRule: KneeRule
  /** Whether --in-flight was given (the overload run has no generator bound otherwise). */
  inFlightSet: boolean
}

type NumericOption = { [K in keyof Options]: Options[K] extends number ? K : never }[keyof Options]

/** One measured run: what `measure` needs. */
interface RunOptions {
  services: number
  seconds: number
  intervalMs: number
  ttlMs: number
  sweepMs: number
  inFlight: number
  stop: number
  progressMs: number
  /** An overload run: detection is judged against the stretched bound, and refusals are reported. */
  overload: boolean
  /** Seconds of general quorum puts at the beats' rate before the beats (0: none): the CPU baseline. */
  baselineSeconds: number
}

/** How long after (its last acknowledged beat + TTL) a stopped service must be seen expiring. */
function boundOf (r: RunOptions): number {
  return r.overload ? detectionBoundMs(r.ttlMs, r.sweepMs, DETECTOR_STRETCH) : 2 * r.sweepMs
}

/** The shortest run (s) in which the stopped services expire, within the bound and 1 s, before it ends, twice over. */
function secondsMin (r: Omit<RunOptions, 'seconds'>): number {
  return Math.ceil(2 * (r.ttlMs + boundOf({ ...r, seconds: 0 }) + DETECTION_SLACK_MS) / 1000)
}

function checkRun (r: RunOptions, flag: string): void {
  if (r.services < 1 || r.stop > r.services) throw new Error(`need 1 <= --stop (${r.stop}) <= services (${r.services})`)
  // The stopped services must have expired (TTL + the bound) with a second to spare before the run ends.
  const min = secondsMin(r)
  if (r.seconds < min) throw new Error(`${flag}=${r.seconds} is too short: the run needs at least ${min} s (twice TTL + ${r.overload ? 'the stretched bound' : '2 sweeps'} + 1 s)`)
}

function parseFlags (flags: string[]): Options {
  const quick = flags.includes('--quick')
  const o: Options = {
    services: quick ? 2000 : 10_000,
    seconds: quick ? 15 : 60,
    intervalMs: 1000,
    ttlMs: 3000,
    sweepMs: 1000,
    inFlight: 256,
    stop: 100,
    progressMs: 5000,
    baselineSeconds: quick ? 5 : 15,
    probeSeconds: 60,
    probeMax: 10,
    startServices: 1000,
    resolution: 250,
    overload: 0,
    findCapacity: flags.includes('--find-capacity'),
    kneeRule: 'tracked',
    inFlightSet: false
  }
  const names: Record<string, NumericOption> = {
    services: 'services',
    seconds: 'seconds',
    'interval-ms': 'intervalMs',
    'ttl-ms': 'ttlMs',
    'sweep-ms': 'sweepMs',
    'in-flight': 'inFlight',
    stop: 'stop',
    'progress-ms': 'progressMs',
    'baseline-seconds': 'baselineSeconds',
    'probe-seconds': 'probeSeconds',
    'probe-max': 'probeMax',
    'start-services': 'startServices',
    resolution: 'resolution',
    overload: 'overload'
  }
  for (const flag of flags) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(flag)
    if (m === null || m[1] === 'quick' || m[1] === 'find-capacity') continue
    if (m[1] === 'knee-rule') {
      if (!(KNEE_RULES as readonly string[]).includes(m[2] ?? '')) throw new Error(`--knee-rule takes one of ${KNEE_RULES.join(', ')} as --knee-rule=<rule>, got ${JSON.stringify(flag)}`)
      o.kneeRule = m[2] as KneeRule
      continue
    }
    const field = names[m[1]!]
    if (field === undefined) continue // another suite's flag
    const value = Number(m[2])
    if (m[2] === undefined || !Number.isInteger(value) || value < 0) throw new Error(`--${m[1]} takes a whole number as --${m[1]}=<n> (bench/run.ts reads bare words as suite names), got ${JSON.stringify(flag)}`)
    o[field] = value
    if (field === 'inFlight') o.inFlightSet = true
  }
  if (o.intervalMs < 10 || o.inFlight < 1 || o.progressMs < 100) throw new Error('--interval-ms must be at least 10, --in-flight at least 1, --progress-ms at least 100')
  if (o.ttlMs < 100 || o.ttlMs <= o.intervalMs) throw new Error(`--ttl-ms (${o.ttlMs}) must be at least 100 and longer than --interval-ms (${o.intervalMs})`)
  if (o.sweepMs < 10) throw new Error('--sweep-ms must be at least 10 (the peers\' lower bound)')
  if (o.findCapacity) {
    if (o.probeMax < 1) throw new Error('--probe-max must be at least 1')
    if (o.startServices < 2 * o.stop) throw new Error(`--start-services (${o.startServices}) must be at least twice --stop (${o.stop})`)
    checkRun(probeOptions(o, o.startServices), '--probe-seconds')
  } else if (o.overload > 0) {
    checkRun(overloadOptions(o, o.overload, o.seconds), '--seconds')
  } else {
    checkRun(singleOptions(o), '--seconds')
  }
  return o
}

function base (o: Options): Omit<RunOptions, 'services' | 'seconds' | 'overload' | 'baselineSeconds'> {
  return { intervalMs: o.intervalMs, ttlMs: o.ttlMs, sweepMs: o.sweepMs, inFlight: o.inFlight, stop: o.stop, progressMs: o.progressMs }
}

function singleOptions (o: Options): RunOptions {
  return { ...base(o), services: o.services, seconds: o.seconds, overload: false, baselineSeconds: o.baselineSeconds }
}

function probeOptions (o: Options, services: number): RunOptions {
  return { ...base(o), services, seconds: o.probeSeconds, overload: false, baselineSeconds: 0 }
}

/** Each service its own client: unless --in-flight says otherwise, only admission control bounds what is in flight. */
function overloadOptions (o: Options, services: number, seconds: number): RunOptions {
  return { ...base(o), services, seconds, inFlight: o.inFlightSet ? o.inFlight : services, overload: true, baselineSeconds: 0 }
}

function percentile (sorted: Float32Array | Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

const round1 = (v: number): number => Math.round(v * 10) / 10
/** `f(v)`, or null for a figure that is missing. */
const orNull = (v: number | null | undefined, f: (v: number) => number): number | null => v === null || v === undefined ? null : f(v)

/** Samples in a Float32Array that grows by doubling (retries make the number of issues open-ended). */
class Samples {
  private buf: Float32Array
  length = 0
  constructor (capacity: number) { this.buf = new Float32Array(Math.max(16, capacity)) }
  push (v: number): void {
    if (this.length === this.buf.length) {
      const grown = new Float32Array(this.buf.length * 2)
      grown.set(this.buf)
      this.buf = grown
    }
    this.buf[this.length++] = v
  }

  sorted (): Float32Array { return this.buf.subarray(0, this.length).sort() }
}

function cpuSnapshot (mesh: Mesh): Array<number | null> {
  const own = process.cpuUsage()
  return [(own.user + own.system) / 1e6, ...mesh.children.map(c => cpuSecondsOf(c.proc.pid))]
}

/**
 * The disk's fdatasync latency right now: 4 KiB writes into a preallocated file, each followed by an
 * fdatasync, for `ms`. Every acknowledged beat waits for two in sequence (the coordinator's, then a
 * replica's), so this is the floor under the beat latency, and it moves with other load on the machine.
 */
function fdatasyncProbe (ms: number): { syncs: number; p50Ms: number; p99Ms: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-bench-fsync-'))
  try {
    const fd = fs.openSync(path.join(dir, 'probe'), 'w')
    try {
      const fileBytes = 4 * MB
      fs.writeSync(fd, new Uint8Array(fileBytes), 0, fileBytes, 0)
      fs.fdatasyncSync(fd)
      const block = new Uint8Array(4096).fill(1)
      const times: number[] = []
      const end = performance.now() + ms
      for (let at = 0; performance.now() < end; at = (at + block.length) % fileBytes) {
        fs.writeSync(fd, block, 0, block.length, at)
        const t = performance.now()
        fs.fdatasyncSync(fd)
        times.push(performance.now() - t)
      }
      const sorted = Float64Array.from(times).sort()
      return { syncs: sorted.length, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) }
    } finally {
      fs.closeSync(fd)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

interface PeerStats { storage: { keys: number; walBytesSinceSnapshot: number; walSnapshotBytes: number; walSyncs: number; expired: number }; kv: { syncRounds: number; syncRepairs: number; readRepairs: number; quorumFailures: number; expiryPostponedDegraded: number }; rpc: { requests: number; timeouts: number; overloaded: number }; sync: { requests: number } }

/** What a probe and the overload verdict need from one run; `lines` are the run's full results. */
interface RunSummary {
  services: number
  seconds: number
  beatsPerS: number
  scheduledPerS: number
  steadyShare: number
  skipped: number
  late: number
  errors: number
  refused: number
  retries: number
  /** False `expired` events, and non-stopped services the peers list expired at the end (summed). */
  falseExpirations: number
  listedFalse: number
  starved: number
  early: number
  stop: number
  detected: number
  withinBound: number
  boundMs: number
  delayMaxMs: number | null
  /** CPU-ms per acknowledged beat, summed over the three peers (the benchmark process includes the generator). */
  cpuMsPerBeat: number | null
  /** Cores the three peers used together over the run. */
  cores: number | null
  rssMb: Record<string, number>
  loopDelayMaxMs: number
  loadAvg1: [number, number]
}

interface RunResult {
  readonly lines: Result[]
  readonly summary: RunSummary
}

export async function run (flags: string[]): Promise<void> {
  const childRun = process.env[RUN_OPTIONS_ENV]
  if (childRun !== undefined) {
    const result = await measure(JSON.parse(childRun) as RunOptions)
    // Its mesh is stopped (measure's withMesh): exit once the line is out, whatever else is still pending.
    process.stdout.write(`${RUN_RESULT_PREFIX}${JSON.stringify(result, keepNonFinite)}\n`, () => process.exit(0))
    return
  }
  const o = parseFlags(flags)
  if (o.findCapacity) {
    await findCapacity(o)
  } else if (o.overload > 0) {
    const r = await measure(overloadOptions(o, o.overload, o.seconds))
    emitOverload(r, null)
  } else {
    const r = singleOptions(o)
    // The baseline in a mesh of its own, so that its keys and its load are not in the beats' memory figures.
    const baseline = r.baselineSeconds > 0 ? await withMesh(meshOptions(r), async mesh => await putBaseline(mesh, r)) : null
    for (const line of (await measure(r, baseline)).lines) emit(line)
  }
}

/** The knee search (see the module comment), then the overload run at twice the knee. */
async function findCapacity (o: Options): Promise<void> {
  const plan = { startServices: o.startServices, resolutionServices: o.resolution, resolutionShare: RESOLUTION_SHARE, probesMax: o.probeMax, servicesMin: Math.max(PROBE_GRAIN, 2 * o.stop) }
  // Each probe is judged by both rules; the search follows --knee-rule, and the knee line gives the other's too.
  const otherRule: KneeRule = o.kneeRule === 'strict' ? 'tracked' : 'strict'
  const probes: Array<Probe & { passOther: boolean; summary: RunSummary | null }> = []
  progress(`capacity search (rule: ${o.kneeRule}): probes of ${o.probeSeconds} s, each in a fresh mesh, from ${o.startServices} services; at most ${o.probeMax} probes, to within max(${o.resolution}, ${RESOLUTION_SHARE * 100}%)`)
  for (let services = nextProbe(probes, plan); services !== null; services = nextProbe(probes, plan)) {
    const k = probes.length + 1
    progress(`probe ${k}/${o.probeMax}: ${services} services for ${o.probeSeconds} s`)
    let summary: RunSummary | null = null
    let why: string[]
    let whyOther: string[]
    try {
      summary = (await runInChild(probeOptions(o, services))).summary
      why = probeFailures(summary, o.kneeRule)
      whyOther = probeFailures(summary, otherRule)
    } catch (error) {
      // A run that could not finish (in-flight beats that never settled) failed at this load; it is reported.
      why = whyOther = [`run failed: ${error instanceof Error ? error.message : String(error)}`]
    }
    const pass = why.length === 0
    probes.push({ services, pass, passOther: whyOther.length === 0, summary })
    progress(`probe ${k}: ${services} services ${pass ? 'PASS' : `FAIL: ${why.join('; ')}`} (${otherRule}: ${whyOther.length === 0 ? 'pass' : 'fail'})${summary === null ? '' : `; ${Math.round(summary.beatsPerS)} beats/s, ${summary.cpuMsPerBeat === null ? '?' : round3(summary.cpuMsPerBeat)} CPU-ms/beat on ${summary.cores === null ? '?' : round1(summary.cores)} cores, detection max ${summary.delayMaxMs === null ? '-' : Math.round(summary.delayMaxMs)} ms, load ${summary.loadAvg1.join(' -> ')}`}`)
    emit({
      suite: SUITE,
      metric: 'capacity.probe',
      value: services,
      unit: 'services',
      probe: k,
      rule: o.kneeRule,
      pass,
      ...(pass ? {} : { why }),
      [`pass${otherRule === 'strict' ? 'Strict' : 'Tracked'}`]: whyOther.length === 0,
      seconds: o.probeSeconds,
      ...(summary === null
        ? {}
        : {
            beatsPerS: Math.round(summary.beatsPerS),
            scheduledPerS: Math.round(summary.scheduledPerS),
            steadyShare: shareOut(summary.steadyShare),
            skipped: summary.skipped,
            lateBeats: summary.late,
            errors: summary.errors,
            falseExpirations: summary.falseExpirations,
            listedExpiredNotStopped: summary.listedFalse,
            detected: summary.detected,
            withinBound: summary.withinBound,
            of: summary.stop,
            boundMs: summary.boundMs,
            detectionMaxMs: orNull(summary.delayMaxMs, Math.round),
            cpuMsPerBeat: orNull(summary.cpuMsPerBeat, round3),
            cores: orNull(summary.cores, round1),
            rssMb: summary.rssMb,
            loopDelayMaxMs: Math.round(summary.loopDelayMaxMs),
            loadAvg1: summary.loadAvg1
          })
    })
  }
  const { passed, failed, inconsistent } = bracket(probes)
  const at = probes.find(p => p.pass && p.services === passed)?.summary ?? null
  // The other rule's knee from the same probes (chosen for this rule's search, so a coarser bracket).
  const other = bracket(probes.map(p => ({ services: p.services, pass: p.passOther })))
  emit({
    suite: SUITE,
    metric: 'capacity.knee',
    value: passed ?? 0,
    unit: 'services',
    rule: o.kneeRule,
    note: `the largest count that passed below the smallest that failed (rule ${o.kneeRule}); each beating every ${o.intervalMs} ms, TTL ${o.ttlMs} ms, for ${o.probeSeconds} s`,
    cpuMsPerBeat: orNull(at?.cpuMsPerBeat, round3),
    cpuNote: 'CPU-ms per acknowledged beat summed over the three peers; the benchmark process\'s share includes the load generator and the watch',
    beatsPerS: orNull(at?.beatsPerS, Math.round),
    cores: orNull(at?.cores, round1),
    rssMb: at?.rssMb ?? null,
    failedAt: failed,
    ...(inconsistent.length === 0 ? {} : { passedAboveFailure: inconsistent }),
    otherRule: { rule: otherRule, knee: other.passed, failedAt: other.failed, ...(other.inconsistent.length === 0 ? {} : { passedAboveFailure: other.inconsistent }) },
    probes: probes.length,
    probesMax: o.probeMax,
    target: KNEE_FLOOR_SERVICES,
    met: passed !== null && passed >= KNEE_FLOOR_SERVICES
  })
  if (passed === null) {
    progress('no probe passed: no overload run')
    return
  }
  const services = OVERLOAD_FACTOR * passed
  const seconds = Math.max(o.probeSeconds, secondsMin(overloadOptions(o, services, 0)))
  if (seconds > o.probeSeconds) progress(`the overload run takes ${seconds} s (the stretched bound needs it), not --probe-seconds=${o.probeSeconds}`)
  progress(`overload: ${services} services (${OVERLOAD_FACTOR}x the knee) for ${seconds} s`)
  emitOverload(await runInChild(overloadOptions(o, services, seconds)), passed)
}

/**
 * One run of the capacity search in a process of its own (this script again, told what to run by
 * RUN_OPTIONS_ENV), so that no probe inherits the last one's heap, timers or a peer still stopping. Its
 * progress goes to this stderr; an interrupt here interrupts it too, and it cleans up its mesh.
 */
async function runInChild (r: RunOptions): Promise<RunResult> {
  const script = new URL('./run.ts', import.meta.url).pathname
  // A process group of its own (the run's process and the peers it starts), so that one kill reaches them all.
  const child = spawn(process.execPath, [...process.execArgv, script, SUITE], {
    env: { ...process.env, [RUN_OPTIONS_ENV]: JSON.stringify(r) },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true
  })
  const killGroup = (): void => {
    try { process.kill(-child.pid!, 'SIGKILL') } catch { /* already gone */ }
  }
  const out: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => { out.push(chunk) })
  const killer = setTimeout(killGroup, r.seconds * 1000 + RUN_CHILD_SLACK_MS)
  process.on('exit', killGroup)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => {
    child.on('close', (code, signal) => { resolve({ code, signal }) })
  })
  // Interrupted: the run's process stops its own mesh (it is not in this terminal's group, so it hears the
  // signal from here only), then this process exits; nothing after this run starts.
  let interrupted = false
  const offInterrupt = onInterrupt(async () => { await exited }, signal => { interrupted = true; child.kill(signal) })
  let clean = false
  try {
    const { code, signal } = await exited
    if (interrupted) await new Promise(() => {})
    // Its mesh stopped in it before it exited 0; otherwise what it started may still run (killed below).
    clean = code === 0
    const line = Buffer.concat(out).toString('utf8').split('\n').find(l => l.startsWith(RUN_RESULT_PREFIX))
    if (line === undefined) throw new Error(`the run's process ${signal === null ? `exited with ${String(code)}` : `was killed by ${signal}`} without a result`)
    return JSON.parse(line.slice(RUN_RESULT_PREFIX.length), restoreNonFinite) as RunResult
  } finally {
    clearTimeout(killer)
    if (!clean) killGroup()
    process.off('exit', killGroup)
    offInterrupt()
  }
}

/** A share as printed: 5 decimals, rounded down, so that a share just under a threshold never prints as it. */
function shareOut (share: number): number {
  return Math.floor(share * 1e5) / 1e5
}

/** JSON has no NaN or Infinity (a figure nothing was measured for is NaN): carried as {"nonFinite": "NaN"}. */
function keepNonFinite (_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? { nonFinite: String(value) } : value
}

function restoreNonFinite (_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && 'nonFinite' in value && Object.keys(value).length === 1) return Number((value as { nonFinite: string }).nonFinite)
  return value
}

/** The overload run's lines, tagged, and its verdict. */
function emitOverload (r: RunResult, knee: number | null): void {
  for (const line of r.lines) emit({ ...line, run: 'overload' })
  const s = r.summary
  const falseTotal = s.falseExpirations + s.listedFalse
  emit({
    suite: SUITE,
    metric: 'overload',
    value: s.services,
    unit: 'services',
    run: 'overload',
    ...(knee === null ? {} : { knee, factor: OVERLOAD_FACTOR }),
    refused: s.refused,
    falseExpirations: s.falseExpirations,
    listedExpiredNotStopped: s.listedFalse,
    detected: s.detected,
    withinStretchedBound: s.withinBound,
    of: s.stop,
    stretchedBoundMs: s.boundMs,
    detectionMaxMs: orNull(s.delayMaxMs, Math.round),
    met: s.refused > 0 && falseTotal === 0 && s.withinBound === s.stop,
    note: 'met: beats refused by admission control, 0 false expirations, every stopped service detected within the stretched bound'
  })
}

/**
 * Warm-up, not measured: the write path (RPC streams, the logs, the JIT) on keys outside 'heartbeat/'.
 * Without lww, rewrites without a context would pile up siblings.
 */
async function warmUp (mesh: Mesh): Promise<void> {
  progress(`warm-up: ${WARMUP_MS} ms of last-writer-wins puts to ${WARMUP_KEYS} keys, 64 in flight`)
  const warmupEnd = performance.now() + WARMUP_MS
  let warmupKey = 0
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() < warmupEnd && !mesh.signal.aborted) await mesh.peer.put(`bench-warmup/${warmupKey++ % WARMUP_KEYS}`, new Uint8Array(64), { lww: true }).catch(() => {})
  }))
}

/** Bytes of a beat record with no metadata and a TTL of 3 s: `{"state":"alive","ttlMs":3000,"meta":null}`. */
const BEAT_VALUE_BYTES = 42

/**
 * The same run's general write: plain (not last-writer-wins) quorum puts of fresh keys as long as a
 * service's key, with values the size of a beat record, open-loop at the beats' rate and in-flight bound, for
 * `r.baselineSeconds` (the same write `bench kv` measures). Returns its line and the CPU-ms per put summed
 * over the three peers, which a beat's is judged against (issue 16: at most half).
 */
async function putBaseline (mesh: Mesh, r: RunOptions): Promise<{ line: Result; cpuMsPerPut: number | null }> {
  const self = mesh.peer
  const slotMs = r.intervalMs / r.services
  const runMs = r.baselineSeconds * 1000
  const totalSlots = Math.floor(runMs / slotMs)
  const value = new Uint8Array(BEAT_VALUE_BYTES).fill(0x61)
  await warmUp(mesh)
  progress(`baseline: ${r.baselineSeconds} s of plain quorum puts of fresh keys at the beats' rate (${Math.round(r.services * 1000 / r.intervalMs)}/s, at most ${r.inFlight} in flight)`)
  let next = 0
  let inFlight = 0
  let acked = 0
  let errors = 0
  let skipped = 0
  let firstError: string | undefined
  const latency = new Samples(totalSlots)
  const cpuBefore = cpuSnapshot(mesh)
  const t0 = performance.now()
  const pump = (): void => {
    const now = performance.now()
    const dueEnd = Math.min(totalSlots, Math.floor((now - t0) / slotMs) + 1)
    // Puts more than one interval overdue are skipped, as beats are.
    for (; next < dueEnd - r.services; next++) skipped++
    while (next < dueEnd && inFlight < r.inFlight) {
      const j = next++
      const at = performance.now()
      inFlight++
      // Same length as a service's key ('heartbeat/svc-000000').
      self.put(`bench-put/${String(j).padStart(10, '0')}`, value).then(() => {
        acked++
        latency.push(performance.now() - at)
      }, (error: unknown) => {
        errors++
        firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      }).finally(() => {
        inFlight--
        if (inFlight === r.inFlight - 1) pump()
      })
    }
  }
  await new Promise<void>((resolve, reject) => {
    const tick = (): void => {
      if (mesh.signal.aborted) { reject(mesh.signal.reason); return }
      pump()
      if (next >= totalSlots) { resolve(); return }
      setTimeout(tick, 1)
    }
    tick()
  })
  await waitUntil(async () => inFlight === 0, DRAIN_TIMEOUT_MS, 'in-flight baseline puts settle')
  const ms = performance.now() - t0
  const cpuAfter = cpuSnapshot(mesh)
  let cpuSeconds: number | null = 0
  for (const [i, before] of cpuBefore.entries()) {
    const after = cpuAfter[i]
    if (before === null || after === null || after === undefined || cpuSeconds === null) cpuSeconds = null
    else cpuSeconds += after - before
  }
  if (firstError !== undefined) progress(`baseline put failed: ${firstError}`)
  const cpuMsPerPut = cpuSeconds === null || acked === 0 ? null : cpuSeconds * 1000 / acked
  const sorted = latency.sorted()
  progress(`baseline: ${Math.round(acked / (ms / 1000))} puts/s, ${cpuMsPerPut === null ? '?' : round3(cpuMsPerPut)} CPU-ms per put over the three peers`)
  return {
    cpuMsPerPut,
    line: {
      suite: SUITE,
      metric: 'put.baseline',
      value: Math.round(acked / (ms / 1000)),
      unit: 'puts/s',
      scheduledPerS: Math.round(r.services * 1000 / r.intervalMs),
      seconds: r.baselineSeconds,
      acked,
      errors,
      skipped,
      p50Ms: round3(percentile(sorted, 0.5)),
      p99Ms: round3(percentile(sorted, 0.99)),
      cpuMsPerPut: orNull(cpuMsPerPut, round3),
      note: 'plain quorum puts of fresh keys, values the size of a beat record, at the beats\' rate; CPU summed over the three peers (the benchmark process\'s includes the load generator)'
    }
  }
}

/** The benchmark mesh of a run: sync durability, every peer sweeping TTLs every `r.sweepMs`. */
function meshOptions (r: RunOptions): Parameters<typeof withMesh>[0] {
  return { name: SUITE, storage: { durability: 'sync', sweepPeriodMs: r.sweepMs }, childArgs: ['--sweep-period-ms', String(r.sweepMs), '--debug-api'] }
}

/**
 * One measured run in a fresh mesh (see the module comment); returns its result lines and its summary.
 * `baseline`, measured before in a mesh of its own, adds its line and the ratio of CPU per beat to it.
 */
async function measure (r: RunOptions, baseline: { line: Result; cpuMsPerPut: number | null } | null = null): Promise<RunResult> {
  const lines: Result[] = []
  const slotMs = r.intervalMs / r.services
  const runMs = r.seconds * 1000
  const totalSlots = Math.floor(runMs / slotMs)
  const boundMs = boundOf(r)
  // About two thirds in, but early enough that TTL + the bound (+ slack) fit before the end.
  const stopAtMs = Math.min(Math.round(runMs * 2 / 3), runMs - (r.ttlMs + boundMs + DETECTION_SLACK_MS))
  const stopSlot = Math.ceil(stopAtMs / slotMs)
  const ids = Array.from({ length: r.services }, (_, i) => `svc-${String(i).padStart(6, '0')}`)
  const indexOf = new Map(ids.map((id, i) => [id, i]))
  // The stopped services, spread over the id space.
  const stopped = new Uint8Array(r.services)
  const stoppedList: number[] = []
  for (let k = 0; k < r.stop; k++) { const s = Math.floor(k * r.services / r.stop); stopped[s] = 1; stoppedList.push(s) }

  const disk = fdatasyncProbe(FSYNC_PROBE_MS)
  progress(`fdatasync on this disk now: p50 ${round1(disk.p50Ms * 1000) / 1000} ms, p99 ${round1(disk.p99Ms * 1000) / 1000} ms (${disk.syncs} in ${FSYNC_PROBE_MS} ms)`)

  return await withMesh(meshOptions(r), async mesh => {
    const self = mesh.peer
    // The watch must receive the children's publications. A peer subscribes to the feed once it has a
    // watcher, and a child publishes only when it sees a subscriber: watch now, then wait until both
    // children see this peer subscribed (their /stats).
    const subscribe = self.watch('heartbeat/', () => {})
    await waitUntil(async () => {
      for (const c of mesh.children) if ((await getJson<{ watch?: { subscribers: number } }>(`${c.http}/stats`)).watch?.subscribers !== 1) return false
      return true
    }, SUBSCRIBERS_TIMEOUT_MS, `both children see this peer subscribed to ${WATCH_TOPIC}`)

    await warmUp(mesh)
    if (baseline !== null) lines.push(baseline.line)
    // Each peer's resident memory before the services exist, after a full GC: what they add is judged per service.
    const rssBefore = await settledRssOf(mesh)

    // ---- state of the load generator
    let t0 = 0
    let stopAtPerf = Number.POSITIVE_INFINITY
    let beatsEndPerf = Number.POSITIVE_INFINITY
    const lastAck = new Float64Array(r.services).fill(Number.NaN)
    // When the peer last took a refused beat of the service as a sign of life (it renewed the key all the
    // same: admission.refusedRefreshed, counted synchronously in the refusing call). A stopped service's
    // detection is timed from the later of this and its last acknowledgement: the last beat the detector had.
    const lastNoted = new Float64Array(r.services).fill(Number.NaN)
    const lastLife = (s: number): number => Number.isNaN(lastNoted[s]!) || lastNoted[s]! < lastAck[s]! ? lastAck[s]! : lastNoted[s]!
    // Wall-clock (Date.now) issue and acknowledgement times of each service's last two acknowledged beats,
    // to tell an early expiry from a starved one by the expiry's own timestamp (see falseKind).
    const ackWall = new Float64Array(r.services).fill(Number.NaN)
    const ackIssueWall = new Float64Array(r.services).fill(Number.NaN)
    const prevAckWall = new Float64Array(r.services).fill(Number.NaN)
    const prevAckIssueWall = new Float64Array(r.services).fill(Number.NaN)
    /** 0: free; IN_FLIGHT: its beat is unanswered; RETRYING: refused, waiting for Retry-After before it retries. */
    const busy = new Uint8Array(r.services)
    // When (performance.now) each service last sent a beat: a beat sent after the service's next one fell due
    // stands for that one (see pump).
    const lastIssued = new Float64Array(r.services).fill(Number.NEGATIVE_INFINITY)
    // Whether the beat the service has out (or is retrying) is of a slot in the steady part of the run.
    const steadyBeat = new Uint8Array(r.services)
    const IN_FLIGHT = 1
    const RETRYING = 2
    // Refused beats waiting for their retry, in the order they are due (Retry-After is the same for all).
    const retryService: number[] = []
    const retryDue: number[] = []
    let retryHead = 0
    const refusedSinceAck = new Uint32Array(r.services)
    const lateness = new Samples(totalSlots)
    const latency = new Samples(totalSlots)
    let next = 0
    let inFlight = 0
    let issued = 0
    let acked = 0
    let errors = 0
    let refused = 0
    let retries = 0
    let firstError: string | undefined
    let late = 0
    let skippedBehind = 0
    let skippedBusy = 0
    let skippedRetrying = 0
    let scheduled = 0
    // Beats due from the steady part of the run on (bench/capacity.ts steadyFromMs): scheduled, acknowledged.
    const steadySlot = Math.ceil(steadyFromMs(runMs) / slotMs)
    let scheduledSteady = 0
    let ackedSteady = 0
    let issuing = true
    let windowLatencyMaxMs = 0
    let windowRefused = 0
    let expiredBeforeStop = 0
    const refusedAtPeerBefore = self.store.kv.admission.refused

    // ---- what the watch saw
    const detectedAt = new Float64Array(r.services).fill(Number.NaN)
    const detectedBy: string[] = new Array<string>(r.services)
    const expiredNow = new Set<number>()
    const falseEvents: Array<{ service: string; kind: 'early' | 'starved'; gapMs: number; replica: string; atMs: number; refusedSinceAck: number }> = []
    /**
     * Whether an expiry of a beating service was the store's fault: 'early' if the expiry was written (its
     * `wall`) less than a TTL after the issue of the service's last beat acknowledged before it — no replica
     * may expire a key sooner than a TTL after a write it holds; 'starved' if the load generator had not had a
     * beat acknowledged for a whole TTL (it fell behind, or its beats were refused). gapMs is that span.
     */
    const falseKind = (s: number, wall: number): { kind: 'early' | 'starved'; gapMs: number } => {
      const issueWall = ackWall[s]! <= wall ? ackIssueWall[s]! : prevAckWall[s]! <= wall ? prevAckIssueWall[s]! : Number.NaN
      const gapMs = wall - issueWall
      return { kind: gapMs < r.ttlMs ? 'early' : 'starved', gapMs }
    }
    let puts = 0
    let revived = 0
    let otherEvents = 0
    const unwatch = self.watch('heartbeat/', event => {
      const t = performance.now()
      const s = indexOf.get(event.key.slice('heartbeat/'.length))
      if (s === undefined) { otherEvents++; return }
      if (event.type === 'expired') {
        expiredNow.add(s)
        if (stopped[s] === 1 && t >= stopAtPerf) {
          if (Number.isNaN(detectedAt[s]!)) { detectedAt[s] = t; detectedBy[s] = event.replica }
        } else if (t < beatsEndPerf || Number.isNaN(lastAck[s]!) || t < lastAck[s]! + r.ttlMs) {
          // Still beating (or its last acknowledged beat is within the TTL): not a stopped service.
          falseEvents.push({ service: ids[s]!, ...falseKind(s, event.wall), replica: event.replica, atMs: t - t0, refusedSinceAck: refusedSinceAck[s]! })
        }
      } else if (event.type === 'revived') {
        revived++
        expiredNow.delete(s)
      } else if (event.type === 'put') {
        puts++
      } else {
        otherEvents++
      }
    })

    const recordError = (error: unknown): void => {
      errors++
      if (firstError === undefined) {
        firstError = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        progress(`beat failed: ${firstError}`)
      }
    }

    /** Issues service `s`'s beat, due at `dueAt`. */
    const issue = (s: number, dueAt: number, now: number): void => {
      const issuedWall = Date.now()
      const wait = now - dueAt
      lateness.push(wait)
      if (wait > LATE_MS) late++
      issued++
      inFlight++
      busy[s] = IN_FLIGHT
      lastIssued[s] = now
      // No signal: an abort listener per beat costs the client measurable time on this event loop (the
      // peer's), and on SIGINT the mesh's cleanup stops the peer, which fails whatever is in flight.
      const notedBefore = self.store.kv.admission.refusedRefreshed
      const beat = self.heartbeat(ids[s]!, { ttlMs: r.ttlMs })
      if (self.store.kv.admission.refusedRefreshed !== notedBefore) lastNoted[s] = now
      beat.then(() => {
        const t = performance.now()
        lastAck[s] = t
        prevAckWall[s] = ackWall[s]!
        prevAckIssueWall[s] = ackIssueWall[s]!
        ackWall[s] = Date.now()
        ackIssueWall[s] = issuedWall
        refusedSinceAck[s] = 0
        latency.push(t - now)
        acked++
        if (steadyBeat[s] === 1) ackedSteady++
        if (t - now > windowLatencyMaxMs) windowLatencyMaxMs = t - now
        busy[s] = 0
      }, (error: unknown) => {
        if (error instanceof OverloadedError && issuing) {
          // Admission control refused it (HTTP: 503 with Retry-After): the service retries after that.
          refused++
          windowRefused++
          refusedSinceAck[s]!++
          busy[s] = RETRYING
          retryService.push(s)
          retryDue.push(performance.now() + RETRY_AFTER_MS)
        } else {
          if (error instanceof OverloadedError) refused++
          else recordError(error)
          busy[s] = 0
        }
      }).finally(() => {
        inFlight--
        if (inFlight === r.inFlight - 1) pump()
      })
    }

    /** Issues the retries and the beats that are due, up to the in-flight bound. */
    const pump = (): void => {
      if (!issuing) return
      const now = performance.now()
      const stopAt = t0 + stopSlot * slotMs
      while (retryHead < retryDue.length && retryDue[retryHead]! <= now && inFlight < r.inFlight) {
        const s = retryService[retryHead]!
        const dueAt = retryDue[retryHead]!
        retryHead++
        // A stopped service retries nothing after it stopped.
        if (stopped[s] === 1 && dueAt >= stopAt) { busy[s] = 0; continue }
        retries++
        issue(s, dueAt, now)
      }
      if (retryHead > 4096 && retryHead * 2 > retryDue.length) {
        retryService.splice(0, retryHead)
        retryDue.splice(0, retryHead)
        retryHead = 0
      }
      const dueEnd = Math.min(totalSlots, Math.floor((now - t0) / slotMs) + 1)
      while (next < dueEnd && inFlight < r.inFlight) {
        const j = next++
        const s = j % r.services
        if (stopped[s] === 1 && j >= stopSlot) continue
        scheduled++
        if (j >= steadySlot) scheduledSteady++
        if (busy[s] === IN_FLIGHT) { skippedBusy++; continue }
        if (busy[s] === RETRYING) { skippedRetrying++; continue }
        // More than one whole interval behind: the service's previous beat went out after this one fell due,
        // so it stands for this one (a service has one beat waiting, in the place in line it took when that
        // beat fell due, not a queue of old ones). Dropping the oldest waiting beat instead sent each service
        // to the back of the line whenever the generator was an interval behind, and starved the same few
        // services (those due first in each interval) for whole TTLs while the rest beat.
        if (lastIssued[s]! >= t0 + j * slotMs) { skippedBehind++; continue }
        steadyBeat[s] = j >= steadySlot ? 1 : 0
        issue(s, t0 + j * slotMs, now)
      }
      if (stopAtPerf === Number.POSITIVE_INFINITY && next >= stopSlot) {
        stopAtPerf = stopAt
        // Only when the generator was starving services: one already expired sends no new expired event.
        expiredBeforeStop = stoppedList.filter(x => expiredNow.has(x)).length
      }
    }

    progress(`${r.services} services beating every ${r.intervalMs} ms for ${r.seconds} s (TTL ${r.ttlMs} ms, sweep ${r.sweepMs} ms, at most ${r.inFlight} in flight${r.overload ? `, admission control at ${self.store.config.admitBeatsMax} beats` : ''}); ${r.stop} stop at ${round1(stopAtMs / 1000)} s`)
    const delay = monitorEventLoopDelay({ resolution: 10 })
    const windowDelay = monitorEventLoopDelay({ resolution: 10 })
    // Each log's size as the run starts (the warm-up's puts are in it).
    const walBytesAtStart = new Map<string, number>([['bench', self.engine.walBytes()]])
    for (const c of mesh.children) {
      const stats = await getJson<PeerStats>(`${c.http}/stats`)
      walBytesAtStart.set(c.name, stats.storage.walBytesSinceSnapshot + stats.storage.walSnapshotBytes)
    }
    const cpuBefore = cpuSnapshot(mesh)
    const loadBefore = os.loadavg()[0]!
    const syncsBefore = self.engine.stats().walSyncs
    delay.enable()
    windowDelay.enable()
    t0 = performance.now()
    const windows: number[] = []
    let lastWindowAcked = 0
    let lastWindowAt = t0
    let lastSnapshotBytes = self.engine.stats().walSnapshotBytes
    const ticker = setInterval(() => {
      const now = performance.now()
      const rate = (acked - lastWindowAcked) / ((now - lastWindowAt) / 1000)
      windows.push(rate)
      lastWindowAcked = acked
      lastWindowAt = now
      const snapshotBytes = self.engine.stats().walSnapshotBytes
      const compacted = snapshotBytes !== lastSnapshotBytes ? ' (this peer compacted its log)' : ''
      lastSnapshotBytes = snapshotBytes
      const known = r.services - lastAck.reduce((n, v) => Number.isNaN(v) ? n + 1 : n, 0)
      const detector = self.store.kv.detector
      const overload = r.overload || refused > 0 ? `; refused ${windowRefused} (last ${r.progressMs / 1000} s), ${refused} in all, this peer's detector ${detector.state}${detector.reason === null ? '' : ` (${detector.reason})`}` : ''
      progress(`t=${Math.round((now - t0) / 1000)}s ${Math.round(rate)} beats/s (last ${r.progressMs / 1000} s), acked ${acked}, in flight ${inFlight}, late ${late}, skipped ${skippedBehind + skippedBusy + skippedRetrying}, errors ${errors}; watch: alive ${known - expiredNow.size}, expired ${expiredNow.size} (false ${falseEvents.length}, stopped detected ${stoppedList.filter(s => !Number.isNaN(detectedAt[s]!)).length}/${r.stop}); beat latency max ${Math.round(windowLatencyMaxMs)} ms, loop delay max ${round1(windowDelay.max / 1e6)} ms${compacted}${overload}`)
      windowLatencyMaxMs = 0
      windowRefused = 0
      windowDelay.reset()
    }, r.progressMs)
    try {
      // The scheduler: a 1 ms timer plus a pump whenever a slot frees up; ends by itself at the run's end.
      await new Promise<void>((resolve, reject) => {
        const tick = (): void => {
          try {
            if (mesh.signal.aborted) throw mesh.signal.reason
            // At the end, one last pump issues what fell due since the previous tick.
            if (performance.now() - t0 >= runMs) { pump(); resolve(); return }
            pump()
            setTimeout(tick, 1)
          } catch (error) {
            reject(error)
          }
        }
        tick()
      })
      issuing = false
      // Beats due but never issued (the scheduler was behind at the end) were skipped.
      for (; next < totalSlots; next++) {
        if (stopped[next % r.services] === 1 && next >= stopSlot) continue
        skippedBehind++
        scheduled++
        if (next >= steadySlot) scheduledSteady++
      }
      await waitUntil(async () => inFlight === 0, DRAIN_TIMEOUT_MS, 'in-flight beats settle')
      beatsEndPerf = performance.now()
    } finally {
      clearInterval(ticker)
      issuing = false
    }
    const beatMs = beatsEndPerf - t0
    delay.disable()
    windowDelay.disable()
    const cpuAfter = cpuSnapshot(mesh)
    const loadAfter = os.loadavg()[0]!
    const syncs = self.engine.stats().walSyncs - syncsBefore
    const refusedAtPeer = self.store.kv.admission.refused - refusedAtPeerBefore

    // ---- the end state on every peer, at once: beating services last beat under a second ago, so none of
    // them may be listed expired yet (their TTL is longer than the interval).
    const listings: Array<{ peer: string; services: ServiceView[]; atMs: number; detector: DetectorState }> = []
    listings.push({ peer: 'bench', services: self.services(), atMs: performance.now() - beatsEndPerf, detector: self.store.kv.detector })
    for (const c of mesh.children) {
      const reply = await getJson<{ services: ServiceView[]; detector: DetectorState }>(`${c.http}/services?local=1`, SERVICES_FETCH_TIMEOUT_MS)
      listings.push({ peer: c.name, services: reply.services, atMs: performance.now() - beatsEndPerf, detector: reply.detector })
    }
    // Any stopped service not seen expiring yet gets until TTL + the bound (+ slack) after its last beat.
    const lastStoppedAck = stoppedList.reduce((m, s) => Number.isNaN(lastLife(s)) ? m : Math.max(m, lastLife(s)), stopAtPerf)
    const detectionDeadline = lastStoppedAck + r.ttlMs + boundMs + DETECTION_SLACK_MS
    const undetected = (): number => stoppedList.filter(s => Number.isNaN(detectedAt[s]!)).length
    if (undetected() > 0 && performance.now() < detectionDeadline) {
      await waitUntil(async () => undetected() === 0, Math.max(0, detectionDeadline - performance.now()), 'stopped services detected').catch(() => {})
    }
    unwatch()
    subscribe()

    // ---- beats
    const ackRate = acked / (beatMs / 1000)
    const scheduledRate = scheduled / (runMs / 1000)
    const lat = latency.sorted()
    const wait = lateness.sorted()
    const steadyShare = scheduledSteady === 0 ? 1 : ackedSteady / scheduledSteady
    const sustained = ackRate >= SUSTAINED_SHARE * scheduledRate && skippedBehind + skippedBusy + skippedRetrying === 0
    const refusals = r.overload || refused > 0
      ? { refused, retries, skippedRetrying, retryAfterMs: RETRY_AFTER_MS, admitBeatsMax: self.store.config.admitBeatsMax, refusedAtPeer }
      : {}
    lines.push({
      suite: SUITE,
      metric: 'beats.ops',
      value: ackRate,
      unit: 'beats/s',
      target: scheduledRate,
      // Sustained: (nearly) every scheduled beat acknowledged, none skipped. Late beats are reported apart.
      met: sustained,
      services: r.services,
      intervalMs: r.intervalMs,
      seconds: r.seconds,
      inFlightMax: r.inFlight,
      scheduled,
      issued,
      acked,
      // Share of the beats due after the start (the first steadyFromMs) acknowledged: the knee's sustained rule.
      steadyShare: shareOut(steadyShare),
      steadyFromS: steadyFromMs(runMs) / 1000,
      errors,
      ...(firstError === undefined ? {} : { firstError }),
      ...refusals,
      lateBeats: late,
      lateMs: LATE_MS,
      skippedBehind,
      skippedBusy,
      windowOpsMin: windows.length === 0 ? null : Math.round(Math.min(...windows)),
      windowOpsMax: windows.length === 0 ? null : Math.round(Math.max(...windows)),
      walSyncs: syncs,
      beatsPerSync: syncs === 0 ? null : round1(acked / syncs),
      // Other work on the machine skews every figure here: the 1-minute load average before and after.
      loadAvg1: [round1(loadBefore), round1(loadAfter)]
    })
    lines.push({ suite: SUITE, metric: 'beat.latency.p50', value: percentile(lat, 0.5), unit: 'ms' })
    lines.push({ suite: SUITE, metric: 'beat.latency.p99', value: percentile(lat, 0.99), unit: 'ms', maxMs: round1(lat.length === 0 ? NaN : lat[lat.length - 1]!) })
    lines.push({ suite: SUITE, metric: 'beat.lateness.p99', value: percentile(wait, 0.99), unit: 'ms', note: 'issue time minus due time' })
    lines.push({ suite: SUITE, metric: 'beat.lateness.max', value: wait.length === 0 ? NaN : wait[wait.length - 1]!, unit: 'ms' })
    lines.push({ suite: SUITE, metric: 'beats.late', value: late, unit: 'beats', lateMs: LATE_MS, share: issued === 0 ? null : Math.round(late / issued * 1e5) / 1e5, target: 0, met: late === 0, note: `issued more than ${LATE_MS} ms after due: the in-flight bound was reached or the event loop was held up` })

    // ---- false expirations
    const early = falseEvents.filter(e => e.kind === 'early').length
    const listedFalse = listings.map(l => ({ peer: l.peer, checkedMsAfterRun: Math.round(l.atMs), expired: l.services.filter(v => v.state === 'expired' && stopped[indexOf.get(v.id) ?? -1] !== 1).length }))
    const listedFalseTotal = listedFalse.reduce((n, l) => n + l.expired, 0)
    lines.push({
      suite: SUITE,
      metric: 'false.expirations',
      value: falseEvents.length,
      unit: 'events',
      target: 0,
      met: falseEvents.length === 0 && listedFalseTotal === 0,
      early,
      starved: falseEvents.length - early,
      ...(refused === 0 ? {} : { starvedRefused: falseEvents.filter(e => e.kind === 'starved' && e.refusedSinceAck > 0).length }),
      revived,
      watchPuts: puts,
      watchOtherEvents: otherEvents,
      listedExpiredNotStopped: listedFalse,
      ...(falseEvents.length === 0 ? {} : { first: [...falseEvents.filter(e => e.kind === 'early').slice(0, 3), ...falseEvents.filter(e => e.kind === 'starved').slice(0, 3)].map(e => ({ service: e.service, kind: e.kind, gapMs: Math.round(e.gapMs), replica: e.replica, atMs: Math.round(e.atMs), ...(refused === 0 ? {} : { refusedSinceAck: e.refusedSinceAck }) })) })
    })

    // ---- detection of the stopped services
    const delays = Float64Array.from(stoppedList.filter(s => !Number.isNaN(detectedAt[s]!)).map(s => detectedAt[s]! - (lastLife(s) + r.ttlMs))).sort()
    // The same from the last acknowledged beat alone (differs only where refused beats renewed keys).
    const delaysFromAck = Float64Array.from(stoppedList.filter(s => !Number.isNaN(detectedAt[s]!)).map(s => detectedAt[s]! - (lastAck[s]! + r.ttlMs))).sort()
    const notedLater = stoppedList.filter(s => !Number.isNaN(lastNoted[s]!) && !(lastNoted[s]! < lastAck[s]!)).length
    const withinBound = delays.filter(d => d <= boundMs).length
    const byReplica: Record<string, number> = {}
    for (const s of stoppedList) {
      const by = detectedBy[s]
      if (by === undefined) continue
      const name = by === self.id ? 'bench' : mesh.children.find(c => c.id === by)?.name ?? by
      byReplica[name] = (byReplica[name] ?? 0) + 1
    }
    const detectedMet = delays.length === r.stop && withinBound === r.stop
    // The overload run states its stretched bound and the rule it comes from.
    const bound = r.overload
      ? { bound: boundMs, boundKind: 'stretched', boundRule: `a degraded detector takes a TTL credit every ${DETECTOR_STRETCH}th sweep: at most ${DETECTOR_STRETCH} x (ceil(TTL/sweep) + 1) sweeps after the last beat, ${boundMs} ms past the TTL; late sweeps and expiry checks postponed while every other replica is degraded come on top` }
      : { bound: boundMs }
    const detectedAfterRun = stoppedList.filter(s => detectedAt[s]! > beatsEndPerf).length
    // Stopped services none of whose beats was acknowledged or noted as refused: likely unknown to every peer
    // (a write that failed its quorum may still have reached one). Still counted as undetected.
    const neverAcknowledged = stoppedList.filter(s => Number.isNaN(lastLife(s))).length
    lines.push({ suite: SUITE, metric: 'detection.detected', value: delays.length, unit: 'services', of: r.stop, met: delays.length === r.stop, stoppedAtS: round1(stopAtMs / 1000), expiredBy: byReplica, ...(expiredBeforeStop === 0 ? {} : { expiredBeforeStop }), ...(neverAcknowledged === 0 ? {} : { neverAcknowledged }), ...(r.overload ? { detectedAfterLoadEnded: detectedAfterRun } : {}) })
    lines.push({ suite: SUITE, metric: 'detection.delay.p50', value: percentile(delays, 0.5), unit: 'ms', ...bound, note: 'expired event at the in-process watch minus (last beat + TTL): its last acknowledged beat, or a later refused one that the peer took as a sign of life' })
    lines.push({ suite: SUITE, metric: 'detection.delay.p99', value: percentile(delays, 0.99), unit: 'ms', ...bound })
    lines.push({ suite: SUITE, metric: 'detection.delay.max', value: delays.length === 0 ? NaN : delays[delays.length - 1]!, unit: 'ms', ...bound, withinBound, met: detectedMet, minMs: delays.length === 0 ? null : round1(delays[0]!), ...(notedLater === 0 ? {} : { lastBeatRefusedButNoted: notedLater, fromLastAckMaxMs: Math.round(delaysFromAck[delaysFromAck.length - 1]!), fromLastAckP50Ms: Math.round(percentile(delaysFromAck, 0.5)) }) })
    for (const l of listings) {
      const states = new Map(l.services.map(v => [v.id, v.state]))
      const listed = stoppedList.filter(s => states.get(ids[s]!) === 'expired').length
      lines.push({
        suite: SUITE,
        metric: 'detection.listed',
        value: listed,
        unit: 'services',
        of: r.stop,
        met: listed === r.stop,
        peer: l.peer,
        alive: l.services.filter(v => v.state === 'alive').length,
        expired: l.services.filter(v => v.state === 'expired').length,
        missing: r.services - states.size
      })
    }

    // ---- the logs
    const beatsWritten = acked
    // Each peer's figures: its own stats for the in-process one, GET /stats for the children.
    const peers: Array<{ peer: string; stats: PeerStats }> = [{ peer: 'bench', stats: { storage: self.engine.stats(), ...self.store.stats() } }]
    if (self.engine.walBytes() !== peers[0]!.stats.storage.walBytesSinceSnapshot + peers[0]!.stats.storage.walSnapshotBytes) progress('engine.walBytes() disagrees with its stats')
    for (const c of mesh.children) peers.push({ peer: c.name, stats: await getJson<PeerStats>(`${c.http}/stats`) })
    const logs = peers.map(({ peer, stats }) => ({ peer, sinceSnapshot: stats.storage.walBytesSinceSnapshot, snapshot: stats.storage.walSnapshotBytes, keys: stats.storage.keys, walSyncs: stats.storage.walSyncs }))
    for (const l of logs) {
      const bytes = l.sinceSnapshot + l.snapshot
      lines.push({
        suite: SUITE,
        metric: 'wal.bytes',
        value: bytes,
        unit: 'bytes',
        peer: l.peer,
        mb: round1(bytes / MB),
        walBytesSinceSnapshot: l.sinceSnapshot,
        walSnapshotBytes: l.snapshot,
        compacted: l.snapshot > 0,
        keys: l.keys,
        beatsWritten,
        bytesPerBeat: round1(bytes / Math.max(1, beatsWritten)),
        bytesPerService: Math.round(bytes / r.services),
        snapshotBytesPerKey: l.snapshot === 0 || l.keys === 0 ? null : round1(l.snapshot / l.keys),
        walSyncs: l.walSyncs,
        walBytesAtStart: walBytesAtStart.get(l.peer)
      })
    }

    // Work besides the beats, which competes with them: expiries this replica's sweep wrote, and anti-entropy
    // (with every key rewritten each second, the replicas' hash trees always differ by the beats in flight).
    for (const { peer, stats } of peers) {
      lines.push({
        suite: SUITE,
        metric: 'replica.expiries',
        value: stats.storage.expired,
        unit: 'keys',
        peer,
        syncRounds: stats.kv.syncRounds,
        syncRepairs: stats.kv.syncRepairs,
        readRepairs: stats.kv.readRepairs,
        quorumFailures: stats.kv.quorumFailures,
        kvRequests: stats.rpc.requests,
        syncRequests: stats.sync.requests,
        rpcTimeouts: stats.rpc.timeouts,
        rpcOverloaded: stats.rpc.overloaded
      })
    }

    // ---- resources
    const rss = await rssOf(mesh)
    for (const row of rss) {
      lines.push({ suite: SUITE, metric: 'memory.rss', value: row.rssMb, unit: 'MB', peer: row.peer, heapUsedMb: round1(row.heapUsedMb), ...(row.peer === 'bench' ? { note: 'includes the load generator and the tsx loader' } : {}) })
    }
    for (const row of await settledRssOf(mesh)) {
      const before = rssBefore.find(b => b.peer === row.peer)
      if (before === undefined) continue
      const perService = (row.rssMb - before.rssMb) * 1024 / r.services
      // The benchmark process also holds the load generator's per-service state, and what the baseline's
      // mesh left behind in it: only the children are plain peers.
      const plain = row.peer !== 'bench'
      lines.push({ suite: SUITE, metric: 'memory.per.service', value: Math.round(perService * 100) / 100, unit: 'KiB', peer: row.peer, rssBeforeMb: round1(before.rssMb), rssAfterMb: round1(row.rssMb), heapBeforeMb: round1(before.heapUsedMb), heapAfterMb: round1(row.heapUsedMb), externalBeforeMb: orNull(before.externalMb, round1), externalAfterMb: orNull(row.externalMb, round1), ...(plain ? { target: 2, met: perService <= 2 } : { target: null, met: null }), note: plain ? 'resident memory at the end minus before the first beat, each after two full GCs and pauses for V8 to return freed pages (POST /debug/gc), per service (every peer holds every service: N=3; every beat coordinated by the benchmark process)' : 'not judged: this process also holds the load generator, and the baseline mesh ran in it' })
    }
    const names = ['bench', ...mesh.children.map(c => c.name)]
    // Summed over the three peers; null if one's could not be read.
    let cpuSeconds: number | null = 0
    for (const [i, name] of names.entries()) {
      const before = cpuBefore[i]
      const after = cpuAfter[i]
      if (before === null || before === undefined || after === null || after === undefined) { cpuSeconds = null; continue }
      if (cpuSeconds !== null) cpuSeconds += after - before
      lines.push({ suite: SUITE, metric: 'cpu', value: (after - before) / (beatMs / 1000) * 100, unit: '% of one core', peer: name, cpuSeconds: round1(after - before), cores: os.availableParallelism() })
    }
    const cpuMsPerBeat = cpuSeconds === null || acked === 0 ? null : cpuSeconds * 1000 / acked
    if (baseline !== null) {
      const ratio = cpuMsPerBeat === null || baseline.cpuMsPerPut === null ? null : cpuMsPerBeat / baseline.cpuMsPerPut
      lines.push({ suite: SUITE, metric: 'cpu.per.beat', value: orNull(cpuMsPerBeat, round3) ?? NaN, unit: 'CPU-ms', ...(baseline.cpuMsPerPut === null ? {} : { baseline: round3(baseline.cpuMsPerPut) }), baselineMetric: 'put.baseline', ...(ratio === null ? {} : { ratio: round3(ratio) }), target: 0.5, met: ratio !== null && ratio <= 0.5, note: 'summed over the three peers per acknowledged beat, against the same run\'s general quorum put at the same rate' })
    }
    lines.push({ suite: SUITE, metric: 'loop.delay.max', value: delay.max / 1e6, unit: 'ms', p99Ms: round1(delay.percentile(99) / 1e6), meanMs: round1(delay.mean / 1e6), note: 'this process (client and in-process peer) during the run' })
    lines.push({ suite: SUITE, metric: 'disk.fdatasync.p50', value: disk.p50Ms, unit: 'ms', p99Ms: round1(disk.p99Ms * 1000) / 1000, syncs: disk.syncs, note: 'probe before the run: 4 KiB write + fdatasync in a preallocated file; each beat waits for two in sequence' })

    // ---- the overload run's own lines: the refusals, and what each detector did about the load
    if (r.overload) {
      lines.push({
        suite: SUITE,
        metric: 'overload.refused',
        value: refused,
        unit: 'beats',
        note: `refused by the in-process peer's admission control (OverloadedError; over HTTP 503 ERR_OVERLOADED with Retry-After: ${OVERLOADED_RETRY_AFTER_S}); each retried by its service after ${RETRY_AFTER_MS} ms`,
        retries,
        skippedRetrying,
        refusedAtPeer,
        urgentAdmitted: self.store.kv.admission.urgentAdmitted,
        urgentNewAdmitted: self.store.kv.admission.urgentNewAdmitted,
        refusedRefreshed: self.store.kv.admission.refusedRefreshed,
        admitBeatsMax: self.store.config.admitBeatsMax,
        issued,
        share: issued === 0 ? null : round3(refused / issued)
      })
      for (const l of listings) {
        const stats = peers.find(p => p.peer === l.peer)?.stats
        lines.push({
          suite: SUITE,
          metric: 'detector',
          value: l.detector.episodes,
          unit: 'degraded episodes',
          peer: l.peer,
          heldSweeps: l.detector.heldSweeps,
          stateAtEnd: l.detector.state,
          ...(l.detector.reason === null ? {} : { reason: l.detector.reason }),
          expiryPostponedDegraded: stats?.kv.expiryPostponedDegraded ?? null
        })
      }
    }

    const summary: RunSummary = {
      services: r.services,
      seconds: r.seconds,
      beatsPerS: ackRate,
      scheduledPerS: scheduledRate,
      steadyShare,
      skipped: skippedBehind + skippedBusy + skippedRetrying,
      late,
      errors,
      refused,
      retries,
      falseExpirations: falseEvents.length,
      listedFalse: listedFalseTotal,
      starved: falseEvents.length - early,
      early,
      stop: r.stop,
      detected: delays.length,
      withinBound,
      boundMs,
      delayMaxMs: delays.length === 0 ? null : delays[delays.length - 1]!,
      cpuMsPerBeat,
      cores: cpuSeconds === null ? null : cpuSeconds / (beatMs / 1000),
      rssMb: Object.fromEntries(rss.map(row => [row.peer, Math.round(row.rssMb)])),
      loopDelayMaxMs: delay.max / 1e6,
      loadAvg1: [round1(loadBefore), round1(loadAfter)]
    }
    return { lines, summary }
  })
}
