/**
 * The change feed: `watch(prefix, callback)` on any peer, tab or Node, sees put, delete, expired and revived
 * events for matching keys, whichever peer made the change. The peer that makes a change — the coordinator
 * of a write, or the replica whose sweep expired a key — publishes it on the gossipsub topic
 * `meshkv/watch/1`; every peer delivers what it receives (and what it made itself) to its local watchers.
 *
 * - Heartbeats: a beat that only refreshes an alive service is not an event (10,000 services beating each
 *   second would flood the topic); a service's first beat is `put`, a beat after its expiry is `revived`.
 * - Events are batched: at most every BATCH_MS, at most BATCH_EVENTS_MAX per message; at most QUEUE_MAX wait
 *   (beyond that the oldest are dropped and counted).
 * - A peer subscribes to the topic once it has a watcher, and publishes a batch only if some peer
 *   subscribes: a mesh nobody watches pays nothing for the feed.
 * - A peer all of whose watchers watch heartbeats (a prefix under `heartbeat/`, as every dashboard does)
 *   also subscribes to the marker topic `meshkv/watch/1/beats-only`, on which nothing is published. A
 *   write to any other key is published only while some subscriber of the feed is not on the marker (or
 *   is a peer from before the marker, which never subscribes to it): a mesh watched only by dashboards
 *   carries heartbeat events alone, and its tabs stop receiving, verifying and forwarding an event per
 *   write. Which peers subscribe where, and whether anyone subscribes at all, is read again at every
 *   subscription change gossipsub reports (as soon as a peer's subscription reaches this one), and every
 *   SUBSCRIBERS_REFRESH_MS for peers that went away without unsubscribing (until then this peer publishes
 *   for nobody, which costs only the message).
 * - Messages are accepted only from members (gossipsub signs them, so `from` is authenticated) and are
 *   validated; bad ones are dropped and counted.
 * - Several replicas may expire one key at about the same time: each peer passes on one `expired` per key
 *   and expired write — an expiry names the write (the beat) it expired, and a later expiry of a later
 *   write passes even if the revival in between was missed (remembered for the last DEDUP_KEYS_MAX keys).
 * - A batch stays under BATCH_BYTES_MAX, below what receivers accept.
 */
import type { Logger } from '../core/env.js'
import { HEARTBEAT_PREFIX, isExpiredService, isHeartbeatKey } from '../core/kv/heartbeat.js'
import type { ChangeEvent, KvNode } from '../core/kv/node.js'
import { newestTs } from '../core/version/dvv.js'
import type { MeshLibp2p } from './mesh-node.js'
import { errorMessage } from '../core/errors.js'

export const WATCH_TOPIC = 'meshkv/watch/1'
/** Subscribed (never published on) by a peer whose watchers all watch heartbeat keys. */
export const BEATS_ONLY_TOPIC = 'meshkv/watch/1/beats-only'
export const BATCH_MS = 100
export const BATCH_EVENTS_MAX = 500
export const QUEUE_MAX = 10_000
export const WATCH_MESSAGE_BYTES_MAX = 256 * 1024
export const BATCH_BYTES_MAX = 192 * 1024
export const DEDUP_KEYS_MAX = 65_536
/** Local watchers per peer. */
export const WATCHERS_MAX = 1024
/** How often the subscribers are read again besides at subscription changes (for peers gone without a word). */
export const SUBSCRIBERS_REFRESH_MS = 10_000

export interface WatchEvent {
  readonly type: 'put' | 'delete' | 'expired' | 'revived'
  readonly key: string
  /** The peer that made the change. */
  readonly replica: string
  /** When, wall-clock ms by the writer's hybrid logical clock. */
  readonly wall: number
  /** For `expired`: when the write that expired (the last beat) was made. */
  readonly beat?: number
}

export interface WatchStats { published: number; received: number; delivered: number; dropped: number; badMessages: number }

const TYPES = new Set(['put', 'delete', 'expired', 'revived'])

