/**
 * The ring: every member's vnode arcs in its colour (a key in an arc belongs first to that arc's member),
 * this tab's arcs marked by an outer band, members' states shown on their arcs (suspect faded, dead dashed,
 * left grey) and in the table below, with each member's share of the ring and of the 1024 segments. Hovering
 * a member's arc or row shows its figures.
 */
import type { MemberView } from '../src/core/membership/swim.js'
import { RING_SIZE, type Ring, SEGMENT_COUNT, segmentRange } from '../src/core/ring/ring.js'
import type { MeshPeer as Peer } from '../src/peer.js'
import { $, bytesText, colourOf, el, shortId, svg } from './dom.js'

export interface MemberFigures {
  keys: number
  walBytes: number
  /** Round trip of the info request from this tab, ms. */
  rttMs: number
}

const SIZE = 320
const CENTRE = SIZE / 2
const RADIUS = 130
const BAND = 18

function point (position: number, radius: number): [number, number] {
  const angle = (position / RING_SIZE) * 2 * Math.PI - Math.PI / 2
  return [CENTRE + radius * Math.cos(angle), CENTRE + radius * Math.sin(angle)]
}

function arcPath (from: number, to: number, radius: number): string {
  const [x1, y1] = point(from, radius)
  const [x2, y2] = point(to, radius)
  const large = (to - from) / RING_SIZE > 0.5 ? 1 : 0
  return `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${radius} ${radius} 0 ${large} 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`
}

export class RingView {
  private ring: Ring | null = null
  private drawnRing: Ring | null = null
  private drawn = ''
  private segmentsOwned = new Map<string, number>()
  private hovered: string | null = null
  private keyPosition: number | null = null
  private readonly rows = new Map<string, HTMLTableRowElement>()
  private sortedIds: string[] = []
  readonly figures = new Map<string, MemberFigures>()

  constructor (private readonly peer: Peer) {
    $('ring-tooltip').hidden = true
  }

  markKey (position: number | null): void {
    this.keyPosition = position
    this.render()
  }

  render (): void {
    const ring = this.peer.ring()
    if (ring !== this.ring) {
      this.ring = ring
      this.segmentsOwned = new Map()
      const n = this.peer.store.config.n
      for (let s = 0; s < SEGMENT_COUNT; s++) {
        for (const id of ring.primaries(segmentRange(s)[0], n)) this.segmentsOwned.set(id, (this.segmentsOwned.get(id) ?? 0) + 1)
      }
    }
    const members = this.peer.members()
    this.sortedIds = members.map(m => m.id).sort()
    const states = new Map(members.map(m => [m.id, m.state]))
    // The ring is hundreds of SVG arcs: redrawn only when what it shows changed (members, states, the key
    // mark), not for every new figure.
    const drawn = `${members.map(m => `${m.id}:${m.state}`).join(',')}|${String(this.keyPosition)}`
    if (ring !== this.drawnRing || drawn !== this.drawn) {
      this.drawnRing = ring
      this.drawn = drawn
      this.drawRing(ring, states)
    }
    this.drawTable(members, ring)
    this.drawTooltip(members)
  }

  private drawRing (ring: Ring, states: Map<string, string>): void {
    const root = svg('svg', { viewBox: `0 0 ${SIZE} ${SIZE}`, role: 'img', 'aria-label': 'the ring' })
    root.append(svg('circle', { cx: CENTRE, cy: CENTRE, r: RADIUS, class: 'track' }))
    const tokens = ring.tokenList()
    // Consecutive tokens of one member make one arc.
    const arcs: Array<{ id: string; from: number; to: number }> = []
    for (let i = 0; i < tokens.length; i++) {
      const [position, id] = tokens[i]!
      const from = i === 0 ? tokens[tokens.length - 1]![0] - RING_SIZE : tokens[i - 1]![0]
      const last = arcs[arcs.length - 1]
      if (last !== undefined && last.id === id) last.to = position
      else arcs.push({ id, from, to: position })
    }
    for (const arc of arcs) {
      const state = states.get(arc.id) ?? 'unknown'
      const pieces: Array<[number, number]> = arc.from < 0 ? [[arc.from + RING_SIZE, RING_SIZE - 1], [0, arc.to]] : [[arc.from, arc.to]]
      for (const [from, to] of pieces) {
        const path = svg('path', { d: arcPath(from, to, RADIUS), class: `arc ${state}${arc.id === this.hovered ? ' hovered' : ''}`, stroke: colourOf(arc.id, this.sortedIds), 'stroke-width': BAND, fill: 'none', 'data-id': arc.id })
        path.addEventListener('mouseenter', () => { this.hover(arc.id) })
        path.addEventListener('mouseleave', () => { this.hover(null) })
        root.append(path)
        if (arc.id === this.peer.id) root.append(svg('path', { d: arcPath(from, to, RADIUS + BAND / 2 + 5), class: 'me-band', fill: 'none' }))
      }
    }
    if (this.keyPosition !== null) {
      const [x1, y1] = point(this.keyPosition, RADIUS - BAND)
      const [x2, y2] = point(this.keyPosition, RADIUS + BAND + 8)
      root.append(svg('line', { x1, y1, x2, y2, class: 'key-marker' }))
    }
    const label = svg('text', { x: CENTRE, y: CENTRE, 'text-anchor': 'middle', class: 'ring-label' })
    label.textContent = `${ring.size} in ring · ${tokens.length} tokens`
    root.append(label)
    $('ring').replaceChildren(root)
  }

