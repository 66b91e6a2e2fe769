/**
 * Discovery announcements over gossipsub (topic `meshkv/discovery/1`): each peer publishes its id, kind and
 * current addresses when they change (a tab's relay reservation, a new listener), when a new peer
 * subscribes (at most every ANNOUNCE_MIN_GAP_MS), and once a minute, and
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
import { errorMessage } from '../core/errors.js'

export const DISCOVERY_TOPIC = 'meshkv/discovery/1'
export const ANNOUNCE_INTERVAL_MS = 60_000
export const ANNOUNCE_MIN_GAP_MS = 5_000
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

  constructor (private readonly node: MeshLibp2p, private readonly kind: string, private readonly isMember: (id: string) => boolean, private readonly log: Logger) {}

  start (): void {
    const pubsub = this.node.services.pubsub
    pubsub.subscribe(DISCOVERY_TOPIC)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.announceSoon)
    this.node.addEventListener('self:peer:update', this.announce)
    this.timer = setInterval(this.announce, ANNOUNCE_INTERVAL_MS)
    this.announce()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    if (this.soon !== null) clearTimeout(this.soon)
    this.timer = null
    this.soon = null
    this.node.removeEventListener('self:peer:update', this.announce)
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

  private readonly announce = (): void => {
    this.lastAnnounceMs = Date.now()
    const body: Announcement = { id: this.node.peerId.toString(), kind: this.kind, addrs: this.node.getMultiaddrs().map(String).slice(0, ADDRS_MAX) }
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
