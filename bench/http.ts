/**
 * HTTP suite: the path users take. Three `node node/peer.js` children on 127.0.0.1 (a bootstrap and two
 * joined to it; default settings: N=3, R=2, W=2, sync durability, 100-byte values), driven through their HTTP
 * API by a closed-loop client in this process, and in the same run the floor: a trivial node:http server
 * with a Map (PUT stores the body, GET returns it; a child process too) driven by the same client.
 *
 * A second floor is measured on the same peers (they run with --debug-api): the fan-out floor, `PUT` and `GET
 * /debug/floor/<key>` (src/cli/debug-api.ts), a quorum operation with nothing stored — the same HTTP server
 * and guard, the key's primaries, and the KV RPC layer over libp2p to the replicas a put (two) or a get (one)
 * sends to and back. What it costs is the least any meshkv request can; meshkv's own part (store, log and
 * fdatasync, versions, coordinator) is the rest.
 *
 * For 16 and then 64 requests in flight, in order: floor PUT, meshkv PUT, fan-out PUT, and the same for GET. Each phase
 * has WARMUP_MS of the same requests, not measured, then runs for `--seconds` (default 10; `--quick` 3).
 * The client spreads meshkv requests over the three peers round robin, on keep-alive connections (at most
 * the in-flight count per peer); PUTs write fresh keys, GETs read keys the PUT phase wrote.
 *
 *   http.put.ops / http.get.ops   requests/s, with the floor's as baseline and the issue's target ratio
 *   .latency.p50 / .p99           ms, issue to complete response
 *   .cpu                          CPU-ms per request summed over the serving processes (the three peers, or
 *                                 the floor server), from /proc (Linux; omitted elsewhere)
 *   .frames                       meshkv only: KV requests and replies sent per libp2p frame, summed over
 *                                 the peers (/stats rpc) — how well requests from many sockets share frames
 *   .syncs                        meshkv only: fdatasyncs per request, summed over the peers (/stats
 *                                 storage.walSyncs) — how many writes each group commit carried
 *   http.<m>.fanout.ops / .cpu    the fan-out floor: requests/s against the floor, and CPU-ms per request;
 *                                 meshkv's .ops carries `fanoutShare`, its rate over the fan-out floor's
 *   http.<m>.client.cpu           CPU-ms per request of this process (the client) in meshkv's phase
 *   http.<m>.budget               what the machine leaves the three peers per request at the target rate
 *                                 (the target ratio times this round's floor rate): its cores' CPU-ms per
 *                                 second, less the client's CPU at that rate, over the rate. An upper bound,
 *                                 as if every core were busy all the time; `fanoutFits` says whether the
 *                                 fan-out floor's CPU per request (the transport alone, nothing stored) is
 *                                 within it, and `meshkvFits` whether meshkv's is
 *
 * `--rounds=K` (1 to ROUNDS_MAX) runs that whole sequence K times on the same peers and floor server, each
 * round on keys of its own, and judges each round against its own floor: every figure above then carries its
 * `round`, and at the end, per method and in-flight count, the median over the rounds (the issue's targets
 * ask for medians of three runs, and the floor alone moves by a third between runs on this machine):
 *
 *   http.<m>.ratio.median         the median of the rounds' meshkv/floor ratios, each round's ratio listed
 *   http.<m>.cpu.median           the median of the rounds' CPU-ms per request (judged at 64 in flight)
 *   http.<m>.fanout.ratio.median  the same two for the fan-out floor
 *   http.<m>.fanout.cpu.median
 *
 * Nothing here fails the run on a missed target: each figure says whether it met it. Every request has a
 * REQUEST_TIMEOUT_MS deadline and every loop its phase deadline, so the run ends by itself; the children are
 * SIGKILLed on the way out, also on SIGINT/SIGTERM. Needs `npm run build` (the children run from dist/).
 */
