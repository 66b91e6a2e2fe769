/**
 * Heartbeat services (the records this tab holds, alive or expired) and the change feed: put, delete,
 * expired and revived events for keys under a prefix, from every peer, newest first.
 */
import type { Peer } from '../src/peer.js'
import { $, el, shortId } from './dom.js'

const EVENTS_MAX = 200
const SERVICES_SHOWN = 500

export class ServicesView {
  private off: (() => void) | null = null

  constructor (private readonly peer: Peer) {
    $('watch-form').addEventListener('submit', event => { event.preventDefault(); this.watch(($('watch-prefix') as HTMLInputElement).value) })
    this.watch('')
  }

  private watch (prefix: string): void {
    this.off?.()
    $('events').replaceChildren()
    this.off = this.peer.watch(prefix, event => {
      const list = $('events')
      list.prepend(el('li', { 'data-type': event.type, 'data-key': event.key },
        `${new Date(event.wall).toLocaleTimeString()} ${event.type} ${event.key} (by ${shortId(event.replica)})`))
      while (list.childElementCount > EVENTS_MAX) list.lastElementChild!.remove()
    })
  }

  render (): void {
    const services = this.peer.services()
    const alive = services.filter(s => s.state === 'alive').length
    $('services-summary').textContent = services.length === 0
      ? 'none yet: services write PUT /heartbeat/<id>?ttl=<ms>'
      : `${alive} alive, ${services.length - alive} expired (records this tab holds)`
    $('services').replaceChildren(...services.slice(0, SERVICES_SHOWN).map(s => el('tr', { 'data-id': s.id, 'data-state': s.state },
      el('td', {}, s.id),
      el('td', {}, s.state),
      el('td', {}, s.lastBeat === 0 ? '' : new Date(s.lastBeat).toLocaleTimeString()),
      el('td', {}, `${s.ttlMs} ms`),
      el('td', { class: 'id', title: s.replica }, shortId(s.replica)))))
  }
}
