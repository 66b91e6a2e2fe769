/**
 * Activity: every 2 s this tab asks a few up members for their figures (the info request, timed for the
 * latency column), at most ACTIVITY_SAMPLE_MAX per period in turn, so a tab's cost does not grow with the
 * mesh. A member whose figures stay the same is asked less and less often, down to once every
 * ACTIVITY_IDLE_GAP_MAX_MS, and any change puts it back to every period (sampling.ts): an idle mesh costs each
 * tab a few requests a minute. It plots, for the last 60 samples, operations per second and quorum latency
 * across the mesh, read repairs, hints pending and delivered, and anti-entropy repairs: each member's rates
 * come from its own last two samples, summed. The charts are redrawn only when a figure changed. A hidden tab
 * samples nothing and draws nothing (main.ts).
 */
import type { PeerInfo } from '../src/services/peer-info.js'
import type { MeshPeer as Peer } from '../src/peer.js'
import { $, el, svg } from './dom.js'
import type { MemberFigures } from './ring-view.js'
import { SampleSchedule } from './sampling.js'

export const ACTIVITY_PERIOD_MS = 2000
/** Members asked per period (besides this tab, whose figures need no request). */
export const ACTIVITY_SAMPLE_MAX = 3
/** Longest gap between two requests to a member whose figures do not change (an idle one). */
export const ACTIVITY_IDLE_GAP_MAX_MS = 30_000
const POINTS = 60

interface Series { label: string; unit: string; values: number[] }

/** A member's last sample and its counters' rates since the one before. */
interface Sampled {
  at: number
  info: PeerInfo
  rates: { ops: number; readRepairs: number; handedOff: number; syncRepairs: number }
}

export class ActivityView {
  private readonly sampled = new Map<string, Sampled>()
  private readonly schedule = new SampleSchedule({ periodMs: ACTIVITY_PERIOD_MS, perPeriod: ACTIVITY_SAMPLE_MAX, idleGapMaxMs: ACTIVITY_IDLE_GAP_MAX_MS })
  private samples = 0
  /** What the charts last showed, so an unchanged picture is not rebuilt. */
  private drawn = ''
  private readonly series: Series[] = [
    { label: 'operations', unit: '/s', values: [] },
    { label: 'latency p50', unit: 'ms', values: [] },
    { label: 'latency p99', unit: 'ms', values: [] },
    { label: 'read repairs', unit: '/s', values: [] },
    { label: 'hints pending', unit: '', values: [] },
    { label: 'hints delivered', unit: '/s', values: [] },
    { label: 'anti-entropy repairs', unit: '/s', values: [] }
  ]

  constructor (private readonly peer: Peer, private readonly figures: Map<string, MemberFigures>, private readonly onFigures: () => void) {}

  /** The members to ask this period: this tab, and those of the others that are due (sampling.ts). */
  private nextBatch (nowMs: number): string[] {
    const up = this.peer.members().filter(m => m.state === 'alive' || m.state === 'suspect').map(m => m.id).filter(id => id !== this.peer.id)
    const current = new Set(up)
    for (const id of [...this.sampled.keys()]) if (id !== this.peer.id && !current.has(id)) { this.sampled.delete(id); this.figures.delete(id) }
    return [this.peer.id, ...this.schedule.next(up, nowMs)]
  }

  /** One sample: asks this period's members (in parallel, 1.5 s limit each) and updates the charts. */
  async sample (): Promise<void> {
    await Promise.all(this.nextBatch(performance.now()).map(async id => {
      const start = performance.now()
      try {
        const info = await this.peer.info(id, { signal: AbortSignal.timeout(1500) })
        const now = performance.now()
        this.figures.set(id, { keys: info.keys, walBytes: info.walBytes, rttMs: now - start })
        const before = this.sampled.get(id)
        const changed = before === undefined || !sameFigures(before.info, info)
        if (id === this.peer.id) {
          if (changed) this.schedule.busy(now)
        } else this.schedule.answered(id, now, changed)
        const rate = (value: number, old: number | undefined): number => before === undefined || old === undefined ? 0 : Math.max(0, (value - old) * 1000 / (now - before.at))
        this.sampled.set(id, {
          at: now,
          info,
          rates: {
            ops: rate(info.ops, before?.info.ops),
            readRepairs: rate(info.stats.readRepairs, before?.info.stats.readRepairs),
            handedOff: rate(info.stats.handedOff, before?.info.stats.handedOff),
            syncRepairs: rate(info.stats.syncRepairs, before?.info.stats.syncRepairs)
          }
        })
      } catch {
        // Unanswered this time: its last figures stand until it answers or leaves; asked again next period.
        if (id !== this.peer.id) this.schedule.unanswered(id, performance.now())
      }
    }))
    this.onFigures()
    const all = [...this.sampled.values()]
    const busy = all.filter(s => s.info.latency.samples > 0)
    if (this.samples++ === 0) return
    this.push(0, sum(all, s => s.rates.ops))
    this.push(1, busy.length === 0 ? 0 : sum(busy, s => s.info.latency.p50) / busy.length)
    this.push(2, busy.length === 0 ? 0 : Math.max(...busy.map(s => s.info.latency.p99)))
    this.push(3, sum(all, s => s.rates.readRepairs))
    this.push(4, sum(all, s => s.info.stats.hintsPending))
    this.push(5, sum(all, s => s.rates.handedOff))
    this.push(6, sum(all, s => s.rates.syncRepairs))
    this.draw()
  }

  private push (index: number, value: number): void {
    const values = this.series[index]!.values
    values.push(value)
    if (values.length > POINTS) values.shift()
  }

  private draw (): void {
    // A series whose samples are all one value draws as a flat line however many there are: in an idle mesh
    // nothing is redrawn (the line's length catches up at the next change).
    const picture = this.series.map(s => s.values.every(v => v === s.values[0]) ? `flat ${s.values[0] ?? ''}` : s.values.join(',')).join(';')
    if (picture === this.drawn) return
    this.drawn = picture
    const charts = this.series.map(s => {
      const max = Math.max(1, ...s.values)
      const points = s.values.map((v, i) => `${(i * 120 / (POINTS - 1)).toFixed(1)},${(28 - v / max * 26).toFixed(1)}`).join(' ')
      const chart = svg('svg', { viewBox: '0 0 120 30', class: 'spark', preserveAspectRatio: 'none' })
      chart.append(svg('polyline', { points, fill: 'none' }))
      const last = s.values[s.values.length - 1] ?? 0
      return el('div', { class: 'chart', 'data-metric': s.label },
        el('div', { class: 'chart-label' }, `${s.label}: ${last < 10 && last % 1 !== 0 ? last.toFixed(2) : Math.round(last)}${s.unit === '' ? '' : ' ' + s.unit}`),
        chart)
    })
    $('activity').replaceChildren(...charts)
  }
}

/** Whether two answers of one member carry the same figures (what the charts and the ring show). */
function sameFigures (a: PeerInfo, b: PeerInfo): boolean {
  return a.ops === b.ops && a.keys === b.keys && a.walBytes === b.walBytes && a.latency.samples === b.latency.samples &&
    a.stats.readRepairs === b.stats.readRepairs && a.stats.handedOff === b.stats.handedOff &&
    a.stats.syncRepairs === b.stats.syncRepairs && a.stats.hintsPending === b.stats.hintsPending
}

function sum<T> (items: T[], f: (item: T) => number): number {
  let total = 0
  for (const item of items) total += f(item)
  return total
}
