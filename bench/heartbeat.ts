/**
 * Heartbeat suite: the benchmark mesh (bench/mesh.ts: this process and two `node node/peer.js` children,
 * N=3, W=2, sync durability, every peer sweeping TTLs every `--sweep-ms`) tracks `--services` services that
 * each beat every `--interval-ms` for `--seconds`, with a TTL of `--ttl-ms`; at about two thirds of the run
 * `--stop` of them stop beating. The load generator is open-loop: beat j is due at t0 + j·interval/services
 * (service j mod services), so the beats are spread evenly over each interval; a scheduler on a 1 ms timer
 * (and on every completion) issues what is due through `peer.heartbeat` on the in-process peer, at most
 * `--in-flight` at once. A beat issued more than LATE_MS after it was due is late; when the backlog exceeds one
 * whole interval the older beats are skipped (a service sends its newest beat, not a queue of old ones), and a
 * service whose previous beat is still unanswered skips the next — both counted, never hidden.
 *
 *   beats.ops                acknowledged beats per second over the run, against the scheduled rate (met:
 *                            at least 99% of it and no beat skipped), with the in-process peer's fdatasyncs
 *   beat.latency.p50/.p99    issue to acknowledgement; beat.lateness.p99/.max: issue after due time;
 *                            beats.late: beats issued more than LATE_MS after due (target 0)
 *   false.expirations        `expired` events (the in-process peer's watch on 'heartbeat/') for services not
 *                            stopped, split into `starved` (no acknowledged beat for a whole TTL: the load
 *                            generator fell behind) and `early` (the store expired a service that had beaten
 *                            within its TTL); plus non-stopped services each peer lists expired at the end
 *   detection.detected       stopped services whose expiry the watch saw; detection.delay.p50/.p99/.max:
 *                            the expired event's arrival minus (last acknowledged beat + TTL), against the
 *                            bound of two sweep periods; detection.listed: each peer's own records (GET
 *                            /services?local=1; the in-process peer's services()) list the stopped services
 *                            as expired
 *   wal.bytes                each peer's log (snapshot + segments after it) with bytes per beat and per service
 *   replica.expiries         expiries each peer's sweep wrote, with its anti-entropy and RPC counters
 *   memory.rss, cpu          each peer at the end, and its CPU time over the run (% of one core)
 *   loop.delay.max           this process's longest event-loop stall during the run (p99 alongside)
 *   disk.fdatasync.p50       this disk's fdatasync latency, probed just before the mesh starts
 *
 * Before the run, 2 s of last-writer-wins puts to 256 keys `bench-warmup/*` (not measured) warm up the write path. Progress
 * (stderr, every --progress-ms) shows the last window's beat rate and latency maximum, late and skipped beats,
 * the watch's alive/expired counts and the event-loop stall maximum, and says when this peer compacted its log.
 *
 * Flags take `--name=value` (bench/run.ts reads bare words as suite names): --services=10000 --seconds=60
 * --interval-ms=1000 --ttl-ms=3000 --sweep-ms=1000 --in-flight=256 --stop=100 --progress-ms=5000; --quick is
 * 2,000 services for 15 s. Nothing here fails the run on a missed target: each figure says whether it met it.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { ServiceView } from '../src/core/kv/heartbeat.js'
import { WATCH_TOPIC } from '../src/services/watch.js'
import { type Mesh, getJson, rssOf, waitUntil, withMesh } from './mesh.js'
import { cpuSecondsOf } from './proc.js'
import { emit, progress } from './report.js'

const SUITE = 'heartbeat'
/** A beat issued later than this after its due time is late. */
const LATE_MS = 100
const WARMUP_MS = 2000
/** Keys the warm-up rewrites (last-writer-wins, so each keeps one value and the log one record per key). */
const WARMUP_KEYS = 256
const FSYNC_PROBE_MS = 1000
/** How long in-flight beats may take to settle once the run is over (a request times out after 10 s). */
const DRAIN_TIMEOUT_MS = 15_000
/** Slack on top of TTL + two sweeps before the stopped services must all have been seen expiring. */
const DETECTION_SLACK_MS = 1000
const SUBSCRIBERS_TIMEOUT_MS = 15_000
/** /services of 10,000 services is about 2 MB of JSON. */
const SERVICES_FETCH_TIMEOUT_MS = 30_000
const MB = 1024 * 1024

