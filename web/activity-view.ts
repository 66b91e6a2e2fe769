/**
 * Activity: every 2 s this tab asks a few up members for their figures (the info request, timed for the
 * latency column), ACTIVITY_SAMPLE_MAX per period in turn, so a tab's cost does not grow with the mesh:
 * each member's figures are at most ceil(n / ACTIVITY_SAMPLE_MAX) periods old. It plots, for the last 60
 * samples, operations per second and quorum latency across the mesh, read repairs, hints pending and
 * delivered, and anti-entropy repairs: each member's rates come from its own last two samples, summed. A
 * hidden tab samples nothing and draws nothing (main.ts).
 */
import type { PeerInfo } from '../src/services/peer-info.js'
import type { MeshPeer as Peer } from '../src/peer.js'
import { $, el, svg } from './dom.js'
import type { MemberFigures } from './ring-view.js'

export const ACTIVITY_PERIOD_MS = 2000
/** Members asked per period (besides this tab, whose figures need no request). */
export const ACTIVITY_SAMPLE_MAX = 3
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
  private cursor = 0
  private samples = 0
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

  /** The members to ask this period: this tab, and the next ACTIVITY_SAMPLE_MAX others in turn. */
  private nextBatch (): string[] {
    const up = this.peer.members().filter(m => m.state === 'alive' || m.state === 'suspect').map(m => m.id).filter(id => id !== this.peer.id).sort()
    for (const id of [...this.sampled.keys()]) if (id !== this.peer.id && !up.includes(id)) { this.sampled.delete(id); this.figures.delete(id) }
    const batch = [this.peer.id]
    for (let i = 0; i < Math.min(ACTIVITY_SAMPLE_MAX, up.length); i++) batch.push(up[(this.cursor + i) % up.length]!)
    this.cursor = up.length === 0 ? 0 : (this.cursor + ACTIVITY_SAMPLE_MAX) % up.length
    return batch
  }

  /** One sample: asks this period's members (in parallel, 1.5 s limit each) and updates the charts. */
  async sample (): Promise<void> {
    await Promise.all(this.nextBatch().map(async id => {
      const start = performance.now()
      try {
        const info = await this.peer.info(id, { signal: AbortSignal.timeout(1500) })
        const now = performance.now()
        this.figures.set(id, { keys: info.keys, walBytes: info.walBytes, rttMs: now - start })
        const before = this.sampled.get(id)
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
        // Unanswered this time: its last figures stand until it answers or leaves.
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

function sum<T> (items: T[], f: (item: T) => number): number {
  let total = 0
  for (const item of items) total += f(item)
  return total
}