/** The event a change is, or null if it is not one (a refresh of an alive heartbeat). */
export function classify (change: ChangeEvent): WatchEvent | null {
  const base = { key: change.key, replica: change.replica, wall: change.wall }
  if (change.type === 'expired') return { type: 'expired', ...base, beat: (change.prior === undefined ? undefined : newestTs(change.prior)?.wall) ?? 0 }
  if (change.type !== 'put') return { type: change.type, ...base }
  if (!isHeartbeatKey(change.key)) return { type: 'put', ...base }
  // A write of the very bytes the key held (beats without metadata share one array): a refresh, whatever
  // the record says (an alive record stays alive; an expired one written again is no revival). No JSON to
  // parse on the path every beat takes.
  const before = change.prior?.siblings
  const after = change.state.siblings
  if (before?.length === 1 && after.length === 1 && before[0]!.value !== null && before[0]!.value === after[0]!.value) return null
  if (isExpiredService(change.key, change.prior)) return { type: 'revived', ...base }
  if (change.prior === undefined || change.prior.siblings.every(s => s.value === null)) return { type: 'put', ...base }
  return null
}

export class WatchService {
  readonly stats: WatchStats = { published: 0, received: 0, delivered: 0, dropped: 0, badMessages: 0 }
  private readonly watchers = new Set<{ prefix: string; callback: (event: WatchEvent) => void }>()
  private queue: WatchEvent[] = []
  private timer: ReturnType<typeof setTimeout> | null = null
  /** Per key, the beat of the last expiry passed on (insertion-ordered: the oldest is forgotten first). */
  private readonly last = new Map<string, number>()
  private offChange: (() => void) | null = null
  private running = false
  private subscribed = false
  private beatsOnly = false
  /** Whether some other peer subscribes to the feed, and whether one of those wants more than heartbeats. */
  private remoteWatchers = false
  private remoteGeneral = false
  private subscribersTimer: ReturnType<typeof setInterval> | null = null

  constructor (private readonly node: MeshLibp2p, private readonly kv: KvNode, private readonly isMember: (id: string) => boolean, private readonly log: Logger) {}

  start (): void {
    this.running = true
    this.node.services.pubsub.addEventListener('message', this.onMessage)
    // Whether any other peer subscribes: with no watcher anywhere a write costs the feed one comparison.
    this.node.services.pubsub.addEventListener('subscription-change', this.refreshRemote)
    this.subscribersTimer = setInterval(this.refreshRemote, SUBSCRIBERS_REFRESH_MS)
    this.refreshRemote()
    this.offChange = this.kv.events.on('change', change => {
      if (this.watchers.size === 0 && !this.remoteWatchers) return
      const event = classify(change)
      if (event === null) return
      this.deliver(event)
      if (!this.remoteWatchers || (!this.remoteGeneral && !isHeartbeatKey(event.key))) return
      if (this.queue.length >= QUEUE_MAX) { this.queue.shift(); this.stats.dropped++ }
      this.queue.push(event)
      this.timer ??= setTimeout(() => { this.timer = null; this.flush() }, BATCH_MS)
    })
  }

