/**
 * SWIM suite, on the deterministic simulator (test/sim) with the default (LAN) configuration and 1-5 ms
 * one-way delays, for 10, 100 and 1,000 members:
 *
 *   swim.detect.first     time from a crash until the first member suspects it
 *   swim.detect.all       time from a crash until every survivor has declared it dead (full dissemination)
 *   swim.falsePositives   live members declared dead by anyone in 60 probe periods at 10% message loss
 *   swim.messages         messages sent per member per probe period in a quiet cluster
 *
 * Times are simulated milliseconds (the protocol's own behaviour, independent of this machine's speed); each
 * detection figure is reported with `bound`, the worst case the configuration implies.
 */
import { defaultSwimConfig, detectionBoundMs } from '../src/core/membership/config.js'
import { SimCluster } from '../test/sim/cluster.js'
import { emit, median, progress } from './report.js'

const SUITE = 'swim'

function percentile (values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!
}

async function measure (size: number, trials: number, seed: number, quick: boolean): Promise<void> {
  const config = defaultSwimConfig()
  progress(`${size} members: forming the cluster (seed ${seed})`)
  const started = performance.now()
  const form = (s: number): SimCluster => {
    const c = SimCluster.formed({ seed: s, size, config, delayMs: [1, 5] })
    c.run(30 * config.probeIntervalMs) // let the join news die down before measuring anything
    return c
  }
  let sim = form(seed)

  const periods = 20
  const before = sim.messages
  sim.run(sim.now + periods * config.probeIntervalMs)
  const perMember = (sim.messages - before) / size / periods
  let backlog = 0
  for (const node of sim.nodes.values()) backlog += node.swim.pendingUpdates

  const first: number[] = []
  const all: number[] = []
  for (let t = 0; t < trials; t++) {
    // Crashes accumulate; start over on a fresh cluster before a tenth of it is gone.
    if (sim.upIds().length < size * 0.9) sim = form(seed + 1000 * (t + 1))
    const alive = sim.upIds()
    const victim = alive[Math.floor(sim.rng.next() * alive.length)]!
    sim.crash(victim)
    const crashedAt = sim.now
    const from = sim.changes.length
    const survivors = sim.upIds()
    sim.runUntil(() => survivors.every(o => sim.stateOf(o, victim) === 'dead'), 10 * detectionBoundMs(config, size), `${size} members, seed ${seed}: detection`)
    const firstSuspect = sim.changes.slice(from).find(c => c.id === victim && c.state === 'suspect')
    first.push((firstSuspect?.at ?? sim.now) - crashedAt)
    all.push(sim.now - crashedAt)
    sim.run(sim.now + 5 * config.probeIntervalMs)
  }
  const bound = detectionBoundMs(config, size)
  emit({ suite: SUITE, metric: 'swim.detect.first.p50', value: median(first), unit: 'ms', members: size, trials, seed })
  emit({ suite: SUITE, metric: 'swim.detect.first.p99', value: percentile(first, 0.99), unit: 'ms', members: size, trials, seed })
  emit({ suite: SUITE, metric: 'swim.detect.all.p50', value: median(all), unit: 'ms', members: size, trials, seed, bound })
  emit({ suite: SUITE, metric: 'swim.detect.all.p99', value: percentile(all, 0.99), unit: 'ms', members: size, trials, seed, bound })
  // With 1,000 members the join news of a freshly formed cluster is still spreading after the warm-up
  // (backlogPerMember > 0): the figure then includes that gossip, not just probing.
  emit({ suite: SUITE, metric: 'swim.messages', value: perMember, unit: 'messages/member/period', members: size, seed, backlogPerMember: Math.round(backlog / size) })

  // False positives: a fresh cluster with 10% loss for 60 periods (20 at 1,000 members to bound the run).
  const lossPeriods = size >= 1000 || quick ? 20 : 60
  const lossy = SimCluster.formed({ seed: seed + 1, size, config, delayMs: [1, 5] })
  lossy.run(30 * config.probeIntervalMs)
  lossy.loss = 0.1
  const mark = lossy.changes.length
  lossy.run(lossy.now + lossPeriods * config.probeIntervalMs)
  const falsePositives = lossy.changes.slice(mark).filter(c => c.state === 'dead').length
  emit({ suite: SUITE, metric: 'swim.falsePositives', value: falsePositives, unit: 'dead declarations', members: size, loss: 0.1, periods: lossPeriods, seed: seed + 1 })
  progress(`${size} members done in ${((performance.now() - started) / 1000).toFixed(1)} s of real time`)
}

export async function run (flags: string[]): Promise<void> {
  const quick = flags.includes('--quick')
  await measure(10, quick ? 5 : 20, 1, quick)
  await measure(100, quick ? 3 : 10, 2, quick)
  await measure(1000, quick ? 1 : 3, 3, quick)
}
