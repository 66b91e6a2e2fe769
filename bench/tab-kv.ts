/**
 * Tab KV suite: quorum puts from a browser tab, against the raw floor between the same two tabs. Two Node
 * peers (`node node/peer.js` children, default settings: N=3, R=2, W=2, durable acks 1, sync) and two replica
 * tabs on the bootstrap's page in one headless Chromium, once everyone lists everyone alive. Then, for
 * `--seconds` each (default 10; `--quick` 3), after WARMUP_MS not measured:
 *
 *   webrtc.echo   the floor: a raw RTCDataChannel between tab A and tab B (its own RTCPeerConnection, signalled
 *                 through the test, no libp2p), B echoing every message; A keeps `--in-flight` 100-byte
 *                 messages outstanding (default 16)
 *   tab.put       tab A's peer puts fresh keys of 100 bytes (`peer.put`, the page's own API), the same number
 *                 in flight: each goes through the page's peer, as coordinator or forwarding to one, to the
 *                 key's replicas (tabs over WebRTC, Node peers over WebRTC too)
 *   tab.get       tab A's peer reads those keys back (R=2)
 *
 * Each reports ops/s and p50/p99 with the echo as baseline. Everything runs inside the pages with a deadline,
 * and every operation has OP_TIMEOUT_MS, so the run ends by itself; the children and the browser are stopped
 * on the way out, also on SIGINT/SIGTERM. Needs `npm run build` (the children and the page run from dist/).
 */
import * as fs from 'node:fs'
import type { Browser, Page } from '@playwright/test'
import { peerGroup } from '../test/helpers/peers.js'
import { startTabMesh } from '../test/helpers/tab-mesh.js'
import { launchChromium } from './browser.js'
import { onInterrupt } from './proc.js'
import { emit, progress } from './report.js'

const SUITE = 'tab-kv'
const VALUE_BYTES = 100
const WARMUP_MS = 1000
const OP_TIMEOUT_MS = 10_000
const CONVERGE_MS = 90_000

interface Options { seconds: number; inFlight: number }

function parseFlags (flags: string[]): Options {
  const o: Options = { seconds: flags.includes('--quick') ? 3 : 10, inFlight: 16 }
  for (const flag of flags) {
    const m = /^--(seconds|in-flight)=(.*)$/.exec(flag)
    if (m === null) continue
    const n = Number(m[2])
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error(`${flag}: expected an integer from 1 to 1000`)
    if (m[1] === 'seconds') o.seconds = n
    else o.inFlight = n
  }
  return o
}

interface LoopStats { ops: number; rate: number; p50: number; p99: number; errors: number; firstError?: string }

/**
 * Runs in a page: `inFlight` closed-loop workers calling `op` until the deadline (after a warm-up), each call
 * bounded by `timeoutMs`. The same function (as source) for every measurement.
 */
const LOOP = `async (op, inFlight, warmupMs, ms, timeoutMs) => {
  let i = 0
  const run = async (until, latencies, errors) => {
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now()
        let timer
        try {
          await Promise.race([op(i++), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('no answer within ' + timeoutMs + ' ms')), timeoutMs) })])
          if (latencies !== null) latencies.push(performance.now() - t0)
        } catch (error) {
          errors.n++
          errors.first = errors.first ?? String(error && error.message || error)
        } finally {
          clearTimeout(timer)
        }
      }
    }))
  }
  await run(performance.now() + warmupMs, null, { n: 0 })
  const latencies = []
  const errors = { n: 0, first: undefined }
  const t0 = performance.now()
  await run(t0 + ms, latencies, errors)
  const elapsed = (performance.now() - t0) / 1000
  latencies.sort((a, b) => a - b)
  const pick = p => latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]
  return { ops: latencies.length, rate: latencies.length / elapsed, p50: pick(0.5), p99: pick(0.99), errors: errors.n, firstError: errors.first }
}`

