/**
 * Activity: every 2 s this tab asks each up member for its figures (the info request, timed for the
 * latency column) and plots, for the last 60 samples, operations per second and quorum latency across the
 * mesh, read repairs, hints pending and delivered, and anti-entropy repairs.
 */
import type { PeerInfo } from '../src/services/peer-info.js'
import type { Peer } from '../src/peer.js'
import { $, el, svg } from './dom.js'
import type { MemberFigures } from './ring-view.js'

export const ACTIVITY_PERIOD_MS = 2000
const POINTS = 60

interface Series { label: string; unit: string; values: number[] }

export class ActivityView {
  private previous: { at: number; totals: Record<string, number> } | null = null
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

  /** One sample: asks every up member (in parallel, 1.5 s limit each) and updates the charts. */
  async sample (): Promise<void> {
    const up = this.peer.members().filter(m => m.state === 'alive' || m.state === 'suspect')
    const infos = await Promise.all(up.map(async m => {
      const start = performance.now()
      try {
        const info = await this.peer.info(m.id, { signal: AbortSignal.timeout(1500) })
        this.figures.set(m.id, { keys: info.keys, walBytes: info.walBytes, rttMs: performance.now() - start })
        return info
      } catch {
        return null
      }
    }))
    this.onFigures()
    const got = infos.filter((i): i is PeerInfo => i !== null)
    const totals = {
      ops: sum(got, i => i.ops),
      readRepairs: sum(got, i => i.stats.readRepairs),
      handedOff: sum(got, i => i.stats.handedOff),
      syncRepairs: sum(got, i => i.stats.syncRepairs)
    }
    const now = performance.now()
    if (this.previous !== null) {
      const seconds = (now - this.previous.at) / 1000
      const rate = (name: keyof typeof totals): number => Math.max(0, (totals[name] - (this.previous!.totals[name] ?? 0)) / seconds)
      const busy = got.filter(i => i.latency.samples > 0)
      this.push(0, rate('ops'))
      this.push(1, busy.length === 0 ? 0 : sum(busy, i => i.latency.p50) / busy.length)
      this.push(2, busy.length === 0 ? 0 : Math.max(...busy.map(i => i.latency.p99)))
      this.push(3, rate('readRepairs'))
      this.push(4, sum(got, i => i.stats.hintsPending))
      this.push(5, rate('handedOff'))
      this.push(6, rate('syncRepairs'))
      this.draw()
    }
    this.previous = { at: now, totals }
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
