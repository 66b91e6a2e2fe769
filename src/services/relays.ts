/**
 * A tab's relay reservations (DESIGN.md §3). Every Node peer runs a circuit relay and publishes it in its
 * member metadata (`relay`: the reservations it serves; its addresses are in `addrs`). The keeper holds
 * reservations on RELAYS_WANTED of them, ranked by `rankRelays` (the peer that served the page first, then
 * distinct locations, then a rendezvous hash). A reservation lives as long as the connection to its relay;
 * when a relay goes away libp2p drops the reservation and its `/p2p-circuit` addresses, and the keeper
 * takes one on the next relay. The new addresses reach the mesh in this peer's SWIM metadata, and other tabs
 * dial `<relay>/p2p-circuit/webrtc/p2p/<tab>` through any relay, then upgrade to a direct WebRTC connection.
 *
 * Bounded: each relay gets at most RELAY_ATTEMPTS_MAX tries in a row, RELAY_BACKOFF_MIN_MS doubling to
 * RELAY_BACKOFF_MAX_MS apart (with jitter), then is marked failed until it comes back with a new
 * incarnation; a keeper makes at most RELAY_LISTENS_MAX reservation attempts in its life (libp2p keeps a
 * small listener object per attempt), then says so in its status; at most RELAYS_TRACKED_MAX relays are
 * tracked.
 *
 * libp2p 3 has no public call to reserve on one chosen relay, so this uses what its own circuit transport
 * does when dialled through an unknown relay: `transportManager.listen([<relay>/p2p-circuit])`, reached
 * through the node's `components` (checked at start, with a clear error if a libp2p upgrade moves it).
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { raceAbort } from '../core/abort.js'
import { Emitter } from '../core/emitter.js'
import type { Clock, Logger, Rng } from '../core/env.js'
import { errorMessage } from '../core/errors.js'
import { RELAYS_WANTED, type RelayCandidate, rankRelays } from '../core/ring/relays.js'
import type { MeshLibp2p } from './mesh-node.js'
import type { SwimService } from './swim-service.js'

export const RELAY_CHECK_MS = 2_000
export const RELAY_BACKOFF_MIN_MS = 1_000
export const RELAY_BACKOFF_MAX_MS = 30_000
export const RELAY_ATTEMPTS_MAX = 8
export const RELAY_LISTENS_MAX = 256
export const RELAYS_TRACKED_MAX = 64
/** Bound on dialling a relay and making a reservation on it. */
export const RELAY_RESERVE_TIMEOUT_MS = 10_000

export type RelayState = 'idle' | 'reserving' | 'reserved' | 'waiting' | 'failed'

export interface RelayView {
  id: string
  location: string
  state: RelayState
  /** Failed tries in a row. */
  attempts: number
  /** The last failure. */
  error?: string
  /** With state `waiting`: how long until the next try. */
  retryInMs?: number
}

export interface RelayStatus {
  wanted: number
  /** Relays this peer holds a reservation on now. */
  held: string[]
  relays: RelayView[]
  /** RELAY_LISTENS_MAX attempts were used up: no more reservations until the page reloads. */
  exhausted: boolean
}

interface Tracked extends RelayCandidate {
  addrs: Multiaddr[]
  state: RelayState
  attempts: number
  nextAtMs: number
  error?: string
  /** The relay's incarnation when it was marked failed: a newer one clears the mark. */
  failedIncarnation: number
  seed: boolean
}

interface TransportManagerLike { listen: (addrs: Multiaddr[]) => Promise<void> }

function transportManagerOf (node: MeshLibp2p): TransportManagerLike {
  const tm = (node as unknown as { components?: { transportManager?: Partial<TransportManagerLike> } }).components?.transportManager
  if (typeof tm?.listen !== 'function') throw new Error('libp2p changed: node.components.transportManager.listen is gone, so relay reservations cannot be made (see src/services/relays.ts)')
  return tm as TransportManagerLike
}

