/**
 * KV suite: a mesh of three Node peers on 127.0.0.1 (bench/mesh.ts) — this process (created in-process with
 * createPeer, as `node node/peer.js` does) and two `node node/peer.js --debug-api` children — with N=3, R=2,
 * W=2 and sync durability. In order:
 *
 *   memory.idle.rss          each peer's resident memory once the mesh has formed, before any workload
 *   fill.ops                 100,000 puts of 100-byte values through the in-process peer, 64 in flight
 *   memory.loaded.rss        each peer's resident memory after those 100,000 keys
 *   echo.ops, put.ops, get.ops with their .latency.p50 / .latency.p99, at 1 and then 64 in flight:
 *                            a closed-loop client on the in-process peer; puts write fresh keys, gets read the
 *                            100,000. Puts and gets carry the same-run floor as `baseline`: raw request/reply
 *                            on ONE long-lived libp2p stream to a child, which echoes 100-byte messages back
 *                            (pipelined at 64 in flight, one length-prefixed message per write).
 *   tcp.ops with its latencies, at 1 and 64 in flight: the floor under that floor, the same request/reply on
 *                            one raw TCP connection (no libp2p: no noise, no yamux) to a child process
 *                            that echoes the bytes back; the echo and puts carry it as `tcpOps`.
 *   placement.plain.share / placement.rules.share   what placement costs per put (the coordinator's
 *                            preference list and three replicas' primaries lookups, each with the key's
 *                            hash) as a share of one put's time at 64 in flight (target at most 0.05), on
 *                            this mesh's ring and on one where the location and durability rules apply
 *                            (emitPlacement)
 *
 * The put rate at 64 in flight is printed with its floor (10,000 quorum puts/s) and whether it was met; the
 * memory figures with their targets. Nothing here fails the run on a missed floor or target. To explain a
 * figure, each phase also reports `loopDelayMaxMs` (the longest this process's event loop was held up) and
 * put phases `walSyncs` / `opsPerSync` (the in-process peer's fdatasyncs and the writes each carried). At 64
 * in flight the puts move in lock-step groups that share one fdatasync on the coordinator (this peer) and
 * then one on a replica, so the put rate is bounded by 64 / (two fdatasyncs + a round trip).
 * The children run the built dist/ (`npm run build`).
 */
import type { ChildProcess } from 'node:child_process'
import * as net from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { RingMember } from '../src/core/ring/ring.js'
import { built } from './built.js'
import { type RssRow, rssOf, withMesh } from './mesh.js'
import { type LoopResult, closedLoop } from './loop.js'
import { startListeningChild } from './proc.js'
import { emit, progress } from './report.js'

const { loadRingHash } = await built<typeof import('../src/adapters/hash-xxhash.js')>('src/adapters/hash-xxhash.js')
const { DEFAULT_VNODES, DEFAULT_VOLATILE_VNODES, Ring } = await built<typeof import('../src/core/ring/ring.js')>('src/core/ring/ring.js')

const SUITE = 'kv'
const VALUE_BYTES = 100
const IN_FLIGHT = [1, 64] as const
/** The child's echo protocol (src/cli/peer-cli.ts ECHO_PROTOCOL, served with --debug-api). */
const ECHO_PROTOCOL = '/meshkv/echo/1.0.0'
const PUT_FLOOR_OPS = 10_000
const IDLE_RSS_TARGET_MB = 120
const LOADED_RSS_TARGET_MB = 250
const LOADED_KEYS = 100_000
const FILL_PROGRESS_KEYS = 10_000
/** An echo reply later than this fails the stream (and so the phase) instead of hanging the run. */
const ECHO_TIMEOUT_MS = 10_000
const RSS_NOTE = 'the in-process peer\'s RSS includes the benchmark client and the tsx loader'

/**
 * Request/reply on one long-lived stream to a child's echo protocol. Requests are pipelined: each caller
 * writes its length-prefixed message and waits; one reader loop resolves the callers in order, which is
 * the order the echo returns them in.
 */
class EchoClient {
  private readonly waiting: Array<{ resolve: () => void; reject: (error: Error) => void; sentMs: number }> = []
  private head = 0
  private failure: Error | null = null
  private readonly lp: ReturnType<typeof lpStream>
  private readonly reading: Promise<void>
  private readonly watchdog: ReturnType<typeof setInterval>

  constructor (private readonly stream: Stream, private readonly bytes: number) {
    this.lp = lpStream(stream)
    this.reading = this.read()
    this.watchdog = setInterval(() => {
      const oldest = this.waiting[this.head]
      if (oldest !== undefined && performance.now() - oldest.sentMs > ECHO_TIMEOUT_MS) this.stream.abort(new Error(`no echo within ${ECHO_TIMEOUT_MS} ms`))
    }, 1000)
  }

