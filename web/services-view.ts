/**
 * Heartbeat services of the whole mesh (every up member's records, merged) and the change feed: put, delete,
 * expired and revived events for keys under a prefix, from every peer, newest first.
 */
import type { MeshPeer as Peer } from '../src/peer.js'
import { $, el, shortId } from './dom.js'

const EVENTS_MAX = 200
/** How often the list is refreshed without a heartbeat event while it shows services (each refresh asks every
 * up member once), and while it shows none: services appear through the change feed at once, so in a mesh
 * without any, the refresh is only a safety net and need not ask every member every 10 s. */
export const SERVICES_PERIOD_MS = 10_000
export const SERVICES_IDLE_PERIOD_MS = 60_000
const SERVICES_SHOWN = 500

export class ServicesView {
  private off: (() => void) | null = null
  private renderQueued = false
  private rendering = false
  private shown = 0

  constructor (private readonly peer: Peer) {
    $('watch-form').addEventListener('submit', event => { event.preventDefault(); this.watch(($('watch-prefix') as HTMLInputElement).value) })
    this.watch('heartbeat/')
  }

  private watch (prefix: string): void {
    this.off?.()
    $('events').replaceChildren()
    this.off = this.peer.watch(prefix, event => {
      const list = $('events')
      list.prepend(el('li', { 'data-type': event.type, 'data-key': event.key },
        `${new Date(event.wall).toLocaleTimeString()} ${event.type} ${event.key} (by ${shortId(event.replica)})`))
      while (list.childElementCount > EVENTS_MAX) list.lastElementChild!.remove()
      // A service changed state: show it now rather than at the next periodic refresh.
      if (event.key.startsWith('heartbeat/') && !this.renderQueued) {
        this.renderQueued = true
        setTimeout(() => { this.renderQueued = false; void this.render() }, 250)
      }
    })
  }

  /** When to refresh next without an event: every SERVICES_PERIOD_MS while services are listed, else less often. */
  periodMs (): number {
    return this.shown > 0 ? SERVICES_PERIOD_MS : SERVICES_IDLE_PERIOD_MS
  }

  /** Asks every up member for its records (one request each) and shows the merged list. */
  async render (): Promise<void> {
    if (this.rendering) return
    this.rendering = true
    let result: Awaited<ReturnType<Peer['meshServices']>>
    try {
      result = await this.peer.meshServices({ signal: AbortSignal.timeout(5000) })
    } catch (error) {
      $('services-summary').textContent = `services not listed: ${error instanceof Error ? error.message : String(error)}`
      return
    } finally {
      this.rendering = false
    }
    const services = result.services
    this.shown = services.length
    const alive = services.filter(s => s.state === 'alive').length
    $('services-summary').textContent = services.length === 0
      ? 'none yet: services write PUT /heartbeat/<id>?ttl=<ms>'
      : `${alive} alive, ${services.length - alive} expired${result.failed > 0 ? ` (${result.failed} of ${result.asked} members did not answer)` : ''}`
    // This tab's own failure detector: degraded while it is too slow to take beats in time (a hidden tab's
    // throttled timers count) or sees many services late at once (a mass expiry), when its TTLs run slower
    // rather than expire live services.
    const detector = this.peer.store.kv.detector
    $('services-summary').textContent += detector.state === 'degraded' ? ` · this tab's detector is degraded (${detector.reason ?? ''}): its TTLs run ${detector.stretch}x slower` : ''
    $('services').replaceChildren(...services.slice(0, SERVICES_SHOWN).map(s => el('tr', { 'data-id': s.id, 'data-state': s.state },
      el('td', {}, s.id),
      el('td', {}, s.state),
      el('td', {}, s.lastBeat === 0 ? '' : new Date(s.lastBeat).toLocaleTimeString()),
      el('td', {}, `${s.ttlMs} ms`),
      el('td', { class: 'id', title: s.replica }, shortId(s.replica)))))
  }
}