import type { ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import { members, peerGroup, type PeerProcess, waitUntil } from '../test/helpers/peers.js'
import { type LoopResult, closedLoop } from './loop.js'
import { cpuSecondsOf, onInterrupt, startListeningChild } from './proc.js'
import { emit, median, progress, round3 } from './report.js'

const SUITE = 'http'
const VALUE_BYTES = 100
const IN_FLIGHT = [16, 64] as const
const WARMUP_MS = 2000
const REQUEST_TIMEOUT_MS = 30_000
const MESH_FORM_MS = 60_000
/** The issue's targets: meshkv over the floor, per method and in-flight count, and CPU-ms per request at 64. */
const TARGET_RATIO: Record<string, number> = { 'put.16': 0.35, 'get.16': 0.45, 'put.64': 0.5, 'get.64': 0.6 }
const CPU_MS_TARGET_64 = 0.3

/** The floor: the least an HTTP key-value server can do, in its own process like a peer. */
const FLOOR_SERVER = `
const http = require('node:http')
const map = new Map()
const server = http.createServer((req, res) => {
  if (req.method === 'PUT') {
    const chunks = []
    req.on('data', c => chunks.push(c))
    req.on('end', () => { map.set(req.url, Buffer.concat(chunks)); res.writeHead(204); res.end() })
    return
  }
  const v = map.get(req.url)
  if (v === undefined) { res.writeHead(404); res.end(); return }
  res.writeHead(200, { 'content-type': 'application/octet-stream' })
  res.end(v)
})
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => { process.stdout.write('listening ' + server.address().port + '\\n') })
`

/** Most rounds one run may take (`--rounds`): a round of 10 s phases takes about two minutes. */
const ROUNDS_MAX = 20

interface Options { seconds: number; rounds: number }

function parseFlags (flags: string[]): Options {
  const o: Options = { seconds: flags.includes('--quick') ? 3 : 10, rounds: 1 }
  for (const flag of flags) {
    const m = /^--(seconds|rounds)=(.*)$/.exec(flag)
    if (m === null) continue
    const n = Number(m[2])
    const max = m[1] === 'seconds' ? 600 : ROUNDS_MAX
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`${flag}: expected an integer from 1 to ${max}`)
    if (m[1] === 'seconds') o.seconds = n
    else o.rounds = n
  }
  return o
}

function totalCpu (pids: Array<number | undefined>): number | null {
  let sum = 0
  for (const pid of pids) {
    const s = cpuSecondsOf(pid)
    if (s === null) return null
    sum += s
  }
  return sum
}

interface Target { host: string; port: number; agent: http.Agent }

function target (url: string, inFlight: number): Target {
  const u = new URL(url)
  return { host: u.hostname, port: Number(u.port), agent: new http.Agent({ keepAlive: true, maxSockets: inFlight }) }
}

/** One request; resolves with its status, rejects on a network error or after REQUEST_TIMEOUT_MS. */
function request (t: Target, method: 'GET' | 'PUT', path: string, body?: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: t.host, port: t.port, method, path, agent: t.agent, timeout: REQUEST_TIMEOUT_MS, headers: body === undefined ? {} : { 'content-length': String(body.length), 'content-type': 'application/octet-stream' } }, res => {
      res.on('data', () => {})
      res.on('end', () => { resolve(res.statusCode ?? 0) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`no response within ${REQUEST_TIMEOUT_MS} ms`)) })
    req.on('error', reject)
    req.end(body)
  })
}

interface PhaseResult extends LoopResult { warmupAttempts: number; cpuMsPerOp: number | null; clientCpuMsPerOp: number }

/**
 * `inFlight` closed-loop workers issuing `op(i)` for WARMUP_MS (not counted), then for `ms`, numbered on
 * from the warm-up's (fresh keys throughout); a status `ok` refuses is an error. CPU is read around the
 * measured part.
 */
async function phase (inFlight: number, ms: number, pids: Array<number | undefined>, op: (i: number) => Promise<number>, ok: (status: number) => boolean): Promise<PhaseResult> {
  const checked = async (i: number): Promise<void> => {
    const status = await op(i)
    if (!ok(status)) throw new Error(`HTTP ${status}`)
  }
  const warmup = await closedLoop(inFlight, WARMUP_MS, checked)
  const cpu0 = totalCpu(pids)
  const client0 = process.cpuUsage()
  const r = await closedLoop(inFlight, ms, checked, warmup.attempts)
  const client = process.cpuUsage(client0)
  const cpu1 = totalCpu(pids)
  return {
    ...r,
    warmupAttempts: warmup.attempts,
    cpuMsPerOp: cpu0 === null || cpu1 === null || r.ops === 0 ? null : (cpu1 - cpu0) * 1000 / r.ops,
    clientCpuMsPerOp: r.ops === 0 ? 0 : (client.user + client.system) / 1000 / r.ops
  }
}