  async request (message: Uint8Array): Promise<void> {
    if (this.failure !== null) throw this.failure
    const reply = new Promise<void>((resolve, reject) => { this.waiting.push({ resolve, reject, sentMs: performance.now() }) })
    await this.lp.write(message)
    await reply
  }

  private async read (): Promise<void> {
    try {
      for (;;) {
        const reply = await this.lp.read()
        if (reply.byteLength !== this.bytes) throw new Error(`echo returned ${reply.byteLength} bytes, sent ${this.bytes}`)
        const waiter = this.waiting[this.head++]
        if (waiter === undefined) throw new Error('echo reply with no request waiting')
        if (this.head > 1024) { this.waiting.splice(0, this.head); this.head = 0 }
        waiter.resolve()
      }
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error))
      for (let i = this.head; i < this.waiting.length; i++) this.waiting[i]!.reject(this.failure)
      this.waiting.length = 0
      this.head = 0
    }
  }

  async close (): Promise<void> {
    clearInterval(this.watchdog)
    this.stream.abort(new Error('benchmark done'))
    await this.reading
  }
}

/** The raw TCP floor's server: echoes every byte back (a child process, like the peers). */
const TCP_ECHO_SERVER = `
const net = require('node:net')
const server = net.createServer(c => { c.setNoDelay(true); c.on('data', d => c.write(d)); c.on('error', () => {}) })
server.listen(0, '127.0.0.1', () => { process.stdout.write('listening ' + server.address().port + '\\n') })
`

/** Request/reply of `bytes`-byte messages on one raw TCP connection, pipelined like EchoClient. */
class TcpEchoClient {
  private readonly waiting: Array<{ resolve: () => void; reject: (error: Error) => void; sentMs: number }> = []
  private head = 0
  private pending = 0
  private failure: Error | null = null
  private readonly watchdog: ReturnType<typeof setInterval>

  private constructor (private readonly socket: net.Socket, private readonly server: ChildProcess, private readonly bytes: number) {
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => {
      this.pending += d.length
      while (this.pending >= this.bytes) {
        this.pending -= this.bytes
        const waiter = this.waiting[this.head++]
        if (waiter === undefined) { this.fail(new Error('echo reply with no request waiting')); return }
        if (this.head > 1024) { this.waiting.splice(0, this.head); this.head = 0 }
        waiter.resolve()
      }
    })
    socket.on('error', error => { this.fail(error) })
    socket.on('close', () => { this.fail(new Error('connection closed')) })
    this.watchdog = setInterval(() => {
      const oldest = this.waiting[this.head]
      if (oldest !== undefined && performance.now() - oldest.sentMs > ECHO_TIMEOUT_MS) this.socket.destroy(new Error(`no echo within ${ECHO_TIMEOUT_MS} ms`))
    }, 1000)
  }

  static async start (bytes: number): Promise<TcpEchoClient> {
    const { proc, port } = await startListeningChild(TCP_ECHO_SERVER, 'the TCP echo server')
    try {
      const socket = net.connect(port, '127.0.0.1')
      await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
      return new TcpEchoClient(socket, proc, bytes)
    } catch (error) {
      proc.kill('SIGKILL')
      throw error
    }
  }

  async request (message: Uint8Array): Promise<void> {
    if (this.failure !== null) throw this.failure
    const reply = new Promise<void>((resolve, reject) => { this.waiting.push({ resolve, reject, sentMs: performance.now() }) })
    this.socket.write(message)
    await reply
  }

  private fail (error: Error): void {
    if (this.failure !== null) return
    this.failure = error
    for (let i = this.head; i < this.waiting.length; i++) this.waiting[i]!.reject(error)
    this.waiting.length = 0
    this.head = 0
  }

  close (): void {
    clearInterval(this.watchdog)
    this.fail(new Error('benchmark done'))
    this.socket.destroy()
    this.server.kill('SIGKILL')
  }
}

function emitRss (metric: string, rows: RssRow[], target: number | undefined, extra: Record<string, unknown>): void {
  for (const r of rows) {
    emit({
      suite: SUITE,
      metric,
      value: r.rssMb,
      unit: 'MB',
      peer: r.peer,
      heapUsedMb: Math.round(r.heapUsedMb * 10) / 10,
      ...extra,
      ...(target === undefined ? {} : { target, met: r.rssMb <= target }),
      ...(r.peer === 'bench' ? { note: RSS_NOTE } : {})
    })
  }
}