  /** Rows are kept and updated in place (not rebuilt), so the row under the pointer stays put. */
  private drawTable (members: MemberView[], ring: Ring): void {
    const ownership = ring.ownership()
    const rows = members.map(m => {
      let tr = this.rows.get(m.id)
      if (tr === undefined) {
        tr = el('tr', { 'data-id': m.id })
        for (let i = 0; i < 10; i++) tr.append(el('td'))
        tr.cells[0]!.append(el('span', { class: 'swatch' }))
        tr.cells[1]!.className = 'id'
        tr.cells[1]!.title = m.id
        tr.cells[1]!.append(`${shortId(m.id)}${m.id === this.peer.id ? ' (this tab)' : ''}`)
        tr.addEventListener('mouseenter', () => { this.hover(m.id) })
        tr.addEventListener('mouseleave', () => { this.hover(null) })
        if (m.id === this.peer.id) tr.className = 'me'
        this.rows.set(m.id, tr)
      }
      const figures = this.figures.get(m.id)
      // Assigned only when different: an idle tab redraws this table every sample and must not restyle it.
      if (tr.dataset.state !== m.state) tr.dataset.state = m.state
      const swatch = tr.cells[0]!.firstChild as HTMLElement
      const colour = colourOf(m.id, this.sortedIds)
      if (swatch.dataset.colour !== colour) { swatch.dataset.colour = colour; swatch.style.background = colour }
      const cells = [String(m.meta.kind ?? '?'), whereText(m), m.state, String(m.incarnation),
        ownership.has(m.id) ? `${(100 * ownership.get(m.id)!).toFixed(1)}%` : '—',
        String(this.segmentsOwned.get(m.id) ?? 0),
        figures === undefined || m.state === 'dead' || m.state === 'left' ? '' : String(figures.keys),
        new Date(m.sinceMs).toLocaleTimeString()]
      cells.forEach((text, i) => { const td = tr.cells[i + 2]!; if (td.textContent !== text) td.textContent = text })
      const title = `location ${String(m.meta.location ?? m.id)}`
      if (tr.cells[3]!.title !== title) tr.cells[3]!.title = title
      if (tr.cells[4]!.className !== `state ${m.state}`) tr.cells[4]!.className = `state ${m.state}`
      return tr
    })
    for (const [id, tr] of this.rows) if (!rows.includes(tr)) this.rows.delete(id)
    const body = $('members')
    if (rows.length !== body.children.length || rows.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...rows)
  }

  private hover (id: string | null): void {
    if (this.hovered === id) return
    this.hovered = id
    const members = this.peer.members()
    this.drawRing(this.peer.ring(), new Map(members.map(m => [m.id, m.state])))
    this.drawTooltip(members)
  }

  private drawTooltip (members: MemberView[]): void {
    const tip = $('ring-tooltip')
    const m = members.find(x => x.id === this.hovered)
    if (m === undefined) { if (!tip.hidden) tip.hidden = true; return }
    const f = this.figures.get(m.id)
    tip.hidden = false
    tip.replaceChildren(
      el('div', { class: 'id' }, m.id),
      el('div', {}, `${String(m.meta.kind ?? '?')} · ${m.state} · incarnation ${m.incarnation}`),
      el('div', {}, `${whereText(m)} · location ${String(m.meta.location ?? m.id)}`),
      el('div', {}, f === undefined ? 'figures: not yet' : `${f.keys} keys · WAL ${bytesText(f.walBytes)} · ${m.id === this.peer.id ? 'this tab' : `${f.rttMs.toFixed(2)} ms from this tab`}`)
    )
  }
}

/** A member's durability class and a short form of its location (a browser profile shows its first 8 hex digits). */
function whereText (m: MemberView): string {
  const location = String(m.meta.location ?? m.id)
  const short = location.startsWith('browser/') ? `browser ${location.slice(8, 16)}` : location
  return `${m.meta.durability === 'volatile' ? 'volatile' : 'durable'} · ${short}`
}