async function startFloor (): Promise<{ proc: ChildProcess; url: string }> {
  const { proc, port } = await startListeningChild(FLOOR_SERVER, 'the floor server')
  return { proc, url: `http://127.0.0.1:${port}` }
}

/** One method at one in-flight count: each round's meshkv/floor ratio and CPU-ms per request. */
interface Rounds { method: string; inFlight: number; ratios: number[]; cpus: number[]; fanRatios: number[]; fanCpus: number[]; budgets: number[] }

/**
 * The CPU-ms per request the machine leaves the three peers at `rate` requests/s, when the client costs
 * `clientCpuMs` per request: every core's time, less the client's, over the rate.
 */
export function peerCpuBudget (cores: number, rate: number, clientCpuMs: number): number {
  return (cores * 1000 - clientCpuMs * rate) / rate
}

/** The medians over the rounds, per method and in-flight count, against the issue's targets. */
function emitMedians (byRound: Map<string, Rounds>, o: Options): void {
  for (const [key, { method, inFlight, ratios, cpus, fanRatios, fanCpus, budgets }] of byRound) {
    const extra = { inFlight, seconds: o.seconds, valueBytes: VALUE_BYTES, rounds: o.rounds }
    const ratio = median(ratios)
    const target = TARGET_RATIO[key]!
    emit({ suite: SUITE, metric: `http.${method}.ratio.median`, value: round3(ratio), unit: 'ratio (meshkv/floor)', ratios: ratios.map(round3), target, met: ratio >= target, ...extra })
    let cpuNote = ''
    if (cpus.length > 0) {
      const cpu = median(cpus)
      emit({ suite: SUITE, metric: `http.${method}.cpu.median`, value: round3(cpu), unit: 'CPU-ms/op (3 peers)', cpus: cpus.map(round3), ...(inFlight === 64 ? { target: CPU_MS_TARGET_64, met: cpu <= CPU_MS_TARGET_64 } : {}), ...extra })
      cpuNote = `, CPU ${cpus.map(c => c.toFixed(3)).join(', ')} ms, median ${cpu.toFixed(3)}`
    }
    progress(`${method.toUpperCase()} at ${inFlight} in flight over ${o.rounds} rounds: ratios ${ratios.map(r => r.toFixed(3)).join(', ')}, median ${ratio.toFixed(3)} (target >= ${target})${cpuNote}`)
    const fanRatio = median(fanRatios)
    emit({ suite: SUITE, metric: `http.${method}.fanout.ratio.median`, value: round3(fanRatio), unit: 'ratio (fan-out floor/floor)', ratios: fanRatios.map(round3), ...extra })
    if (fanCpus.length > 0) emit({ suite: SUITE, metric: `http.${method}.fanout.cpu.median`, value: round3(median(fanCpus)), unit: 'CPU-ms/op (3 peers)', cpus: fanCpus.map(round3), ...extra })
    progress(`  fan-out floor: ratios ${fanRatios.map(r => r.toFixed(3)).join(', ')}, median ${fanRatio.toFixed(3)}${fanCpus.length === 0 ? '' : `, CPU median ${median(fanCpus).toFixed(3)} ms`}`)
    if (budgets.length === 0) continue
    const budget = median(budgets)
    emit({ suite: SUITE, metric: `http.${method}.budget.median`, value: round3(budget), unit: 'CPU-ms/op left to the 3 peers at the target rate', budgets: budgets.map(round3), ...(fanCpus.length === 0 ? {} : { fanoutFits: median(fanCpus) <= budget }), ...(cpus.length === 0 ? {} : { meshkvFits: median(cpus) <= budget }), ...extra })
    progress(`  at the target rate the machine leaves the peers ${budgets.map(b => b.toFixed(3)).join(', ')} CPU-ms per request, median ${budget.toFixed(3)}`)
  }
}

/** Where one in-flight count is measured: the floor server and the three peers. */
interface Servers { floorUrl: string; floorPid: number | undefined; peers: PeerProcess[] }

