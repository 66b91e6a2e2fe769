/**
 * What every part of a replica's replication shares: its storage engine, the ring and who is up, the indexes
 * over its keys, its counters, the flow runtime, and the small steps every part takes — look up a key's
 * preference list, check a request's R/W and context, merge states into the engine, send states to a peer
 * in bounded batches. The coordinator, the replica handlers, handoff, anti-entropy and expiry are each a
 * module of flows over this one state (replication.ts wires them together).
 */
import type { Logger } from '../env.js'
import { AbortError, ConfigError, InvalidContextError, MeshkvError, NoDurableReplicaError, QuorumError, RemoteError, TimeoutError, UnreachableError, errorMessage } from '../errors.js'
import type { KvConfig } from '../kv/config.js'
import { Digests, type Hash64 } from '../kv/digest.js'
import type { Entry, KvReply } from '../kv/messages.js'
import type { PreferenceEntry, Ring } from '../ring/ring.js'
import type { StorageEngine } from '../storage/engine.js'
import type { KeyState } from '../version/dvv.js'
import type { VersionVector } from '../version/vv.js'
import { type Channel, type Flow, type Runtime, persist, request } from './flow.js'
import { DetectorHealth } from './health.js'
import { OlderPeers } from './older-peers.js'
import { KeyIndex } from './key-index.js'
import { OrderedKeys } from './key-order.js'
import { Latencies } from './latency.js'
import type { KvStats } from './types.js'

/** How far ahead of this peer's clock a context's counters may be (other peers' clocks, hot keys). */
export const CONTEXT_CLOCK_SKEW_MS = 86_400_000

export interface ReplicationOptions {
  engine: StorageEngine
  config: KvConfig
  hash64: Hash64
  log: Logger
  /** This peer's figures for dashboards, as JSON: the answer to another peer's `info` request. */
  describe?: () => string
  /**
   * How long the machine waits for a peer's reply before a tick fails the request with TimeoutError.
   * Default `config.requestTimeoutMs`. A host whose transport bounds its own dials and requests sets this
   * above that transport's worst case, so the transport's typed error arrives first: an UnreachableError
   * (the request never left) lets a forward try the next replica, a TimeoutError does not.
   */
  requestDeadlineMs?: number
}

export type Counters = Omit<KvStats, 'hintsPending' | 'expiryChecksWaiting'>

export class ReplicaState {
  readonly id: string
  readonly engine: StorageEngine
  readonly config: KvConfig
  readonly log: Logger
  readonly digests: Digests
  /** Hints, tombstones, heartbeat keys, keys by segment and the hash tree, kept by the engine's changes. */
  readonly index: KeyIndex
  /** The keys held here in order, for listings (built by the first one; kept by the engine's changes). */
  readonly ordered: OrderedKeys
  readonly counters: Counters = { puts: 0, gets: 0, deletes: 0, forwarded: 0, quorumFailures: 0, readRepairs: 0, handedOff: 0, dropped: 0, syncRounds: 0, syncRepairs: 0, reaped: 0, badRequests: 0, hedged: 0, expiryPostponedDegraded: 0, refreshes: 0 }
  ring: Ring
  isUpNow: (id: string) => boolean = () => true
  /** Refuses writes (a graceful leave has begun). */
  leaving = false
  /** Each peer's round trips, for hedged requests. */
  readonly latencies: Latencies
  /**
   * The failure detector's own health: while degraded, TTL sweeps are stretched and this replica holds its
   * services' expiries (health.ts, expiry.ts); its answer to another's expiry check says so unless only a mass
   * expiry degraded it (DetectorHealth.answersDegraded).
   */
  readonly health = new DetectorHealth()
  /** Peers that answered an expiry check ERR_UNSUPPORTED (an older version): asked the older way at once. */
  readonly olderPeers = new OlderPeers()
  /**
   * Peers that answered a refresh ERR_UNSUPPORTED (refresh.ts): a beat to a key they replicate is written,
   * not refreshed, while they are remembered (their credits are renewed only by writes).
   */
  readonly noRefresh = new OlderPeers()

  constructor (ring: Ring, readonly rt: Runtime, readonly options: ReplicationOptions) {
    this.engine = options.engine
    this.id = options.engine.replicaId
    this.config = options.config
    this.log = options.log
    this.digests = new Digests(options.hash64)
    this.ring = ring
    this.index = new KeyIndex(this.id, this.config.n, this.digests, ring)
    this.index.rebuild(ring, this.engine.entries())
    this.ordered = new OrderedKeys(() => this.engine.keys(), key => this.engine.state(key) !== undefined)
    this.latencies = new Latencies({ multiplier: this.config.hedgeMultiplier, minMs: this.config.hedgeMinMs, maxMs: this.config.hedgeMaxMs })
    rt.observe = this.latencies.record
  }

  get nowMs (): number { return this.rt.nowMs }

  isUp (id: string): boolean { return id === this.id || this.isUpNow(id) }

  primariesOf (key: string): readonly string[] {
    return this.ring.primaries(this.ring.position(key), this.config.n)
  }

  /** The members a request for `key` goes to, in order: up primaries, then fallbacks (unless strict). */
  preference (key: string, strict = this.config.strictQuorum): PreferenceEntry[] {
    const list = this.ring.preferenceList(this.ring.position(key), this.config.n, id => this.isUp(id))
    return strict ? list.filter(e => e.role === 'primary') : list
  }