interface Options {
  services: number
  seconds: number
  intervalMs: number
  ttlMs: number
  sweepMs: number
  inFlight: number
  stop: number
  progressMs: number
}

function parseFlags (flags: string[]): Options {
  const quick = flags.includes('--quick')
  const o: Options = { services: quick ? 2000 : 10_000, seconds: quick ? 15 : 60, intervalMs: 1000, ttlMs: 3000, sweepMs: 1000, inFlight: 256, stop: 100, progressMs: 5000 }
  const names: Record<string, keyof Options> = { services: 'services', seconds: 'seconds', 'interval-ms': 'intervalMs', 'ttl-ms': 'ttlMs', 'sweep-ms': 'sweepMs', 'in-flight': 'inFlight', stop: 'stop', 'progress-ms': 'progressMs' }
  for (const flag of flags) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(flag)
    if (m === null || m[1] === 'quick') continue
    const field = names[m[1]!]
    if (field === undefined) continue // another suite's flag
    const value = Number(m[2])
    if (m[2] === undefined || !Number.isInteger(value) || value < 0) throw new Error(`--${m[1]} takes a whole number as --${m[1]}=<n> (bench/run.ts reads bare words as suite names), got ${JSON.stringify(flag)}`)
    o[field] = value
  }
  if (o.services < 1 || o.stop > o.services) throw new Error(`need 1 <= --stop (${o.stop}) <= --services (${o.services})`)
  if (o.intervalMs < 10 || o.inFlight < 1 || o.progressMs < 100) throw new Error('--interval-ms must be at least 10, --in-flight at least 1, --progress-ms at least 100')
  if (o.ttlMs < 100 || o.ttlMs <= o.intervalMs) throw new Error(`--ttl-ms (${o.ttlMs}) must be at least 100 and longer than --interval-ms (${o.intervalMs})`)
  if (o.sweepMs < 10) throw new Error('--sweep-ms must be at least 10 (the peers\' lower bound)')
  // The stopped services must have expired (TTL + 2 sweeps) with a second to spare before the run ends.
  const needMs = o.ttlMs + 2 * o.sweepMs + DETECTION_SLACK_MS
  if (o.seconds * 1000 < 2 * needMs) throw new Error(`--seconds=${o.seconds} is too short: the run needs at least ${Math.ceil(2 * needMs / 1000)} s (twice TTL + 2 sweeps + 1 s)`)
  return o
}