/** One method at one in-flight count: the floor's phase, meshkv's, the fan-out floor's, and meshkv's messages per frame and syncs per request. */
interface MethodResult { floor: PhaseResult; mesh: PhaseResult; fanout: PhaseResult; frames: number; syncs: number }

/** PUT and then GET at `inFlight`, each on the floor first and then on meshkv, on keys tagged `tag`. */
async function measureInFlight (s: Servers, inFlight: number, ms: number, tag: string): Promise<Record<'put' | 'get', MethodResult>> {
  const value = new Uint8Array(VALUE_BYTES).fill(0x61)
  const peerPids = s.peers.map(p => p.proc.pid)
  let written = 0
  const results: Partial<Record<'put' | 'get', MethodResult>> = {}
  for (const method of ['put', 'get'] as const) {
    // Fresh keep-alive connections for every phase (opened during its warm-up): a connection left idle
    // by the phase before could be closed by the server (its keep-alive timeout) just as it is reused.
    const floorT = target(s.floorUrl, inFlight)
    const meshT = s.peers.map(p => target(p.http, inFlight))
    const floorOp = method === 'put'
      ? (i: number) => request(floorT, 'PUT', `/k${tag}${inFlight}-${i}`, value)
      : (i: number) => request(floorT, 'GET', `/k${tag}${inFlight}-${i % Math.max(1, written)}`)
    const f = await phase(inFlight, ms, [s.floorPid], floorOp, st => st === 204 || st === 200)
    progress(`  ${method} ${inFlight} in flight, floor: ${f.rate.toFixed(0)}/s, p50 ${f.p50Ms.toFixed(2)} ms, ${f.cpuMsPerOp?.toFixed(3) ?? '?'} CPU-ms/op, ${f.errors} errors`)
    const before = await rpcTotals(s.peers)
    const meshOp = method === 'put'
      ? (i: number) => { written = Math.max(written, i + 1); return request(meshT[i % 3]!, 'PUT', `/kv/h${tag}${inFlight}-${i}`, value) }
      : (i: number) => request(meshT[i % 3]!, 'GET', `/kv/h${tag}${inFlight}-${(i * 7919) % Math.max(1, written)}`)
    // A GET of a key whose PUT failed is a 404, not a failed GET.
    const m = await phase(inFlight, ms, peerPids, meshOp, st => st === 204 || st === 200 || (method === 'get' && st === 404))
    const after = await rpcTotals(s.peers)
    const frames = after.frames - before.frames
    const perFrame = frames === 0 ? 0 : (after.requests - before.requests + after.replies - before.replies) / frames
    // Warm-up requests are in the /stats deltas too: per request of the whole phase.
    const syncsPerOp = (after.syncs - before.syncs) / Math.max(1, m.attempts + m.warmupAttempts)
    progress(`  ${method} ${inFlight} in flight, meshkv: ${m.rate.toFixed(0)}/s (${(m.rate / f.rate).toFixed(2)}x floor), p50 ${m.p50Ms.toFixed(2)} ms, ${m.cpuMsPerOp?.toFixed(3) ?? '?'} CPU-ms/op, ${perFrame.toFixed(1)} messages per frame, ${syncsPerOp.toFixed(2)} fdatasyncs per request, ${m.errors} errors${m.firstError === undefined ? '' : ` (first: ${m.firstError})`}`)
    const fanT = s.peers.map(p => target(p.http, inFlight))
    const fanOp = (i: number): Promise<number> => method === 'put'
      ? request(fanT[i % 3]!, 'PUT', `/debug/floor/f${tag}${inFlight}-${i}`, value)
      : request(fanT[i % 3]!, 'GET', `/debug/floor/f${tag}${inFlight}-${i}`)
    const fan = await phase(inFlight, ms, peerPids, fanOp, st => st === 204 || st === 200)
    progress(`  ${method} ${inFlight} in flight, fan-out floor: ${fan.rate.toFixed(0)}/s (${(fan.rate / f.rate).toFixed(2)}x floor; meshkv ${(m.rate / fan.rate).toFixed(2)}x of it), p50 ${fan.p50Ms.toFixed(2)} ms, ${fan.cpuMsPerOp?.toFixed(3) ?? '?'} CPU-ms/op, ${fan.errors} errors${fan.firstError === undefined ? '' : ` (first: ${fan.firstError})`}`)
    results[method] = { floor: f, mesh: m, fanout: fan, frames: perFrame, syncs: syncsPerOp }
    floorT.agent.destroy()
    for (const t of [...meshT, ...fanT]) t.agent.destroy()
  }
  return results as Record<'put' | 'get', MethodResult>
}