/** Placement calls timed per ring, and the issue's bound on their share of a quorum put at 64 in flight. */
const PLACEMENT_CALLS = 200_000
const PLACEMENT_SHARE_TARGET = 0.05

/**
 * What placement costs a put: the coordinator's preference list (the key's ring position, i.e. its hash,
 * then the walk) and each of the three replicas' primaries lookup (the hash again, then the per-token
 * cache), each timed over PLACEMENT_CALLS keys, on two rings of DEFAULT_VNODES-token durable and
 * DEFAULT_VOLATILE_VNODES-token volatile members: this suite's (three Node peers at one location: the plain
 * walk) and the churn suite's (two Node peers on one host and four tabs of one browser, where both placement
 * rules apply). The sum, as a share of the time one put takes at `putRate` puts/s (and of an echo's).
 */
async function emitPlacement (putRate: number, echoRate: number): Promise<void> {
  const hash = await loadRingHash()
  const node = (id: string, location: string): RingMember => ({ id: `node-${id}`, vnodes: DEFAULT_VNODES, location, durable: true })
  const tab = (id: string): RingMember => ({ id: `tab-${id}`, vnodes: DEFAULT_VOLATILE_VNODES, location: 'browser/profile', durable: false })
  const rings = {
    plain: Ring.build([node('a', 'host'), node('b', 'host'), node('c', 'host')], hash, {}),
    rules: Ring.build([node('a', 'host'), node('b', 'host'), tab('1'), tab('2'), tab('3'), tab('4')], hash, {})
  }
  const up = (): boolean => true
  let sink = 0
  /** Mean ns of `call(i)` over PLACEMENT_CALLS keys, after a tenth as many to warm up (and fill the cache). */
  const time = (call: (i: number) => number): number => {
    for (let i = 0; i < PLACEMENT_CALLS / 10; i++) sink += call(i)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < PLACEMENT_CALLS; i++) sink += call(i)
    return Number(process.hrtime.bigint() - t0) / PLACEMENT_CALLS
  }
  for (const [name, ring] of Object.entries(rings)) {
    const preferenceNs = time(i => ring.preferenceList(ring.position(`placement:${i}`), 3, up).length)
    const primariesNs = time(i => ring.primaries(ring.position(`placement:${i}`), 3).length)
    const perPutNs = preferenceNs + 3 * primariesNs
    const share = perPutNs * putRate / 1e9
    emit({ suite: SUITE, metric: `placement.${name}.share`, value: Math.round(share * 10_000) / 10_000, unit: 'share of a put at 64 in flight', perPutNs: Math.round(perPutNs), preferenceNs: Math.round(preferenceNs), primariesNs: Math.round(primariesNs), members: ring.members.length, locations: ring.locationCount, putOps: Math.round(putRate), echoShare: Math.round(perPutNs * echoRate / 1e9 * 10_000) / 10_000, target: PLACEMENT_SHARE_TARGET, met: share <= PLACEMENT_SHARE_TARGET })
  }
  if (sink === 0) throw new Error('placement chose no replicas')
}

function emitLoop (metric: string, inFlight: number, r: LoopResult, baseline: LoopResult | undefined, extra: Record<string, unknown> = {}): void {
  const errors = r.errors > 0 ? { errors: r.errors, firstError: r.firstError } : {}
  emit({ suite: SUITE, metric: `${metric}.ops`, value: r.rate, unit: 'ops/s', inFlight, ops: r.ops, ...(baseline === undefined ? {} : { baseline: baseline.rate, baselineMetric: 'echo.ops (one libp2p stream)' }), ...extra, ...errors })
  emit({ suite: SUITE, metric: `${metric}.latency.p50`, value: r.p50Ms, unit: 'ms', inFlight, ...(baseline === undefined ? {} : { baseline: baseline.p50Ms, baselineMetric: 'echo.latency.p50' }) })
  emit({ suite: SUITE, metric: `${metric}.latency.p99`, value: r.p99Ms, unit: 'ms', inFlight, ...(baseline === undefined ? {} : { baseline: baseline.p99Ms, baselineMetric: 'echo.latency.p99' }) })
}