/** A raw data channel from `a` to `b`, signalled through this process (no trickle: full SDP once gathered). */
async function rawChannel (a: Page, b: Page): Promise<void> {
  const gathered = `pc => new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') { resolve(); return }
    const t = setTimeout(resolve, 10000)
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve() } })
  })`
  const offer = await a.evaluate(`(async () => {
    const pc = new RTCPeerConnection()
    const dc = pc.createDataChannel('bench', { ordered: true })
    dc.binaryType = 'arraybuffer'
    window.benchEcho = { pc, dc, waiting: [], head: 0 }
    dc.onmessage = () => { const w = window.benchEcho.waiting[window.benchEcho.head++]; if (w !== undefined) w() }
    await pc.setLocalDescription(await pc.createOffer())
    await (${gathered})(pc)
    return JSON.stringify(pc.localDescription)
  })()`)
  const answer = await b.evaluate(`(async () => {
    const pc = new RTCPeerConnection()
    window.benchEchoServer = pc
    pc.ondatachannel = ev => { const dc = ev.channel; dc.binaryType = 'arraybuffer'; dc.onmessage = m => dc.send(m.data) }
    await pc.setRemoteDescription(${offer as string})
    await pc.setLocalDescription(await pc.createAnswer())
    await (${gathered})(pc)
    return JSON.stringify(pc.localDescription)
  })()`)
  await a.evaluate(`(async () => {
    await window.benchEcho.pc.setRemoteDescription(${answer as string})
    const dc = window.benchEcho.dc
    if (dc.readyState !== 'open') await new Promise((resolve, reject) => { const t = setTimeout(() => reject(new Error('the raw data channel did not open within 20 s')), 20000); dc.onopen = () => { clearTimeout(t); resolve() } })
  })()`)
}

export async function run (flags: string[]): Promise<void> {
  if (!fs.existsSync('dist/src/cli/peer-cli.js') || !fs.existsSync('dist/web/index.html')) throw new Error('the peers and the dashboard run from dist/: run `npm run build` first')
  const o = parseFlags(flags)
  progress(`${SUITE}: 2 Node peers and 2 replica tabs; tab A's quorum puts and gets vs a raw data channel echo between the tabs, ${o.inFlight} in flight, ${o.seconds} s each`)
  const group = peerGroup('meshkv-bench-tabkv-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws'])
  let browser: Browser | null = null
  const cleanup = async (): Promise<void> => {
    await browser?.close().catch(() => {})
    await group.stopAll()
  }
  const offInterrupt = onInterrupt(cleanup)
  try {
    const launched = await launchChromium()
    browser = launched.browser
    progress(launched.description)
    const mesh = await startTabMesh(browser, group, 'tabkv', 2, CONVERGE_MS, line => { progress(`  ${line.split('\n')[0]}`) })
    const [a, b] = mesh.tabs
    progress('mesh formed; opening a raw data channel between the two tabs')
    await rawChannel(a!.page, b!.page)
    const ms = o.seconds * 1000
    const measure = async (name: string, op: string): Promise<LoopStats> => {
      const r = await a!.page.evaluate(`(${LOOP})(${op}, ${o.inFlight}, ${WARMUP_MS}, ${ms}, ${OP_TIMEOUT_MS})`) as LoopStats
      progress(`  ${name}: ${r.rate.toFixed(0)}/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors${r.firstError === undefined ? '' : ` (first: ${r.firstError})`}`)
      return r
    }
    const echo = await measure('webrtc.echo', `(() => { const m = new Uint8Array(${VALUE_BYTES}).fill(98); return () => new Promise(resolve => { window.benchEcho.waiting.push(resolve); window.benchEcho.dc.send(m) }) })()`)
    const put = await measure('tab.put', `(i => window.meshkv.peer.put('tabkv-' + i, new Uint8Array(${VALUE_BYTES}).fill(i & 255)))`)
    const get = await measure('tab.get', `(i => window.meshkv.peer.get('tabkv-' + ((i * 7919) % ${Math.max(1, put.ops)})))`)
    const extra = { inFlight: o.inFlight, seconds: o.seconds, valueBytes: VALUE_BYTES }
    emit({ suite: SUITE, metric: 'webrtc.echo.ops', value: echo.rate, unit: 'ops/s', errors: echo.errors, ...extra })
    emit({ suite: SUITE, metric: 'webrtc.echo.latency.p50', value: echo.p50, unit: 'ms', p99: echo.p99, ...extra })
    for (const [metric, r] of [['tab.put', put], ['tab.get', get]] as const) {
      emit({ suite: SUITE, metric: `${metric}.ops`, value: r.rate, unit: 'ops/s', baseline: echo.rate, baselineMetric: 'webrtc.echo.ops (raw data channel between the same tabs)', errors: r.errors, ...(r.firstError === undefined ? {} : { firstError: r.firstError }), ...extra })
      emit({ suite: SUITE, metric: `${metric}.latency.p50`, value: r.p50, unit: 'ms', baseline: echo.p50, baselineMetric: 'webrtc.echo.latency.p50', p99: r.p99, ...extra })
    }
    await a!.page.evaluate('window.benchEcho.pc.close()').catch(() => {})
    await mesh.close()
  } finally {
    offInterrupt()
    await cleanup()
  }
}