  stop (): void {
    this.running = false
    this.offChange?.()
    if (this.subscribersTimer !== null) clearInterval(this.subscribersTimer)
    this.subscribersTimer = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    const pubsub = this.node.services.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.refreshRemote)
    if (this.subscribed) pubsub.unsubscribe(WATCH_TOPIC)
    if (this.beatsOnly) pubsub.unsubscribe(BEATS_ONLY_TOPIC)
    this.subscribed = false
    this.beatsOnly = false
    this.watchers.clear()
  }

  /** What a change here is published for now: every event, heartbeat events only, or nothing (no other peer watches). */
  get publishing (): 'all' | 'heartbeats' | 'none' {
    return !this.remoteWatchers ? 'none' : this.remoteGeneral ? 'all' : 'heartbeats'
  }

  /** Who else watches: anyone (on the feed), and anyone who wants more than heartbeats (not on the marker). */
  private readonly refreshRemote = (): void => {
    const pubsub = this.node.services.pubsub
    const all = pubsub.getSubscribers(WATCH_TOPIC)
    this.remoteWatchers = all.length > 0
    if (!this.remoteWatchers) { this.remoteGeneral = false; return }
    const beatsOnly = new Set(pubsub.getSubscribers(BEATS_ONLY_TOPIC).map(p => p.toString()))
    this.remoteGeneral = all.some(p => !beatsOnly.has(p.toString()))
  }

  /** Subscribes to the feed while there is a watcher, and to the marker while every watcher watches beats. */
  private updateSubscriptions (): void {
    if (!this.running) return
    const pubsub = this.node.services.pubsub
    if (!this.subscribed && this.watchers.size > 0) {
      pubsub.subscribe(WATCH_TOPIC)
      this.subscribed = true
    }
    // With no watcher left the subscriptions stay as they were (the feed is never left before stop()).
    if (this.watchers.size === 0) return
    let beatsOnly = true
    for (const w of this.watchers) if (!w.prefix.startsWith(HEARTBEAT_PREFIX)) { beatsOnly = false; break }
    if (beatsOnly && !this.beatsOnly) pubsub.subscribe(BEATS_ONLY_TOPIC)
    else if (!beatsOnly && this.beatsOnly) pubsub.unsubscribe(BEATS_ONLY_TOPIC)
    this.beatsOnly = beatsOnly
  }

  /** Local watchers now (watch() callbacks, among them the HTTP API's event streams). */
  get watching (): number { return this.watchers.size }

  /** Calls `callback` for every event on a key starting with `prefix` ('' for all); returns the unsubscribe. */
  watch (prefix: string, callback: (event: WatchEvent) => void): () => void {
    if (typeof prefix !== 'string') throw new TypeError('prefix must be a string')
    if (this.watchers.size >= WATCHERS_MAX) throw new RangeError(`more than ${WATCHERS_MAX} watchers on this peer`)
    const watcher = { prefix, callback }
    this.watchers.add(watcher)
    this.updateSubscriptions()
    return () => {
      if (this.watchers.delete(watcher)) this.updateSubscriptions()
    }
  }

  private flush (): void {
    if (!this.running) return
    if (this.node.services.pubsub.getSubscribers(WATCH_TOPIC).length === 0) {
      this.queue = [] // nobody else watches
      return
    }
    while (this.queue.length > 0) {
      let bytes = 2
      let count = 0
      while (count < this.queue.length && count < BATCH_EVENTS_MAX) {
        // A key is at most 3 bytes per character in UTF-8 (JSON escapes aside, 6): an upper bound.
        const size = this.queue[count]!.key.length * 6 + 64
        if (count > 0 && bytes + size > BATCH_BYTES_MAX) break
        bytes += size
        count++
      }
      const batch = this.queue.splice(0, count)
      const data = new TextEncoder().encode(JSON.stringify(batch.map(e => [e.type, e.key, e.wall, e.beat ?? 0])))
      this.stats.published += batch.length
      this.node.services.pubsub.publish(WATCH_TOPIC, data).catch((error: unknown) => {
        this.log.debug(`watch: publish failed: ${errorMessage(error)}`)
      })
    }
  }

  private deliver (event: WatchEvent): void {
    // One expired per key and expired write (several replicas may expire it).
    if (event.type === 'expired') {
      if (this.last.get(event.key) === event.beat) return
      this.last.delete(event.key)
      this.last.set(event.key, event.beat ?? 0)
      if (this.last.size > DEDUP_KEYS_MAX) this.last.delete(this.last.keys().next().value!)
    }
    for (const w of this.watchers) {
      if (!event.key.startsWith(w.prefix)) continue
      this.stats.delivered++
      try {
        w.callback(event)
      } catch (error) {
        this.log.error('watch callback threw', error)
      }
    }
  }

  private readonly onMessage = (event: CustomEvent<{ topic: string; data: Uint8Array; from?: { toString: () => string } }>): void => {
    const message = event.detail
    if (message.topic !== WATCH_TOPIC) return
    try {
      if (message.data.length > WATCH_MESSAGE_BYTES_MAX) throw new Error('too large')
      const from = message.from?.toString()
      if (from === undefined || !this.isMember(from)) throw new Error('not from a member')
      const list = JSON.parse(new TextDecoder().decode(message.data)) as unknown
      if (!Array.isArray(list) || list.length > BATCH_EVENTS_MAX) throw new Error('malformed')
      for (const item of list) {
        if (!Array.isArray(item) || !TYPES.has(item[0]) || typeof item[1] !== 'string' || item[1].length > 4096 || typeof item[2] !== 'number' || typeof item[3] !== 'number') throw new Error('malformed event')
        // The replica is the publisher (gossipsub signs): a member cannot speak for another.
        this.stats.received++
        const type = item[0] as WatchEvent['type']
        this.deliver({ type, key: item[1], replica: from, wall: item[2], ...(type === 'expired' ? { beat: item[3] } : {}) })
      }
    } catch (error) {
      this.stats.badMessages++
      this.log.debug(`watch: dropped a message: ${errorMessage(error)}`)
    }
  }
}
