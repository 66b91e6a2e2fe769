/**
 * Churn suite: write throughput and acknowledged-write safety while replica tabs come and go. Each phase
 * starts its own mesh — a bootstrap and a second Node peer (`node node/peer.js` children in fresh temporary
 * data directories, default settings: N=3, R=2, W=2, durable acks 1, sync durability) — and a new context of
 * one headless Chromium with `--tabs` replica tabs on the bootstrap's dashboard, all in one location (the
 * browser profile) and volatile. Once every peer and tab lists everyone alive, `--writers` closed-loop HTTP
 * writers put new keys (`PUT /kv/churn-<n>?w=2`, alternating between the two Node peers) for `--seconds`:
 *
 *   steady   no churn: the same-run baseline;
 *   churn    every `--period-ms` the next tab (round robin) is, alternately, closed (its normal pagehide leave
 *            runs) and replaced by a new page, or reloaded.
 *
 * After the writers stop, the browser context closes as in a crash (each tab's pagehide leave disabled: no
 * announcement, no handoff), and every acknowledged key is read back through both Node peers with R=1 and
 * R=2; what failed on that first pass is retried once a second for at most READ_RETRY_MS more.
 *
 *   writes.acked / writes.ops     acknowledged writes and their rate; the churn phase's rate has the steady
 *                                 phase's as baseline (target: ratio >= 0.5)
 *   writes.failed                 failed writes, by error code (HTTP JSON code, or FETCH_<error> for a
 *                                 request that got no answer within 30 s)
 *   write.latency.p50 / .p99      acknowledged writes, issue to 204 (churn against steady)
 *   writes.lost                   acknowledged keys some read never returned (target 0), with the reads that
 *                                 failed on the first pass (while the Node peers were noticing the tabs gone)
 *                                 and, of those, the ones that answered 404 or a wrong value instead of failing
 *   churn.actions                 tabs replaced and reloaded, and actions that failed
 *
 * Each phase begins with WARMUP_MS of the same writes, not measured (their keys are verified with the rest).
 * `--rounds=K` (1 to ROUNDS_MAX) runs K steady-then-churn pairs, each churn phase against the steady phase just
 * before it, and adds their median ratio (`writes.ops.ratio.median`): the machine's speed drifts by more than
 * the churn costs, so a pair measured minutes apart can say little on its own.
 * Flags take `--name=value`: --seconds=60 --writers=8 --tabs=4 --period-ms=5000 --rounds=1; --quick is 15 s
 * per phase.
 * Progress (stderr) every 5 s: acknowledged and failed writes of the last window. Nothing here fails the run
 * on a missed target: each figure says whether it met it. The children and the browser are stopped on the
 * way out, also on SIGINT/SIGTERM. Needs `npm run build` (the children and the dashboard run from dist/).
 */
import * as fs from 'node:fs'
import type { Browser } from '@playwright/test'
import { launchChromium } from './browser.js'
import { peerGroup } from '../test/helpers/peers.js'
import { type WriterRun, churnTabs, diagnose, disableLeave, percentile, runWriters, startTabMesh, summarize, verifyReads } from '../test/helpers/tab-mesh.js'
import { onInterrupt } from './proc.js'
import { emit, progress } from './report.js'

const SUITE = 'churn'
const CONVERGE_MS = 90_000
const READ_RETRY_MS = 60_000
const READ_CONCURRENCY = 64
const PROGRESS_MS = 5000
const WARMUP_MS = 5000
const THROUGHPUT_RATIO_TARGET = 0.5
const ROUNDS_MAX = 9

interface Options { seconds: number; writers: number; tabs: number; periodMs: number; rounds: number }