/** Emits one in-flight count's figures (`round` null when the run has one) and adds them to `byRound`. */
function emitRound (results: Record<'put' | 'get', MethodResult>, inFlight: number, round: number | null, o: Options, byRound: Map<string, Rounds>): void {
  for (const [method, r] of Object.entries(results)) {
    const extra = { inFlight, seconds: o.seconds, valueBytes: VALUE_BYTES, ...(round === null ? {} : { round }) }
    const key = `${method}.${inFlight}`
    const ratioTarget = TARGET_RATIO[key]!
    const ratio = r.mesh.rate / r.floor.rate
    const seen = byRound.get(key) ?? { method, inFlight, ratios: [], cpus: [], fanRatios: [], fanCpus: [], budgets: [] }
    byRound.set(key, seen)
    seen.ratios.push(ratio)
    if (r.mesh.cpuMsPerOp !== null) seen.cpus.push(r.mesh.cpuMsPerOp)
    seen.fanRatios.push(r.fanout.rate / r.floor.rate)
    if (r.fanout.cpuMsPerOp !== null) seen.fanCpus.push(r.fanout.cpuMsPerOp)
    const cores = os.availableParallelism()
    const targetRate = ratioTarget * r.floor.rate
    // Without a floor rate or a measured client there is no target rate to judge, and no budget.
    const budget = targetRate > 0 && r.mesh.ops > 0 ? peerCpuBudget(cores, targetRate, r.mesh.clientCpuMsPerOp) : null
    if (budget !== null) seen.budgets.push(budget)
    emit({ suite: SUITE, metric: `http.${method}.ops`, value: r.mesh.rate, unit: 'ops/s', baseline: r.floor.rate, baselineMetric: 'node:http Map server, same client', target: ratioTarget, met: ratio >= ratioTarget, fanoutShare: round3(r.mesh.rate / r.fanout.rate), errors: r.mesh.errors, ...(r.mesh.firstError === undefined ? {} : { firstError: r.mesh.firstError }), ...extra })
    emit({ suite: SUITE, metric: `http.${method}.latency.p50`, value: r.mesh.p50Ms, unit: 'ms', baseline: r.floor.p50Ms, baselineMetric: 'floor p50', ...extra })
    emit({ suite: SUITE, metric: `http.${method}.latency.p99`, value: r.mesh.p99Ms, unit: 'ms', baseline: r.floor.p99Ms, baselineMetric: 'floor p99', ...extra })
    if (r.mesh.cpuMsPerOp !== null) emit({ suite: SUITE, metric: `http.${method}.cpu`, value: r.mesh.cpuMsPerOp, unit: 'CPU-ms/op (3 peers)', ...(r.floor.cpuMsPerOp === null ? {} : { baseline: r.floor.cpuMsPerOp, baselineMetric: 'floor server CPU-ms/op' }), ...(inFlight === 64 ? { target: CPU_MS_TARGET_64, met: r.mesh.cpuMsPerOp <= CPU_MS_TARGET_64 } : {}), ...extra })
    emit({ suite: SUITE, metric: `http.${method}.frames`, value: r.frames, unit: 'messages/frame', ...extra })
    emit({ suite: SUITE, metric: `http.${method}.syncs`, value: r.syncs, unit: 'fdatasyncs/request (3 peers)', ...extra })
    emit({ suite: SUITE, metric: `http.${method}.fanout.ops`, value: r.fanout.rate, unit: 'ops/s', baseline: r.floor.rate, baselineMetric: 'node:http Map server, same client', errors: r.fanout.errors, ...extra })
    if (r.fanout.cpuMsPerOp !== null) emit({ suite: SUITE, metric: `http.${method}.fanout.cpu`, value: r.fanout.cpuMsPerOp, unit: 'CPU-ms/op (3 peers)', ...(r.floor.cpuMsPerOp === null ? {} : { baseline: r.floor.cpuMsPerOp, baselineMetric: 'floor server CPU-ms/op' }), ...extra })
    emit({ suite: SUITE, metric: `http.${method}.client.cpu`, value: r.mesh.clientCpuMsPerOp, unit: 'CPU-ms/op (this process)', baseline: r.floor.clientCpuMsPerOp, baselineMetric: 'client CPU-ms/op on the floor', ...extra })
    if (budget !== null) emit({ suite: SUITE, metric: `http.${method}.budget`, value: budget, unit: 'CPU-ms/op left to the 3 peers at the target rate', cores, targetRate: Math.round(targetRate), clientCpuMs: r.mesh.clientCpuMsPerOp, ...(r.fanout.cpuMsPerOp === null ? {} : { fanoutCpuMs: r.fanout.cpuMsPerOp, fanoutFits: r.fanout.cpuMsPerOp <= budget }), ...(r.mesh.cpuMsPerOp === null ? {} : { meshkvCpuMs: r.mesh.cpuMsPerOp, meshkvFits: r.mesh.cpuMsPerOp <= budget }), ...extra })
  }
}