function percentile (sorted: Float32Array | Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

const round1 = (v: number): number => Math.round(v * 10) / 10

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

interface PeerStats { storage: { keys: number; walBytesSinceSnapshot: number; walSnapshotBytes: number; walSyncs: number; expired: number }; kv: { syncRounds: number; syncRepairs: number; readRepairs: number; quorumFailures: number }; rpc: { requests: number; timeouts: number; overloaded: number }; sync: { requests: number } }

export async function run (flags: string[]): Promise<void> {
  const o = parseFlags(flags)
  const slotMs = o.intervalMs / o.services
  const runMs = o.seconds * 1000
  const totalSlots = Math.floor(runMs / slotMs)
  // About two thirds in, but early enough that TTL + two sweeps (+ slack) fit before the end.
  const stopAtMs = Math.min(Math.round(runMs * 2 / 3), runMs - (o.ttlMs + 2 * o.sweepMs + DETECTION_SLACK_MS))
  const stopSlot = Math.ceil(stopAtMs / slotMs)
  const boundMs = 2 * o.sweepMs
  const ids = Array.from({ length: o.services }, (_, i) => `svc-${String(i).padStart(6, '0')}`)
  const indexOf = new Map(ids.map((id, i) => [id, i]))
  // The stopped services, spread over the id space.
  const stopped = new Uint8Array(o.services)
  const stoppedList: number[] = []
  for (let k = 0; k < o.stop; k++) { const s = Math.floor(k * o.services / o.stop); stopped[s] = 1; stoppedList.push(s) }

  const disk = fdatasyncProbe(FSYNC_PROBE_MS)
  progress(`fdatasync on this disk now: p50 ${round1(disk.p50Ms * 1000) / 1000} ms, p99 ${round1(disk.p99Ms * 1000) / 1000} ms (${disk.syncs} in ${FSYNC_PROBE_MS} ms)`)

  await withMesh({ name: SUITE, storage: { durability: 'sync', sweepPeriodMs: o.sweepMs }, childArgs: ['--sweep-period-ms', String(o.sweepMs)] }, async mesh => {
    const self = mesh.peer
    // The watch must receive the children's publications. A peer subscribes to the feed once it has a
    // watcher, and a child publishes only when it sees a subscriber: watch now, then wait until both
    // children see this peer subscribed (their /stats).
    const subscribe = self.watch('heartbeat/', () => {})
    await waitUntil(async () => {
      for (const c of mesh.children) if ((await getJson<{ watch?: { subscribers: number } }>(`${c.http}/stats`)).watch?.subscribers !== 1) return false
      return true
    }, SUBSCRIBERS_TIMEOUT_MS, `both children see this peer subscribed to ${WATCH_TOPIC}`)

    // Warm-up, not measured: the write path (RPC streams, the logs, the JIT) on keys outside 'heartbeat/'.
    // Without lww, rewrites without a context would pile up siblings.
    progress(`warm-up: ${WARMUP_MS} ms of last-writer-wins puts to ${WARMUP_KEYS} keys, 64 in flight`)
    const warmupEnd = performance.now() + WARMUP_MS
    let warmupKey = 0
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (performance.now() < warmupEnd && !mesh.signal.aborted) await self.put(`bench-warmup/${warmupKey++ % WARMUP_KEYS}`, new Uint8Array(64), { lww: true }).catch(() => {})
    }))

    // ---- state of the load generator
    let t0 = 0
    let stopAtPerf = Number.POSITIVE_INFINITY
    let beatsEndPerf = Number.POSITIVE_INFINITY
    const lastAck = new Float64Array(o.services).fill(Number.NaN)
    // Wall-clock (Date.now) issue and acknowledgement times of each service's last two acknowledged beats,
    // to tell an early expiry from a starved one by the expiry's own timestamp (see falseKind).
    const ackWall = new Float64Array(o.services).fill(Number.NaN)
    const ackIssueWall = new Float64Array(o.services).fill(Number.NaN)
    const prevAckWall = new Float64Array(o.services).fill(Number.NaN)
    const prevAckIssueWall = new Float64Array(o.services).fill(Number.NaN)
    const busy = new Uint8Array(o.services)
    const lateness = new Float32Array(totalSlots)
    const latency = new Float32Array(totalSlots)
    let next = 0
    let inFlight = 0
    let issued = 0
    let acked = 0
    let errors = 0
    let firstError: string | undefined
    let late = 0
    let skippedBehind = 0
    let skippedBusy = 0
    let scheduled = 0
    let issuing = true
    let windowLatencyMaxMs = 0
    let expiredBeforeStop = 0

    // ---- what the watch saw
    const detectedAt = new Float64Array(o.services).fill(Number.NaN)
    const detectedBy: string[] = new Array<string>(o.services)
    const expiredNow = new Set<number>()
    const falseEvents: Array<{ service: string; kind: 'early' | 'starved'; gapMs: number; replica: string; atMs: number }> = []
    /**
     * Whether an expiry of a beating service was the store's fault: 'early' if the expiry was written (its
     * `wall`) less than a TTL after the issue of the service's last beat acknowledged before it — no replica
     * may expire a key sooner than a TTL after a write it holds; 'starved' if the load generator had not had a
     * beat acknowledged for a whole TTL (it fell behind). gapMs is that span.
     */
    const falseKind = (s: number, wall: number): { kind: 'early' | 'starved'; gapMs: number } => {
      const issueWall = ackWall[s]! <= wall ? ackIssueWall[s]! : prevAckWall[s]! <= wall ? prevAckIssueWall[s]! : Number.NaN
      const gapMs = wall - issueWall
      return { kind: gapMs < o.ttlMs ? 'early' : 'starved', gapMs }
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
        } else if (t < beatsEndPerf || Number.isNaN(lastAck[s]!) || t < lastAck[s]! + o.ttlMs) {
          // Still beating (or its last acknowledged beat is within the TTL): not a stopped service.
          falseEvents.push({ service: ids[s]!, ...falseKind(s, event.wall), replica: event.replica, atMs: t - t0 })
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

    const issue = (j: number, s: number, now: number): void => {
      const issuedWall = Date.now()
      const wait = now - (t0 + j * slotMs)
      lateness[issued] = wait
      if (wait > LATE_MS) late++
      issued++
      inFlight++
      busy[s] = 1
      // No signal: an abort listener per beat costs the client measurable time on this event loop (the
      // peer's), and on SIGINT the mesh's cleanup stops the peer, which fails whatever is in flight.
      self.heartbeat(ids[s]!, { ttlMs: o.ttlMs }).then(() => {
        const t = performance.now()
        lastAck[s] = t
        prevAckWall[s] = ackWall[s]!
        prevAckIssueWall[s] = ackIssueWall[s]!
        ackWall[s] = Date.now()
        ackIssueWall[s] = issuedWall
        latency[acked++] = t - now
        if (t - now > windowLatencyMaxMs) windowLatencyMaxMs = t - now
      }, recordError).finally(() => {
        inFlight--
        busy[s] = 0
        if (inFlight === o.inFlight - 1) pump()
      })
    }

    /** Issues every beat that is due, up to the in-flight bound. */
    const pump = (): void => {
      if (!issuing) return
      const now = performance.now()
      const dueEnd = Math.min(totalSlots, Math.floor((now - t0) / slotMs) + 1)
      // More than one whole interval behind: each service sends only its newest due beat.
      const keepFrom = dueEnd - o.services
      for (; next < keepFrom; next++) if (stopped[next % o.services] === 0 || next < stopSlot) { skippedBehind++; scheduled++ }
      while (next < dueEnd && inFlight < o.inFlight) {
        const j = next++
        const s = j % o.services
        if (stopped[s] === 1 && j >= stopSlot) continue
        scheduled++
        if (busy[s] === 1) { skippedBusy++; continue }
        issue(j, s, now)
      }
      if (stopAtPerf === Number.POSITIVE_INFINITY && next >= stopSlot) {
        stopAtPerf = t0 + stopSlot * slotMs
        // Only when the generator was starving services: one already expired sends no new expired event.
        expiredBeforeStop = stoppedList.filter(x => expiredNow.has(x)).length
      }
    }

    progress(`${o.services} services beating every ${o.intervalMs} ms for ${o.seconds} s (TTL ${o.ttlMs} ms, sweep ${o.sweepMs} ms, at most ${o.inFlight} in flight); ${o.stop} stop at ${round1(stopAtMs / 1000)} s`)
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
      const known = o.services - lastAck.reduce((n, v) => Number.isNaN(v) ? n + 1 : n, 0)
      progress(`t=${Math.round((now - t0) / 1000)}s ${Math.round(rate)} beats/s (last ${o.progressMs / 1000} s), acked ${acked}, in flight ${inFlight}, late ${late}, skipped ${skippedBehind + skippedBusy}, errors ${errors}; watch: alive ${known - expiredNow.size}, expired ${expiredNow.size} (false ${falseEvents.length}, stopped detected ${stoppedList.filter(s => !Number.isNaN(detectedAt[s]!)).length}/${o.stop}); beat latency max ${Math.round(windowLatencyMaxMs)} ms, loop delay max ${round1(windowDelay.max / 1e6)} ms${compacted}`)
      windowLatencyMaxMs = 0
      windowDelay.reset()
    }, o.progressMs)
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
      for (; next < totalSlots; next++) if (stopped[next % o.services] === 0 || next < stopSlot) { skippedBehind++; scheduled++ }
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

    // ---- the end state on every peer, at once: beating services last beat under a second ago, so none of
    // them may be listed expired yet (their TTL is longer than the interval).
    const listings: Array<{ peer: string; services: ServiceView[]; atMs: number }> = []
    listings.push({ peer: 'bench', services: self.services(), atMs: performance.now() - beatsEndPerf })
    for (const c of mesh.children) {
      const reply = await getJson<{ services: ServiceView[] }>(`${c.http}/services?local=1`, SERVICES_FETCH_TIMEOUT_MS)
      listings.push({ peer: c.name, services: reply.services, atMs: performance.now() - beatsEndPerf })
    }
    // Any stopped service not seen expiring yet gets until TTL + two sweeps (+ slack) after its last beat.
    const detectionDeadline = stopAtPerf + o.ttlMs + 2 * o.sweepMs + DETECTION_SLACK_MS
    const undetected = (): number => stoppedList.filter(s => Number.isNaN(detectedAt[s]!)).length
    if (undetected() > 0 && performance.now() < detectionDeadline) {
      await waitUntil(async () => undetected() === 0, Math.max(0, detectionDeadline - performance.now()), 'stopped services detected').catch(() => {})
    }
    unwatch()
    subscribe()

    // ---- beats
    const ackRate = acked / (beatMs / 1000)
    const scheduledRate = scheduled / (runMs / 1000)
    const lat = latency.subarray(0, acked).sort()
    const wait = lateness.subarray(0, issued).sort()
    emit({
      suite: SUITE,
      metric: 'beats.ops',
      value: ackRate,
      unit: 'beats/s',
      target: scheduledRate,
      // Sustained: (nearly) every scheduled beat acknowledged, none skipped. Late beats are reported apart.
      met: ackRate >= 0.99 * scheduledRate && skippedBehind + skippedBusy === 0,
      services: o.services,
      intervalMs: o.intervalMs,
      seconds: o.seconds,
      inFlightMax: o.inFlight,
      scheduled,
      issued,
      acked,
      errors,
      ...(firstError === undefined ? {} : { firstError }),
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
    emit({ suite: SUITE, metric: 'beat.latency.p50', value: percentile(lat, 0.5), unit: 'ms' })
    emit({ suite: SUITE, metric: 'beat.latency.p99', value: percentile(lat, 0.99), unit: 'ms', maxMs: round1(lat.length === 0 ? NaN : lat[lat.length - 1]!) })
    emit({ suite: SUITE, metric: 'beat.lateness.p99', value: percentile(wait, 0.99), unit: 'ms', note: 'issue time minus due time' })
    emit({ suite: SUITE, metric: 'beat.lateness.max', value: wait.length === 0 ? NaN : wait[wait.length - 1]!, unit: 'ms' })
    emit({ suite: SUITE, metric: 'beats.late', value: late, unit: 'beats', lateMs: LATE_MS, share: issued === 0 ? null : Math.round(late / issued * 1e5) / 1e5, target: 0, met: late === 0, note: `issued more than ${LATE_MS} ms after due: the in-flight bound was reached or the event loop was held up` })

    // ---- false expirations
    const early = falseEvents.filter(e => e.kind === 'early').length
    const listedFalse = listings.map(l => ({ peer: l.peer, checkedMsAfterRun: Math.round(l.atMs), expired: l.services.filter(v => v.state === 'expired' && stopped[indexOf.get(v.id) ?? -1] !== 1).length }))
    emit({
      suite: SUITE,
      metric: 'false.expirations',
      value: falseEvents.length,
      unit: 'events',
      target: 0,
      met: falseEvents.length === 0 && listedFalse.every(l => l.expired === 0),
      early,
      starved: falseEvents.length - early,
      revived,
      watchPuts: puts,
      watchOtherEvents: otherEvents,
      listedExpiredNotStopped: listedFalse,
      ...(falseEvents.length === 0 ? {} : { first: [...falseEvents.filter(e => e.kind === 'early').slice(0, 3), ...falseEvents.filter(e => e.kind === 'starved').slice(0, 3)].map(e => ({ ...e, gapMs: Math.round(e.gapMs), atMs: Math.round(e.atMs) })) })
    })

    // ---- detection of the stopped services
    const delays = Float64Array.from(stoppedList.filter(s => !Number.isNaN(detectedAt[s]!)).map(s => detectedAt[s]! - (lastAck[s]! + o.ttlMs))).sort()
    const withinBound = delays.filter(d => d <= boundMs).length
    const byReplica: Record<string, number> = {}
    for (const s of stoppedList) {
      const by = detectedBy[s]
      if (by === undefined) continue
      const name = by === self.id ? 'bench' : mesh.children.find(c => c.id === by)?.name ?? by
      byReplica[name] = (byReplica[name] ?? 0) + 1
    }
    const detectedMet = delays.length === o.stop && withinBound === o.stop
    emit({ suite: SUITE, metric: 'detection.detected', value: delays.length, unit: 'services', of: o.stop, met: delays.length === o.stop, stoppedAtS: round1(stopAtMs / 1000), expiredBy: byReplica, ...(expiredBeforeStop === 0 ? {} : { expiredBeforeStop }) })
    emit({ suite: SUITE, metric: 'detection.delay.p50', value: percentile(delays, 0.5), unit: 'ms', bound: boundMs, note: 'expired event at the in-process watch minus (last acknowledged beat + TTL)' })
    emit({ suite: SUITE, metric: 'detection.delay.p99', value: percentile(delays, 0.99), unit: 'ms', bound: boundMs })
    emit({ suite: SUITE, metric: 'detection.delay.max', value: delays.length === 0 ? NaN : delays[delays.length - 1]!, unit: 'ms', bound: boundMs, withinBound, met: detectedMet, minMs: delays.length === 0 ? null : round1(delays[0]!) })
    for (const l of listings) {
      const states = new Map(l.services.map(v => [v.id, v.state]))
      const listed = stoppedList.filter(s => states.get(ids[s]!) === 'expired').length
      emit({
        suite: SUITE,
        metric: 'detection.listed',
        value: listed,
        unit: 'services',
        of: o.stop,
        met: listed === o.stop,
        peer: l.peer,
        alive: l.services.filter(v => v.state === 'alive').length,
        expired: l.services.filter(v => v.state === 'expired').length,
        missing: o.services - states.size
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
      emit({
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
        bytesPerService: Math.round(bytes / o.services),
        snapshotBytesPerKey: l.snapshot === 0 || l.keys === 0 ? null : round1(l.snapshot / l.keys),
        walSyncs: l.walSyncs,
        walBytesAtStart: walBytesAtStart.get(l.peer)
      })
    }

    // Work besides the beats, which competes with them: expiries this replica's sweep wrote, and anti-entropy
    // (with every key rewritten each second, the replicas' hash trees always differ by the beats in flight).
    for (const { peer, stats } of peers) {
      emit({
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
    for (const r of await rssOf(mesh)) {
      emit({ suite: SUITE, metric: 'memory.rss', value: r.rssMb, unit: 'MB', peer: r.peer, heapUsedMb: round1(r.heapUsedMb), ...(r.peer === 'bench' ? { note: 'includes the load generator and the tsx loader' } : {}) })
    }
    const names = ['bench', ...mesh.children.map(c => c.name)]
    names.forEach((name, i) => {
      const before = cpuBefore[i]
      const after = cpuAfter[i]
      if (before === null || before === undefined || after === null || after === undefined) return
      emit({ suite: SUITE, metric: 'cpu', value: (after - before) / (beatMs / 1000) * 100, unit: '% of one core', peer: name, cpuSeconds: round1(after - before), cores: os.availableParallelism() })
    })
    emit({ suite: SUITE, metric: 'loop.delay.max', value: delay.max / 1e6, unit: 'ms', p99Ms: round1(delay.percentile(99) / 1e6), meanMs: round1(delay.mean / 1e6), note: 'this process (client and in-process peer) during the run' })
    emit({ suite: SUITE, metric: 'disk.fdatasync.p50', value: disk.p50Ms, unit: 'ms', p99Ms: round1(disk.p99Ms * 1000) / 1000, syncs: disk.syncs, note: 'probe before the run: 4 KiB write + fdatasync in a preallocated file; each beat waits for two in sequence' })
  })
}