function parseFlags (flags: string[]): Options {
  const quick = flags.includes('--quick')
  const o: Options = { seconds: quick ? 15 : 60, writers: 8, tabs: 4, periodMs: 5000, rounds: 1 }
  const names: Record<string, keyof Options> = { seconds: 'seconds', writers: 'writers', tabs: 'tabs', 'period-ms': 'periodMs', rounds: 'rounds' }
  for (const flag of flags) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(flag)
    if (m === null || m[1] === 'quick') continue
    const name = names[m[1]!]
    if (name === undefined) throw new Error(`unknown flag ${flag}; known: --quick ${Object.keys(names).map(n => `--${n}=`).join(' ')}`)
    const n = Number(m[2])
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer`)
    if (name === 'rounds' && n > ROUNDS_MAX) throw new Error(`${flag}: at most ${ROUNDS_MAX} rounds`)
    o[name] = n
  }
  return o
}

interface PhaseResult { name: string; run: WriterRun; rate: number; p50: number; p99: number; lostKeys: number; firstPassFailed: number; reads: number }

export async function run (flags: string[]): Promise<void> {
  if (!fs.existsSync('dist/src/cli/peer-cli.js') || !fs.existsSync('dist/web/index.html')) throw new Error('the peers and the dashboard run from dist/: run `npm run build` first')
  const o = parseFlags(flags)
  progress(`${SUITE}: 2 Node peers, ${o.tabs} replica tabs in one browser context, ${o.writers} writers (W=2) for ${o.seconds} s per phase; churn: a tab replaced or reloaded every ${o.periodMs} ms; ${o.rounds} round(s) of steady then churn`)
  const group = peerGroup('meshkv-bench-churn-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws'])
  const controller = new AbortController()
  let browser: Browser | null = null
  let cleaning: Promise<void> | null = null
  const cleanup = async (): Promise<void> => {
    cleaning ??= (async () => {
      await browser?.close().catch(() => {})
      await group.stopAll()
    })()
    await cleaning
  }
  const offInterrupt = onInterrupt(cleanup, signal => { controller.abort(new Error(`interrupted by ${signal}`)) })
  try {
    const launched = await launchChromium()
    browser = launched.browser
    progress(launched.description)
    const ratios: number[] = []
    let lost = 0
    for (let round = 1; round <= o.rounds; round++) {
      const steady = await phase(browser, group, o, round, null, controller.signal)
      const churn = await phase(browser, group, o, round, steady, controller.signal)
      const ratio = churn.rate / steady.rate
      ratios.push(ratio)
      lost += steady.lostKeys + churn.lostKeys
      emit({ suite: SUITE, metric: 'writes.ops.ratio', value: ratio, unit: 'ratio', phase: 'churn/steady', ...(o.rounds === 1 ? {} : { round }), target: THROUGHPUT_RATIO_TARGET, met: ratio >= THROUGHPUT_RATIO_TARGET })
      progress(`throughput under churn${o.rounds === 1 ? '' : ` (round ${round} of ${o.rounds})`}: ${churn.rate.toFixed(1)}/s vs ${steady.rate.toFixed(1)}/s without (ratio ${ratio.toFixed(2)}, target >= ${THROUGHPUT_RATIO_TARGET}); lost: ${steady.lostKeys} + ${churn.lostKeys} keys (target 0)`)
    }
    if (o.rounds > 1) {
      const sorted = [...ratios].sort((x, y) => x - y)
      const mid = Math.floor(sorted.length / 2)
      const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
      emit({ suite: SUITE, metric: 'writes.ops.ratio.median', value: median, unit: 'ratio', phase: 'churn/steady', rounds: o.rounds, ratios: ratios.map(r => Math.round(r * 1000) / 1000), lostKeys: lost, target: THROUGHPUT_RATIO_TARGET, met: median >= THROUGHPUT_RATIO_TARGET })
      progress(`throughput under churn over ${o.rounds} rounds: ratios ${ratios.map(r => r.toFixed(2)).join(', ')}, median ${median.toFixed(2)} (target >= ${THROUGHPUT_RATIO_TARGET}); lost: ${lost} keys (target 0)`)
    }
  } finally {
    offInterrupt()
    await cleanup()
  }

  /** One phase of `round` in a fresh mesh: churning when it has the steady phase to compare with (`steady`). */
  async function phase (browser: Browser, group: ReturnType<typeof peerGroup>, o: Options, round: number, steady: PhaseResult | null, signal: AbortSignal): Promise<PhaseResult> {
    const churning = steady !== null
    const kind = churning ? 'churn' : 'steady'
    const name = o.rounds === 1 ? kind : `${kind}-${round}`
    progress(`phase ${name}: starting 2 Node peers and ${o.tabs} tabs`)
    const t0 = performance.now()
    const mesh = await startTabMesh(browser, group, name, o.tabs, CONVERGE_MS, line => { progress(`  ${line.split('\n')[0]}`) })
    const { boot, node, peers, context, tabs, everyone } = mesh
    try {
      progress(`phase ${name}: ${everyone.length} members alive everywhere after ${((performance.now() - t0) / 1000).toFixed(1)} s; ${WARMUP_MS / 1000} s of warm-up writes (not measured), then writing for ${o.seconds} s`)
      // Warm-up: the first seconds after the tabs join are slower in both phases (connections, the dashboard's
      // first samples); its keys are verified with the rest but not counted in the figures.
      const warmup = await runWriters([boot.http, node.http], { writers: o.writers, durationMs: WARMUP_MS, prefix: `${name}-warmup-`, w: 2, valueOf: key => `${key} ${'x'.repeat(64)}`, signal })

      let windowAcked = 0
      let windowFailed = 0
      let windowMax = 0
      const ticker = setInterval(() => {
        progress(`  ${name}: ${(windowAcked / (PROGRESS_MS / 1000)).toFixed(0)} acked/s, ${windowFailed} failed, slowest ${Math.round(windowMax)} ms`)
        windowAcked = 0; windowFailed = 0; windowMax = 0
      }, PROGRESS_MS)
      const durationMs = o.seconds * 1000
      let run: WriterRun
      let actions = { replaced: 0, reloaded: 0, failed: 0 }
      try {
        const writing = runWriters([boot.http, node.http], {
          writers: o.writers,
          durationMs,
          prefix: `${name}-churn-`,
          w: 2,
          valueOf: key => `${key} ${'x'.repeat(64)}`,
          signal,
          onResult: out => { if (out.ok) windowAcked++; else windowFailed++; windowMax = Math.max(windowMax, out.ms) }
        })
        const churn = churning ? churnTabs(context, boot.http, tabs, { periodMs: o.periodMs, durationMs, log: line => { progress(`  ${line}`) }, signal }) : Promise.resolve(actions)
        ;[run, actions] = await Promise.all([writing, churn])
      } finally {
        clearInterval(ticker)
      }
      const rate = run.acked.size / (run.elapsedMs / 1000)
      const p50 = percentile(run.latencies, 0.5)
      const p99 = percentile(run.latencies, 0.99)
      const failed = Object.values(run.failures).reduce((a, b) => a + b, 0)
      progress(`phase ${name}: ${run.acked.size} of ${run.attempted} writes acknowledged in ${(run.elapsedMs / 1000).toFixed(1)} s (${rate.toFixed(1)}/s, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms); failed: ${JSON.stringify(run.failures)}`)

      // The tabs vanish as in a browser crash; then every acknowledged key must read back from the Node peers.
      let disabled = 0
      for (const t of tabs) if (!t.page.isClosed() && await disableLeave(t.page)) disabled++
      await mesh.closeContext()
      const expected = new Map([...warmup.acked, ...run.acked])
      progress(`phase ${name}: browser context closed (${disabled} tabs without their leave); reading ${expected.size} keys (warm-up included) back through both Node peers, r=1 and r=2`)
      const r0 = performance.now()
      const check = await verifyReads(peers, expected, [1, 2], {
        concurrency: READ_CONCURRENCY,
        retryForMs: READ_RETRY_MS,
        onPass: (pass, failing) => { progress(`  read pass ${pass}: ${failing} failing after ${((performance.now() - r0) / 1000).toFixed(1)} s`) }
      })
      const lostKeys = new Set(check.remaining.map(f => f.key)).size
      if (check.wrongAnswers.length > 0) progress(`phase ${name}: WARNING: ${check.wrongAnswers.length} first-pass reads answered 404 or a wrong value for acknowledged keys: ${check.wrongAnswers.slice(0, 5).map(f => `${f.key} via ${f.peer.slice(-8)} r=${f.r}: ${f.status}`).join('; ')}`)
      if (check.remaining.length > 0) progress(`phase ${name}: keys that never read back:\n${await diagnose(peers, check.remaining)}`)

      const extra = { phase: kind, ...(o.rounds === 1 ? {} : { round }), writers: o.writers, tabs: o.tabs, seconds: o.seconds, ...(churning ? { periodMs: o.periodMs } : {}) }
      emit({ suite: SUITE, metric: 'writes.acked', value: run.acked.size, unit: 'writes', attempted: run.attempted, warmupAcked: warmup.acked.size, warmupFailed: warmup.failures, ...extra })
      emit({ suite: SUITE, metric: 'writes.ops', value: rate, unit: 'ops/s', ...(steady === null ? {} : { baseline: steady.rate, baselineMetric: 'writes.ops (steady)', target: THROUGHPUT_RATIO_TARGET, met: rate / steady.rate >= THROUGHPUT_RATIO_TARGET }), ...extra })
      emit({ suite: SUITE, metric: 'writes.failed', value: failed, unit: 'writes', byCode: run.failures, ...extra })
      emit({ suite: SUITE, metric: 'write.latency.p50', value: p50, unit: 'ms', ...(steady === null ? {} : { baseline: steady.p50, baselineMetric: 'write.latency.p50 (steady)' }), ...extra })
      emit({ suite: SUITE, metric: 'write.latency.p99', value: p99, unit: 'ms', ...(steady === null ? {} : { baseline: steady.p99, baselineMetric: 'write.latency.p99 (steady)' }), ...extra })
      emit({ suite: SUITE, metric: 'writes.lost', value: lostKeys, unit: 'keys', target: 0, met: lostKeys === 0, reads: check.reads, firstPassFailedReads: check.firstPass.length, firstPassWrongAnswers: check.wrongAnswers.length, firstPass: summarize(check.firstPass), remaining: summarize(check.remaining), readPasses: check.passes, readMs: Math.round(check.ms), firstPassMs: Math.round(check.firstPassMs), firstPassReadP50Ms: Math.round(check.firstPassLatency.p50), firstPassReadMaxMs: Math.round(check.firstPassLatency.max), ...extra })
      if (churning) emit({ suite: SUITE, metric: 'churn.actions', value: actions.replaced + actions.reloaded, unit: 'actions', replaced: actions.replaced, reloaded: actions.reloaded, failed: actions.failed, ...extra })
      progress(`phase ${name}: lost ${lostKeys} keys; ${check.firstPass.length} of ${check.reads} reads failed on the first pass (${summarize(check.firstPass)}), ${check.remaining.length} still failing after ${check.passes} passes in ${(check.ms / 1000).toFixed(1)} s; phase took ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      return { name, run, rate, p50, p99, lostKeys, firstPassFailed: check.firstPass.length, reads: check.reads }
    } finally {
      await mesh.close()
    }
  }
}