/** The relay ids in this node's own `/p2p/<relay>/p2p-circuit` addresses: the reservations it holds. */
export function heldRelays (addrs: readonly Multiaddr[]): Set<string> {
  const out = new Set<string>()
  for (const a of addrs) {
    const m = /\/p2p\/([^/]+)\/p2p-circuit/.exec(a.toString())
    if (m !== null) out.add(m[1]!)
  }
  return out
}

export interface RelayKeeperOptions {
  /** Relays to try first, before any member is known: the peer that served the page (its /ws addresses, with /p2p/<id>). */
  seeds: Multiaddr[]
  /** Which of a relay's addresses this peer can dial (a browser: WebSockets only). */
  dialable: (addr: string) => boolean
  wanted?: number
  clock: Clock
  rng: Rng
  log: Logger
}

export class RelayKeeper {
  readonly events = new Emitter<{ change: RelayStatus }>()
  private readonly tracked = new Map<string, Tracked>()
  private readonly preferred: Set<string>
  private readonly wanted: number
  private readonly tm: TransportManagerLike
  private timer: ReturnType<typeof setTimeout> | null = null
  private soon = false
  private running = false
  private listens = 0
  private lastStatus = ''
  private offMember: (() => void) | null = null

  constructor (private readonly node: MeshLibp2p, private readonly membership: SwimService, private readonly options: RelayKeeperOptions) {
    this.tm = transportManagerOf(node)
    this.wanted = options.wanted ?? RELAYS_WANTED
    this.preferred = new Set()
    for (const addr of options.seeds) {
      const id = /\/p2p\/([^/]+)$/.exec(addr.toString())?.[1]
      if (id === undefined || id === node.peerId.toString()) continue
      this.preferred.add(id)
      const t = this.track(id, '')
      t.seed = true
      if (!t.addrs.some(a => a.equals(addr))) t.addrs.push(addr)
    }
  }

  start (): void {
    this.running = true
    this.offMember = this.membership.events.on('change', this.checkSoon)
    this.node.addEventListener('self:peer:update', this.checkSoon)
    this.check()
  }

