/**
 * Discovery announcements over gossipsub (topic `meshkv/discovery/1`): each peer publishes its id, kind and
 * current addresses when they change (a tab's relay reservation, a new listener), when a new peer
 * subscribes (at most every ANNOUNCE_MIN_GAP_MS), and every ANNOUNCE_INTERVAL_MS, and
 * records what others announce in its peer store, so a member's newest addresses reach everyone without
 * waiting for a SWIM incarnation to spread. Announcements only inform dialling: membership and the mesh key
 * are still checked by SWIM. Messages are signed by gossipsub (strict signing); an announcement whose id is
 * not its signer's, that is too large, that does not parse, or that comes from a peer SWIM does not list as
 * a member is dropped and counted (so strangers cannot grow the peer store). Private meshes do not run
 * discovery at all: gossipsub is not behind the mesh key, and announcements would reveal addresses.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../core/env.js'
import type { MeshLibp2p } from './mesh-node.js'
import { isTabLinkAddress } from '../adapters/tab-link.js'
import { errorMessage } from '../core/errors.js'

export const DISCOVERY_TOPIC = 'meshkv/discovery/1'
/** Periodic re-announcement. Addresses travel in SWIM metadata too, and changes are announced at once: this
 * only refreshes peer stores, and in an idle mesh every announcement is forwarded by every member. */
export const ANNOUNCE_INTERVAL_MS = 300_000
/**
 * Least time between announcements prompted by a peer (re)subscribing. A joiner learns every member's
 * addresses from SWIM's full-state exchange anyway; at 5 s these announcements, forwarded through the
 * gossip mesh, were most of an idle tab's messages.
 */
export const ANNOUNCE_MIN_GAP_MS = 30_000
/** Least time between two announcements of changed addresses. */
export const ANNOUNCE_CHANGE_GAP_MS = 1_000
/** Largest announcement accepted, and most addresses taken from one. */
export const ANNOUNCEMENT_BYTES_MAX = 4096
const ADDRS_MAX = 8

interface Announcement { id: string; kind: string; addrs: string[] }

export class Discovery {
  dropped = 0
  received = 0
  private timer: ReturnType<typeof setInterval> | null = null
  private soon: ReturnType<typeof setTimeout> | null = null
  private lastAnnounceMs = 0
  /** The addresses last announced. */
  private lastAddrs = ''
  private changeTimer: ReturnType<typeof setTimeout> | null = null

  constructor (private readonly node: MeshLibp2p, private readonly kind: string, private readonly isMember: (id: string) => boolean, private readonly log: Logger) {}

  start (): void {
    const pubsub = this.node.services.pubsub
    pubsub.subscribe(DISCOVERY_TOPIC)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.announceSoon)
    this.node.addEventListener('self:peer:update', this.onSelfUpdate)
    this.timer = setInterval(this.announce, ANNOUNCE_INTERVAL_MS)
    this.announce()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    if (this.soon !== null) clearTimeout(this.soon)
    this.timer = null
    this.soon = null
    this.node.removeEventListener('self:peer:update', this.onSelfUpdate)
    if (this.changeTimer !== null) clearTimeout(this.changeTimer)
    this.changeTimer = null
    const pubsub = this.node.services.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.announceSoon)
    pubsub.unsubscribe(DISCOVERY_TOPIC)
  }

  /** A peer (re)subscribed: tell it about us, but not more often than every ANNOUNCE_MIN_GAP_MS. */
  private readonly announceSoon = (): void => {
    if (this.soon !== null || this.timer === null) return
    const wait = Math.max(1000, this.lastAnnounceMs + ANNOUNCE_MIN_GAP_MS - Date.now())
    this.soon = setTimeout(() => { this.soon = null; this.announce() }, wait)
  }

  /**
   * This peer's record changed. libp2p says so for every identify round that confirms an observed address
   * (a relay sees one per connecting tab), so only a change of the addresses announces, at once, and at
   * most every ANNOUNCE_CHANGE_GAP_MS: each announcement is signed and sent to every subscriber, and under
   * tab churn they took a noticeable share of a relay's CPU.
   */
  private readonly onSelfUpdate = (): void => {
    if (this.timer === null || this.changeTimer !== null) return
    if (this.addrs().join(' ') === this.lastAddrs) return
    const wait = this.lastAnnounceMs + ANNOUNCE_CHANGE_GAP_MS - Date.now()
    if (wait <= 0) { this.announce(); return }
    this.changeTimer = setTimeout(() => { this.changeTimer = null; if (this.addrs().join(' ') !== this.lastAddrs) this.announce() }, wait)
  }

  private addrs (): string[] {
    // Not a tab link address (/memory/...): only tabs of the same browser use it, and they find each other.
    return this.node.getMultiaddrs().map(String).filter(a => !isTabLinkAddress(a)).slice(0, ADDRS_MAX)
  }

  private readonly announce = (): void => {
    this.lastAnnounceMs = Date.now()
    const body: Announcement = { id: this.node.peerId.toString(), kind: this.kind, addrs: this.addrs() }
    this.lastAddrs = body.addrs.join(' ')
    this.node.services.pubsub.publish(DISCOVERY_TOPIC, new TextEncoder().encode(JSON.stringify(body))).catch((error: unknown) => {
      this.log.debug('discovery: announcement not sent', error)
    })
  }

  private readonly onMessage = (event: CustomEvent<{ topic: string; data: Uint8Array; type?: string; from?: { toString: () => string } }>): void => {
    const message = event.detail
    if (message.topic !== DISCOVERY_TOPIC) return
    try {
      if (message.data.length > ANNOUNCEMENT_BYTES_MAX) throw new Error('too large')
      const a = JSON.parse(new TextDecoder().decode(message.data)) as Partial<Announcement>
      if (typeof a.id !== 'string' || !Array.isArray(a.addrs)) throw new Error('malformed')
      if (message.from === undefined || message.from.toString() !== a.id) throw new Error('not signed by the peer it announces')
      if (a.id === this.node.peerId.toString()) return
      if (!this.isMember(a.id)) throw new Error('not a member')
      const multiaddrs = a.addrs.filter((x): x is string => typeof x === 'string').slice(0, ADDRS_MAX).map(x => multiaddr(x))
      this.received++
      void this.node.peerStore.merge(peerIdFromString(a.id), { multiaddrs }).catch(() => {})
    } catch (error) {
      this.dropped++
      this.log.debug(`discovery: dropped an announcement: ${errorMessage(error)}`)
    }
  }
}
