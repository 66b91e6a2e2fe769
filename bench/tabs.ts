/**
 * Tabs suite: what idle tabs cost. For each tab count of `--tabs` (default 2 and 8), a fresh mesh — a
 * bootstrap and a second Node peer (`node node/peer.js` children in temporary data directories, default
 * settings) — and a new context of one headless Chromium with that many full-replica tabs on the
 * bootstrap's dashboard (visible, as a person looking at them: the worst case). Once every peer and tab lists
 * everyone alive, the mesh warms up for `--warmup` seconds (default 60), then idles for `--seconds` (default
 * 60), with no requests at all:
 *
 *   idle.cpu.per_tab         CPU of every Chromium process (browser, renderers, utility) over the first
 *                            MEASURE_S seconds after the warm-up, in cores, divided by the tab count;
 *                            target <= 0.03, and the figure with the most tabs within 1.5x of the one with
 *                            the fewest (the baseline, measured in the same run)
 *   idle.cpu.per_tab.warmup  the same over the first MEASURE_S seconds of the warm-up (no target): a page's
 *                            first minute costs more while V8 compiles its hot code on the renderer's thread
 *                            pool, new WebRTC connections settle and discovery answers the joins; measured
 *                            here with 8 tabs, 0.054-0.064 cores per tab against 0.022-0.028 idle
 *   idle.cpu.node            the two Node peers' CPU over the idle measurement, in cores
 *   idle.non_alive           state changes to anything but alive seen during the idle window (after the
 *                            warm-up), by the Node peers (their log lines) and by every tab (its member
 *                            events); target 0
 *   idle.non_alive.warmup    the same during the warm-up (no target); the likely cause of those seen (not
 *                            proven): a tab's first probe of a member it has no connection to yet waits
 *                            for a WebRTC dial through a relay, which can outlast the probe timeout
 *
 * Flags take `--name=value`: --tabs=2,8 --seconds=60 --warmup=60; --quick is 2 and 4 tabs, 20 s each.
 * Progress on stderr. Nothing fails the run on a missed target: each figure says whether it met it. Needs
 * `npm run build`.
 */
import * as fs from 'node:fs'
import type { Browser } from '@playwright/test'
import { peerGroup } from '../test/helpers/peers.js'
import { type Tab, startTabMesh } from '../test/helpers/tab-mesh.js'
import type { MeshWindow } from '../test/helpers/tabs.js'
import { browserCpuSeconds, launchChromium, treeCpuSeconds } from './browser.js'
import { emit, progress } from './report.js'

const SUITE = 'tabs'
const CONVERGE_MS = 120_000
const MEASURE_S = 30
const PER_TAB_TARGET = 0.03
const GROWTH_TARGET = 1.5

interface Options { tabs: number[]; seconds: number; warmup: number }

function parseFlags (flags: string[]): Options {
  const quick = flags.includes('--quick')
  const o: Options = { tabs: quick ? [2, 4] : [2, 8], seconds: quick ? 20 : 60, warmup: quick ? 20 : 60 }
  for (const flag of flags) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(flag)
    if (m === null || m[1] === 'quick') continue
    if (m[1] === 'tabs') {
      o.tabs = (m[2] ?? '').split(',').map(Number)
      if (o.tabs.length === 0 || o.tabs.some(n => !Number.isInteger(n) || n < 1 || n > 32)) throw new Error(`${flag}: expected tab counts in [1, 32], e.g. --tabs=2,8`)
    } else if (m[1] === 'seconds' || m[1] === 'warmup') {
      const value = Number(m[2])
      const least = m[1] === 'seconds' ? 5 : 0
      if (!Number.isInteger(value) || value < least || value > 3600) throw new Error(`${flag}: expected whole seconds in [${least}, 3600]`)
      o[m[1]] = value
    } else throw new Error(`unknown flag ${flag}; known: --quick --tabs=<n,n,...> --seconds=<s> --warmup=<s>`)
  }
  return o
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** The page's member events to a state other than alive since the last call (the first call starts counting). */
async function takeNonAlive (page: Tab['page']): Promise<string[]> {
  return await page.evaluate(() => {
    const w = window as unknown as { meshkvNonAlive?: string[] }
    const seen = w.meshkvNonAlive ?? []
    w.meshkvNonAlive = []
    return seen
  })
}

/** Counts, in the page, member events to a state other than alive from now on (read with takeNonAlive). */
async function countNonAlive (page: Tab['page']): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as MeshWindow & { meshkvNonAlive?: string[] }
    w.meshkvNonAlive = []
    w.meshkv.peer.on('member', e => { if (e.member.state !== 'alive') w.meshkvNonAlive!.push(`${e.member.id.slice(-6)} ${e.member.state}`) })
  })
}