export async function run (flags: string[]): Promise<void> {
  const quick = flags.includes('--quick')
  const phaseMs = quick ? 1000 : 3000
  const warmupMs = quick ? 200 : 500
  await withMesh({ name: SUITE, childArgs: ['--debug-api'] }, async mesh => {
    const self = mesh.peer
    const children = mesh.children
    emitRss('memory.idle.rss', await rssOf(mesh), IDLE_RSS_TARGET_MB, {})

    // A fresh buffer per put, as a real client's would be: the in-process peer keeps the caller's array.
    const valueFor = (i: number): Uint8Array => new Uint8Array(VALUE_BYTES).fill(i & 0xff)
    const loadedKeys = quick ? 20_000 : LOADED_KEYS
    progress(`writing ${loadedKeys} keys of ${VALUE_BYTES} bytes, 64 in flight`)
    let written = 0
    let fillNext = 0
    let fillErrors = 0
    const fillStart = performance.now()
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (fillNext < loadedKeys) {
        const i = fillNext++
        try {
          await self.put(`fill:${i}`, valueFor(i))
        } catch (error) {
          // A key that failed is not retried: the memory figure is for the keys acknowledged.
          if (fillErrors++ === 0) progress(`fill: put failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
          continue
        }
        if (++written % FILL_PROGRESS_KEYS === 0) progress(`  ${written}/${loadedKeys} keys`)
      }
    }))
    const fillRate = written / ((performance.now() - fillStart) / 1000)
    emit({ suite: SUITE, metric: 'fill.ops', value: fillRate, unit: 'ops/s', inFlight: 64, keys: written, ...(fillErrors > 0 ? { errors: fillErrors } : {}) })
    emitRss('memory.loaded.rss', await rssOf(mesh), loadedKeys === LOADED_KEYS ? LOADED_RSS_TARGET_MB : undefined, { keys: written, engineKeys: self.engine.size })

    progress(`echo baseline: one stream to ${children[0]!.name} (${ECHO_PROTOCOL})`)
    const stream = await self.libp2p.dialProtocol(peerIdFromString(children[0]!.id), ECHO_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const echoClient = new EchoClient(stream, VALUE_BYTES)
    progress('raw TCP floor: one connection to a child process that echoes the bytes back')
    const tcpClient = await TcpEchoClient.start(VALUE_BYTES)
    try {
      const message = new Uint8Array(VALUE_BYTES).fill(0x62)

      // Each in-flight level runs echo, put, get back to back, so a burst of load elsewhere hits all three.
      let putKey = 0
      for (const inFlight of IN_FLIGHT) {
        const phases: Array<{ metric: string; op: (i: number) => Promise<unknown> }> = [
          { metric: 'tcp', op: async () => { await tcpClient.request(message) } },
          { metric: 'echo', op: async () => { await echoClient.request(message) } },
          { metric: 'put', op: async i => await self.put(`put:${putKey++}`, valueFor(i)) },
          // Reads of keys that exist, spread over the whole key set (a stride coprime with it).
          { metric: 'get', op: async i => await self.get(`fill:${(i * 7919) % loadedKeys}`) }
        ]
        const results = new Map<string, { r: LoopResult; extra: Record<string, unknown> }>()
        for (const { metric, op } of phases) {
          progress(`${metric}: ${inFlight} in flight, ${warmupMs} ms warm-up then ${phaseMs} ms`)
          await closedLoop(inFlight, warmupMs, op)
          // Where a p99 comes from: how long this process's event loop was held up (anti-entropy scans, GC)
          // and, for puts, how many writes each of the in-process peer's fdatasyncs carried (group commit).
          const delay = monitorEventLoopDelay({ resolution: 10 })
          const syncsBefore = self.engine.stats().walSyncs
          delay.enable()
          const r = await closedLoop(inFlight, phaseMs, op)
          delay.disable()
          const syncs = self.engine.stats().walSyncs - syncsBefore
          const extra: Record<string, unknown> = { loopDelayMaxMs: Math.round(delay.max / 1e5) / 10 }
          if (metric === 'put') Object.assign(extra, { walSyncs: syncs, opsPerSync: syncs === 0 ? null : Math.round(r.ops / syncs * 10) / 10 })
          if (r.errors > 0) progress(`${metric}: ${r.errors} operations failed; first: ${r.firstError}`)
          results.set(metric, { r, extra })
        }
        const base = results.get('echo')!.r
        const put = results.get('put')!
        const tcp = results.get('tcp')!.r
        const tcpOps = Math.round(tcp.rate)
        emitLoop('tcp', inFlight, tcp, undefined, results.get('tcp')!.extra)
        emitLoop('echo', inFlight, base, undefined, { ...results.get('echo')!.extra, tcpOps })
        emitLoop('put', inFlight, put.r, base, { ...put.extra, tcpOps, ...(inFlight === 64 ? { floor: PUT_FLOOR_OPS, floorMet: put.r.rate >= PUT_FLOOR_OPS } : {}) })
        emitLoop('get', inFlight, results.get('get')!.r, base, { ...results.get('get')!.extra, tcpOps })
        if (inFlight === 64) await emitPlacement(put.r.rate, base.rate)
      }
    } finally {
      tcpClient.close()
      await echoClient.close().catch(() => {})
    }
  })
}