async function rpcTotals (peers: PeerProcess[]): Promise<{ requests: number; replies: number; frames: number; syncs: number }> {
  const out = { requests: 0, replies: 0, frames: 0, syncs: 0 }
  for (const p of peers) {
    const res = await fetch(`${p.http}/stats`, { signal: AbortSignal.timeout(10_000) })
    const s = await res.json() as { rpc: { requests: number; replies: number; frames: number }; storage: { walSyncs: number } }
    out.requests += s.rpc.requests
    out.replies += s.rpc.replies
    out.frames += s.rpc.frames
    out.syncs += s.storage.walSyncs
  }
  return out
}

export async function run (flags: string[]): Promise<void> {
  if (!fs.existsSync('dist/src/cli/peer-cli.js')) throw new Error('the peers run from dist/: run `npm run build` first')
  const o = parseFlags(flags)
  progress(`${SUITE}: 3 Node peers (N=3 R=2 W=2, sync, ${VALUE_BYTES}-byte values) through HTTP vs a node:http Map server and the peers' fan-out floor, ${o.seconds} s per phase at ${IN_FLIGHT.join(' and ')} in flight${o.rounds === 1 ? '' : `, ${o.rounds} rounds`}`)
  // --debug-api for the fan-out floor's routes; the KV routes do not pass through it.
  const group = peerGroup('meshkv-bench-http-', ['--debug-api'])
  let floor: ChildProcess | null = null
  const cleanup = async (): Promise<void> => {
    floor?.kill('SIGKILL')
    await group.stopAll()
  }
  const offInterrupt = onInterrupt(cleanup)
  try {
    const boot = await group.start('boot', ['--bootstrap'])
    const peers = [boot, await group.start('p2', ['--join', boot.tcp]), await group.start('p3', ['--join', boot.tcp])]
    await waitUntil(async () => {
      for (const p of peers) if ((await members(p)).filter(m => m.state === 'alive').length < 3) return false
      return true
    }, MESH_FORM_MS, 'three peers listing each other alive')
    const started = await startFloor()
    floor = started.proc
    progress(`mesh formed; floor server at ${started.url}`)
    const ms = o.seconds * 1000
    // Per method and in-flight count, keyed as TARGET_RATIO is ('put.16').
    const byRound = new Map<string, Rounds>()
    for (let round = 1; round <= o.rounds; round++) {
      if (o.rounds > 1) progress(`round ${round} of ${o.rounds}`)
      // Each round writes keys of its own: a PUT over another round's key would make siblings, not a fresh key.
      const tag = o.rounds === 1 ? '' : `r${round}-`
      for (const inFlight of IN_FLIGHT) {
        const results = await measureInFlight({ floorUrl: started.url, floorPid: started.proc.pid, peers }, inFlight, ms, tag)
        emitRound(results, inFlight, o.rounds === 1 ? null : round, o, byRound)
      }
    }
    if (o.rounds > 1) emitMedians(byRound, o)
  } finally {
    offInterrupt()
    await cleanup()
  }
}