  stop (): void {
    this.running = false
    this.offMember?.()
    this.node.removeEventListener('self:peer:update', this.checkSoon)
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  status (): RelayStatus {
    const now = this.options.clock.nowMs()
    const held = heldRelays(this.node.getMultiaddrs())
    return {
      wanted: this.wanted,
      held: [...held],
      exhausted: this.listens >= RELAY_LISTENS_MAX,
      relays: [...this.tracked.values()].map(t => ({
        id: t.id,
        location: t.location,
        state: t.state,
        attempts: t.attempts,
        ...(t.error === undefined ? {} : { error: t.error }),
        ...(t.state === 'waiting' ? { retryInMs: Math.max(0, Math.round(t.nextAtMs - now)) } : {})
      }))
    }
  }

  /** Dialable addresses of the relays known now (members first): where a reloaded page can join. */
  knownAddrs (max = 16): string[] {
    const out: string[] = []
    for (const t of this.tracked.values()) {
      for (const a of t.addrs) if (out.length < max) out.push(a.toString())
    }
    return out
  }

  private track (id: string, location: string): Tracked {
    let t = this.tracked.get(id)
    if (t === undefined) {
      t = { id, location, addrs: [], state: 'idle', attempts: 0, nextAtMs: 0, failedIncarnation: -1, seed: false }
      this.tracked.set(id, t)
    }
    if (location !== '') t.location = location
    return t
  }

  private readonly checkSoon = (): void => {
    if (this.soon || !this.running) return
    this.soon = true
    queueMicrotask(() => { this.soon = false; this.check() })
  }

  /** Learns relays from the member list, notes which are held, and starts reservations up to `wanted`. */
  private check (): void {
    if (!this.running) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.timer = null; this.check() }, RELAY_CHECK_MS)
    const now = this.options.clock.nowMs()
    const self = this.node.peerId.toString()
    const live = new Set<string>()
    for (const m of this.membership.members()) {
      if (m.id === self || typeof m.meta.relay !== 'number' || m.meta.relay <= 0) continue
      if (m.state !== 'alive' && m.state !== 'suspect') continue
      if (!this.tracked.has(m.id) && this.tracked.size >= RELAYS_TRACKED_MAX) continue
      live.add(m.id)
      const t = this.track(m.id, typeof m.meta.location === 'string' ? m.meta.location : '')
      const addrs = String(m.meta.addrs ?? '').split(' ').filter(a => a !== '' && !a.includes('/p2p-circuit') && this.options.dialable(a))
      if (addrs.length > 0) {
        try { t.addrs = addrs.map(a => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${m.id}`)) } catch { /* unparsable: keep the old ones */ }
      }
      if (t.state === 'failed' && m.incarnation > t.failedIncarnation) { t.state = 'idle'; t.attempts = 0 }
    }
    const held = heldRelays(this.node.getMultiaddrs())
    for (const t of [...this.tracked.values()]) {
      // A relay that is no longer a member (dead, left) and is not a seed of a page still joining is forgotten.
      if (!live.has(t.id) && !held.has(t.id) && t.state !== 'reserving' && !(t.seed && live.size === 0)) { this.tracked.delete(t.id); continue }
      if (held.has(t.id)) {
        t.state = 'reserved'
        t.attempts = 0
        delete t.error
      } else if (t.state === 'reserved') {
        t.state = 'idle'
        this.options.log.info(`relay ${t.id} no longer holds this peer's reservation`)
      }
    }
    let reserving = 0
    for (const t of this.tracked.values()) if (t.state === 'reserving') reserving++
    const need = this.wanted - held.size - reserving
    if (need > 0 && this.listens < RELAY_LISTENS_MAX) {
      const ready = [...this.tracked.values()].filter(t => t.addrs.length > 0 && (t.state === 'idle' || (t.state === 'waiting' && t.nextAtMs <= now)))
      const heldViews = [...this.tracked.values()].filter(t => held.has(t.id))
      for (const c of rankRelays(self, ready, heldViews, this.preferred).slice(0, need)) void this.reserve(this.tracked.get(c.id)!)
    }
    this.publish()
  }

  private publish (): void {
    const status = this.status()
    const key = JSON.stringify({ ...status, relays: status.relays.map(r => ({ ...r, retryInMs: undefined })) })
    if (key === this.lastStatus) return
    this.lastStatus = key
    this.events.emit('change', status)
  }

  private async reserve (t: Tracked): Promise<void> {
    t.state = 'reserving'
    this.listens++
    try {
      const signal = AbortSignal.timeout(RELAY_RESERVE_TIMEOUT_MS)
      const connection = await this.node.dial(t.addrs, { signal })
      if (connection.limits !== undefined) throw new Error('reached only through another relay')
      const addr = t.addrs.find(a => a.toString() === connection.remoteAddr.toString()) ?? t.addrs[0]!
      await raceAbort(this.tm.listen([addr.encapsulate('/p2p-circuit')]), signal)
      t.state = heldRelays(this.node.getMultiaddrs()).has(t.id) ? 'reserved' : 'idle'
      t.attempts = 0
      delete t.error
      this.options.log.info(`relay reservation on ${t.id}`)
    } catch (error) {
      t.attempts++
      t.error = errorMessage(error)
      if (t.attempts >= RELAY_ATTEMPTS_MAX) {
        t.state = 'failed'
        t.failedIncarnation = this.membership.members().find(m => m.id === t.id)?.incarnation ?? -1
        this.options.log.warn(`relay ${t.id}: giving up after ${t.attempts} tries: ${t.error}`)
      } else {
        t.state = 'waiting'
        const backoff = Math.min(RELAY_BACKOFF_MAX_MS, RELAY_BACKOFF_MIN_MS * 2 ** (t.attempts - 1))
        t.nextAtMs = this.options.clock.nowMs() + backoff * (0.75 + 0.5 * this.options.rng.next())
        this.options.log.info(`relay ${t.id}: no reservation (try ${t.attempts}): ${t.error}`)
      }
    }
    this.checkSoon()
  }
}