export async function run (flags: string[]): Promise<void> {
  if (!fs.existsSync('dist/src/cli/peer-cli.js') || !fs.existsSync('dist/web/index.html')) throw new Error('the peers and the dashboard run from dist/: run `npm run build` first')
  const o = parseFlags(flags)
  const measureS = Math.min(MEASURE_S, o.seconds)
  progress(`${SUITE}: 2 Node peers and ${o.tabs.join(' / ')} idle full-replica tabs; ${o.warmup} s warm-up, then ${o.seconds} s idle: CPU over its first ${measureS} s, liveness over all of it`)
  const group = peerGroup('meshkv-bench-tabs-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws'])
  let browser: Browser | null = null
  const cleanup = async (): Promise<void> => {
    await browser?.close().catch(() => {})
    await group.stopAll()
  }
  const onSignal = (signal: NodeJS.Signals): void => { void cleanup().finally(() => { process.exit(signal === 'SIGINT' ? 130 : 143) }) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const launched = await launchChromium()
    browser = launched.browser
    progress(launched.description)
    let baseline: { tabs: number; perTab: number } | null = null
    for (const count of o.tabs) {
      const perTab = await phase(browser, count)
      if (baseline === null) baseline = { tabs: count, perTab }
      else {
        const ratio = perTab / baseline.perTab
        emit({ suite: SUITE, metric: 'idle.cpu.per_tab.growth', value: perTab, unit: 'cores', tabs: count, baseline: baseline.perTab, baselineMetric: `idle.cpu.per_tab with ${baseline.tabs} tabs`, target: GROWTH_TARGET, met: ratio <= GROWTH_TARGET })
        progress(`per-tab cost with ${count} tabs is ${ratio.toFixed(2)}x the cost with ${baseline.tabs} (target <= ${GROWTH_TARGET})`)
      }
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanup()
  }

  async function phase (browser: Browser, count: number): Promise<number> {
    const name = `tabs${count}`
    const t0 = performance.now()
    const mesh = await startTabMesh(browser, group, name, count, CONVERGE_MS, line => { progress(`  ${line.split('\n')[0]}`) })
    const { peers, tabs } = mesh
    try {
      progress(`${name}: ${mesh.everyone.length} members alive everywhere after ${((performance.now() - t0) / 1000).toFixed(1)} s; warming up ${o.warmup} s`)
      for (const t of tabs) await countNonAlive(t.page)
      const lines0 = peers.map(p => p.output.length)
      const warmStart = performance.now()
      const cpuNow = (): { browser: number; node: number; at: number } => ({ browser: browserCpuSeconds(), node: peers.reduce((a, p) => a + treeCpuSeconds(p.proc.pid!), 0), at: performance.now() })
      /** Chromium's and the Node peers' cores over the next `seconds`. */
      const measure = async (seconds: number): Promise<{ browserCores: number; nodeCores: number; seconds: number }> => {
        const cpu0 = cpuNow()
        await sleep(seconds * 1000)
        const cpu1 = cpuNow()
        const s = (cpu1.at - cpu0.at) / 1000
        return { browserCores: (cpu1.browser - cpu0.browser) / s, nodeCores: (cpu1.node - cpu0.node) / s, seconds: s }
      }
      const warm = o.warmup === 0 ? null : await measure(Math.min(measureS, o.warmup))
      await sleep(Math.max(0, o.warmup * 1000 - (performance.now() - warmStart)))
      /** The Node peers' log lines of a state other than alive, between two points of their output. */
      const peerNonAlive = (from: number[], to?: number[]): string[] => peers.flatMap((p, i) => p.output.slice(from[i], to?.[i]).filter(l => / -> (suspect|dead|left) /.test(l)))
      const linesIdle = peers.map(p => p.output.length)
      const warmNonAlive = peerNonAlive(lines0, linesIdle)
      for (const t of tabs) warmNonAlive.push(...await takeNonAlive(t.page))
      const idleStart = performance.now()
      const { browserCores, nodeCores, seconds } = await measure(measureS)
      const perTab = browserCores / count
      await sleep(Math.max(0, o.seconds * 1000 - (performance.now() - idleStart)))
      const fromPeers = peerNonAlive(linesIdle)
      const fromTabs: string[] = []
      for (const t of tabs) fromTabs.push(...await takeNonAlive(t.page))
      const extra = { tabs: count, nodePeers: 2, seconds: Math.round(seconds) }
      if (warm !== null) emit({ suite: SUITE, metric: 'idle.cpu.per_tab.warmup', value: warm.browserCores / count, unit: 'cores', browserCores: warm.browserCores, nodeCores: warm.nodeCores, tabs: count, nodePeers: 2, seconds: Math.round(warm.seconds) })
      emit({ suite: SUITE, metric: 'idle.cpu.per_tab', value: perTab, unit: 'cores', browserCores, target: PER_TAB_TARGET, met: perTab <= PER_TAB_TARGET, warmupSeconds: o.warmup, ...extra })
      emit({ suite: SUITE, metric: 'idle.cpu.node', value: nodeCores, unit: 'cores', ...extra })
      if (o.warmup > 0) emit({ suite: SUITE, metric: 'idle.non_alive.warmup', value: warmNonAlive.length, unit: 'changes', warmupSeconds: o.warmup, seen: warmNonAlive.slice(0, 10), tabs: count })
      emit({ suite: SUITE, metric: 'idle.non_alive', value: fromPeers.length + fromTabs.length, unit: 'changes', idleSeconds: o.seconds, fromNodePeers: fromPeers.slice(0, 10), fromTabs: fromTabs.slice(0, 10), target: 0, met: fromPeers.length + fromTabs.length === 0, tabs: count })
      progress(`${name}: ${warm === null ? '' : `warm-up ${(warm.browserCores / count).toFixed(4)} cores per tab; `}idle: Chromium ${browserCores.toFixed(3)} cores = ${perTab.toFixed(4)} per tab (target <= ${PER_TAB_TARGET}); Node peers ${nodeCores.toFixed(3)} cores; ${fromPeers.length + fromTabs.length} non-alive states in ${o.seconds} s idle (${warmNonAlive.length} in the warm-up)`)
      return perTab
    } finally {
      await mesh.close()
    }
  }
}