  /**
   * A write's durable acknowledgements: the request's `dw`, or the mesh's `durableAcks`, which it may raise
   * but not lower.
   */
  checkDurableAcks (value: number | undefined): number {
    const floor = this.config.durableAcks
    const v = value ?? floor
    if (!Number.isInteger(v) || v < floor || v > this.config.n) throw new ConfigError('dw', `must be an integer in [${floor}, ${this.config.n}] (the mesh's durableAcks to N), got ${String(v)}`)
    return v
  }

  checkCount (name: 'r' | 'w', value: number | undefined): number {
    const v = value ?? this.config[name]
    if (!Number.isInteger(v) || v < 1 || v > this.config.n) throw new ConfigError(name, `must be an integer in [1, ${this.config.n}] (N), got ${String(v)}`)
    return v
  }

  /**
   * Counters are at most about the wall clock (update() issues max(previous + 1, now)); one far ahead can
   * only be forged, and would push the key's counter past what contexts can carry.
   */
  checkContext (vv: VersionVector): void {
    const limit = this.nowMs + CONTEXT_CLOCK_SKEW_MS
    for (let i = 1; i < vv.length; i += 2) {
      if ((vv[i] as number) > limit) throw new InvalidContextError(`counter ${vv[i] as number} is ahead of this peer's clock by more than ${CONTEXT_CLOCK_SKEW_MS} ms`)
    }
  }

  entry (key: string, state: KeyState): Entry {
    return { key, ttlMs: this.engine.ttl(key), state }
  }

  /**
   * Merges states into the engine at once (every one is applied before this returns). One that the engine
   * refuses (too large) throws once all were tried; the others stay applied.
   */
  applyMerges (entries: readonly Entry[]): void {
    let refused: unknown
    for (const e of entries) {
      try {
        this.engine.mergeNow(e.key, e.state, e.ttlMs)
      } catch (error) {
        refused ??= error
      }
    }
    if (refused !== undefined) throw refused
  }

  /** Merges states into the engine at once, then waits until they are durable. */
  * mergeLocal (entries: readonly Entry[]): Flow<void> {
    this.applyMerges(entries)
    yield persist()
  }

  /** Sends states to a replica, which merges them and answers once they are durable there. */
  * replicate (to: string, channel: Channel, entries: readonly Entry[]): Flow<void> {
    const reply = (yield request(to, channel, { type: 'merge', entries })) as KvReply
    if (reply.type !== 'ok') throw replyError(to, reply, 'put')
  }

  /**
   * Sends entries to a peer in messages of at most `handoffBatchKeys` keys and half the message limit, one
   * after another; calls `sent` for each delivered chunk. Returns how many entries were not delivered.
   */
  * send (to: string, entries: readonly Entry[], sent: (chunk: readonly Entry[]) => void): Flow<number> {
    let failed = 0
    let done = 0
    for (const chunk of chunks(entries, this.config.handoffBatchKeys, this.config.messageBytesMax / 2)) {
      try {
        yield * this.replicate(to, 'sync', chunk)
        sent(chunk)
      } catch (error) {
        failed += chunk.length
        if (error instanceof AbortError) throw error // cancelled: send nothing more
        this.log.debug(`sending ${chunk.length} keys to ${to} failed: ${errorMessage(error)}`)
        // An unreachable peer fails every chunk: stop; other failures concern this chunk only.
        if (error instanceof UnreachableError || error instanceof TimeoutError) return failed + (entries.length - done - chunk.length)
      }
      done += chunk.length
    }
    return failed
  }
}

/** The reply that stands for an error a handler threw: quorum failures carry their counts. */
export function errorReply (error: unknown): KvReply {
  if (error instanceof QuorumError || error instanceof NoDurableReplicaError) return { type: 'error', code: error.code, message: error.message, acked: error.acked, required: error.required }
  if (error instanceof MeshkvError) return { type: 'error', code: error.code, message: error.message, acked: 0, required: 0 }
  return { type: 'error', code: 'ERR_INTERNAL', message: errorMessage(error), acked: 0, required: 0 }
}

/** The error a reply stands for: quorum failures keep their type, everything else names the remote code. */
export function replyError (peer: string, reply: KvReply, op: 'put' | 'delete' | 'get'): Error {
  if (reply.type !== 'error') return new RemoteError(peer, 'ERR_UNEXPECTED_REPLY', `unexpected reply ${reply.type}`)
  if (reply.code === 'ERR_QUORUM') return new QuorumError(op, reply.acked, reply.required, reply.required, [reply.message])
  if (reply.code === 'ERR_NO_DURABLE_REPLICA' && op !== 'get') return new NoDurableReplicaError(op, reply.acked, reply.required, reply.required, [reply.message])
  return new RemoteError(peer, reply.code, reply.message)
}

/** About how many bytes an entry takes on the wire (an upper estimate). */
export function entryBytes (e: Entry): number {
  let bytes = 16 + e.key.length * 3 + (e.state.vv.length >> 1) * 80
  for (const s of e.state.siblings) bytes += 96 + (s.value?.length ?? 0)
  return bytes
}

/** Splits entries into batches of at most `maxKeys` keys and about `maxBytes` bytes (one entry at least). */
export function * chunks (entries: readonly Entry[], maxKeys: number, maxBytes: number): Generator<readonly Entry[]> {
  let start = 0
  let bytes = 0
  for (let i = 0; i < entries.length; i++) {
    const size = entryBytes(entries[i]!)
    if (i > start && (i - start >= maxKeys || bytes + size > maxBytes)) {
      yield entries.slice(start, i)
      start = i
      bytes = 0
    }
    bytes += size
  }
  if (start < entries.length) yield entries.slice(start)
}
