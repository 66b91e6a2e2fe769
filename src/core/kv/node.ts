/**
 * The replicated key-value store of one peer, as a pure state machine over injected parts: the storage
 * engine, the ring and who is up (from membership), a transport to other peers, and a clock. It is the
 * coordinator for client requests, the replica that answers coordinators, and the background work that
 * keeps replicas complete (Dynamo, DeCandia et al. 2007; Riak's handoff and AAE):
 *
 * - put/delete: the coordinator — a replica of the key; any other peer forwards to one — applies the write
 *   to its own engine, which gives the new value the coordinator's next dot, makes it durable in its own log,
 *   then sends the resulting state to the other N-1 replicas of the preference list, and answers after W of
 *   them (itself included) have made it durable. Fewer than W: QuorumError with the acked count, never
 *   success.
 * - get: the coordinator asks the N replicas and merges the first R answers; once the rest answer (or time
 *   out), any replica whose state was behind the merge gets it (read repair).
 * - sloppy quorum: when a primary is down, the preference list continues with the next up member (a
 *   fallback). A fallback holds the key like any replica, durably in its own log; holding a key whose
 *   primaries do not include you is the hint. The handoff loop delivers such keys to all their primaries and
 *   drops them once every primary has acknowledged — which is also how ranges move to a member that joined.
 * - anti-entropy: round-robin with each peer that shares segments, compare hash trees (root, then segment
 *   hashes, then key digests) over the keys both replicate, and push and pull what differs.
 * - tombstones are reaped by the key's first primary once every primary holds the identical tombstone and
 *   it is older than the grace period.
 *
 * Timers live in the adapter (services/kv-service.ts, or the simulator), which calls the loop steps.
 */
import { raceAbort, throwIfAborted } from '../abort.js'
import { Emitter } from '../emitter.js'
import type { Clock, Logger } from '../env.js'
import { ConfigError, errorMessage, InvalidContextError, LeavingError, MeshkvError, QuorumError, RemoteError, TimeoutError, UnreachableError, ValueTooLargeError } from '../errors.js'
import { type PreferenceEntry, type Ring, SEGMENT_COUNT, segmentOf } from '../ring/ring.js'
import type { StorageEngine } from '../storage/engine.js'
import { decodeContext, encodeContext } from '../version/context.js'
import { type KeyState, isDeleted, newestTs, stateEquals, sync, valuesOf } from '../version/dvv.js'
import { type Hlc, compareHlc } from '../version/hlc.js'
import { EMPTY_VV, type VersionVector } from '../version/vv.js'
import type { KvConfig } from './config.js'
import { Digests, type Hash64 } from './digest.js'
import { KeyIndex } from '../replication/key-index.js'
import { type ServiceView, mergeServices, parseServices, serviceOf, servicesJson } from './heartbeat.js'
import { type Entry, type KvReply, type KvRequest, parseJson } from './messages.js'

export type Channel = 'kv' | 'sync'

/** How far ahead of this peer's clock a context's counters may be (other peers' clocks, hot keys). */
export const CONTEXT_CLOCK_SKEW_MS = 86_400_000

export interface KvTransport {
  /** Sends a request to a peer and resolves with its reply; rejects (typed) if the peer cannot be reached
   * or does not answer in time. 'kv' carries client and replica requests, 'sync' bulk transfer. */
  request(to: string, channel: Channel, request: KvRequest, signal?: AbortSignal): Promise<KvReply>
}

export interface KvNodeOptions {
  engine: StorageEngine
  config: KvConfig
  hash64: Hash64
  transport: KvTransport
  clock: Clock
  log: Logger
}

export interface ReadOptions {
  /** Replies to wait for (1..N); default the mesh's R. */
  r?: number
  /** Primaries only (no fallbacks). */
  strict?: boolean
  signal?: AbortSignal
}

export interface WriteOptions {
  /** The context of an earlier get: the write supersedes what that read saw. */
  context?: string
  /** Acknowledgements to wait for (1..N); default the mesh's W. */
  w?: number
  strict?: boolean
  /** Last-writer-wins by hybrid logical clock instead of keeping siblings. */
  lww?: boolean
  /** Expire the key this long after its last write (puts only). */
  ttlMs?: number
  signal?: AbortSignal
}

export interface SiblingView {
  readonly value: Uint8Array
  /** Hybrid logical clock time of the write: wall ms and logical counter. */
  readonly wall: number
  readonly logical: number
  /** The replica that coordinated the write and its counter (the dot). */
  readonly replica: string
  readonly counter: number
}

export interface GetResult {
  readonly key: string
  /** Live values: none if the key is missing or deleted, more than one for concurrent writes (siblings). */
  readonly values: readonly Uint8Array[]
  readonly siblings: readonly SiblingView[]
  /** Opaque causal context: pass it to the next put or delete of the key. */
  readonly context: string
  /** Whether any replica had a tombstone and no value: the key was deleted. */
  readonly deleted: boolean
  /** How many replicas answered before this result was returned. */
  readonly replies: number
}

export interface PutResult {
  readonly key: string
  /** Context of the written version: a put with it supersedes this write. */
  readonly context: string
  /** Replicas that acknowledged before the result was returned (at least W). */
  readonly acks: number
}

export interface ReplicaView {
  readonly id: string
  readonly role: 'primary' | 'fallback'
  readonly hintFor?: string
  readonly up: boolean
  /** The replica's state of the key (null if it holds none), or undefined with `error` if it did not answer. */
  readonly state?: KeyState | null
  readonly error?: string
}

export interface KvStats {
  puts: number
  gets: number
  deletes: number
  forwarded: number
  quorumFailures: number
  readRepairs: number
  hintsPending: number
  handedOff: number
  dropped: number
  syncRounds: number
  syncRepairs: number
  reaped: number
  badRequests: number
}

/** A change this peer made: a write it coordinated, or an expiry by its TTL sweep. */
export interface ChangeEvent {
  readonly type: 'put' | 'delete' | 'expired'
  readonly key: string
  /** This peer (the coordinator or the replica whose sweep expired the key). */
  readonly replica: string
  /** When, by the write's hybrid logical clock (wall ms). */
  readonly wall: number
  /** The key's state here before the change (undefined: absent). */
  readonly prior: KeyState | undefined
  /** The key's state after it. */
  readonly state: KeyState
}

export interface KvEvents extends Record<string, unknown> {
  change: ChangeEvent
}

/** What a peer reports of itself to dashboards (the `info` request). */
export interface PeerInfo {
  readonly id: string
  readonly keys: number
  readonly walBytes: number
  readonly stats: KvStats
  /** Client operations (put, get, delete) this peer coordinated or forwarded: count and latency in ms over
   * the last LATENCY_SAMPLES of them. */
  readonly ops: number
  readonly latency: { readonly samples: number; readonly p50: number; readonly p99: number }
}

export const LATENCY_SAMPLES = 1024

export interface SyncResult {
  readonly peer: string
  readonly equal: boolean
  readonly pushed: number
  readonly pulled: number
}

interface Held {
  readonly state: KeyState
  readonly ttlMs: number
}

function errorReply (error: unknown): KvReply {
  if (error instanceof QuorumError) return { type: 'error', code: error.code, message: error.message, acked: error.acked, required: error.required }
  if (error instanceof MeshkvError) return { type: 'error', code: error.code, message: error.message, acked: 0, required: 0 }
  return { type: 'error', code: 'ERR_INTERNAL', message: errorMessage(error), acked: 0, required: 0 }
}

/** The error a reply stands for: quorum failures keep their type, everything else names the remote code. */
export function replyError (peer: string, reply: KvReply, op: 'put' | 'delete' | 'get'): Error {
  if (reply.type !== 'error') return new RemoteError(peer, 'ERR_UNEXPECTED_REPLY', `unexpected reply ${reply.type}`)
  if (reply.code === 'ERR_QUORUM') return new QuorumError(op, reply.acked, reply.required, reply.required, [reply.message])
  return new RemoteError(peer, reply.code, reply.message)
}

/**
 * Waits until `required` of `tasks` succeed (resolves with how many had) or so many failed that they cannot
 * (rejects through `fail`). Tasks keep running afterwards; their outcomes are ignored.
 */
function quorum (tasks: ReadonlyArray<Promise<unknown>>, required: number, fail: (acked: number, reasons: string[]) => Error, signal?: AbortSignal): Promise<number> {
  return raceAbort(new Promise<number>((resolve, reject) => {
    let acked = 0
    let failed = 0
    const reasons: string[] = []
    if (tasks.length < required) {
      // Still wait for what there is, so the error reports the real acked count.
      Promise.allSettled(tasks).then(results => {
        for (const r of results) if (r.status === 'fulfilled') acked++; else reasons.push(errorMessage(r.reason))
        reject(fail(acked, reasons))
      }, reject)
      return
    }
    for (const t of tasks) {
      t.then(() => {
        if (++acked === required) resolve(acked)
      }, error => {
        reasons.push(errorMessage(error))
        if (++failed === tasks.length - required + 1) reject(fail(acked, reasons))
      })
    }
  }), signal)
}

export class KvNode {
  readonly id: string
  readonly events: Emitter<KvEvents>
  private readonly counters: Omit<KvStats, 'hintsPending'> = { puts: 0, gets: 0, deletes: 0, forwarded: 0, quorumFailures: 0, readRepairs: 0, handedOff: 0, dropped: 0, syncRounds: 0, syncRepairs: 0, reaped: 0, badRequests: 0 }
  private readonly engine: StorageEngine
  private readonly config: KvConfig
  private readonly transport: KvTransport
  private readonly clock: Clock
  private readonly log: Logger
  private readonly digests: Digests
  private ringNow: Ring
  private isUpNow: (id: string) => boolean = () => true
  /** Hints, tombstones, heartbeat keys, keys by segment and the hash tree, kept by the engine's changes. */
  private readonly index: KeyIndex
  /** Which primaries acknowledged a state this peer holds for others (by state object: a change resends). */
  private readonly deliveredTo = new WeakMap<KeyState, Set<string>>()
  private syncCursor = 0
  private diffCursor = 0
  private leaving = false
  private readonly latencies = new Float64Array(LATENCY_SAMPLES)
  private latencyCount = 0
  private sharedCache: { ring: Ring; shared: Map<string, number[]> } | null = null

  constructor (ring: Ring, options: KvNodeOptions) {
    this.engine = options.engine
    this.id = options.engine.replicaId
    this.config = options.config
    this.transport = options.transport
    this.clock = options.clock
    this.log = options.log
    this.digests = new Digests(options.hash64)
    this.events = new Emitter<KvEvents>(error => { this.log.error('kv change listener threw', error) })
    this.ringNow = ring
    this.index = new KeyIndex(this.id, this.config.n, this.digests, ring)
    this.index.rebuild(ring, this.engine.entries())
    this.engine.onChange = (key, prior, state) => { this.index.note(key, prior, state) }
    // An expiry is a write by this replica: send it to the key's other replicas once durable (the handoff
    // loop and anti-entropy cover any that miss it).
    this.engine.events.on('expired', e => { this.expired(e.key, e.state, e.expired) })
    this.engine.onExpiring = (key, state) => {
      this.checkExpiry(key, state).catch(error => { this.log.debug(`expiry check of ${key} failed: ${errorMessage(error)}`) })
    }
  }

  /**
   * A key's TTL ran out here. Before expiring it, ask the key's other up replicas: one may hold a newer
   * write this replica missed (it was down or restarting while the beats went elsewhere). Newer states are
   * merged, which refreshes the key; only if none is newer (or none answers) does this replica expire it.
   */
  private async checkExpiry (key: string, state: KeyState): Promise<void> {
    const others = this.primariesOf(key).filter(id => id !== this.id && this.isUp(id))
    const replies = await Promise.allSettled(others.map(async id => await this.transport.request(id, 'kv', { type: 'read', key })))
    if (others.length > 0 && replies.every(r => r.status === 'rejected')) {
      // Cut off from every other replica SWIM still lists as up: they may have the beats. Try again at the
      // next sweep; once SWIM declares them dead this replica decides alone.
      this.engine.postponeExpiry(key)
      return
    }
    const newer: Entry[] = []
    for (const r of replies) {
      if (r.status !== 'fulfilled' || r.value.type !== 'state' || r.value.state === null) continue
      if (!stateEquals(sync(state, r.value.state), state)) newer.push({ key, ttlMs: r.value.ttlMs, state: r.value.state })
    }
    if (newer.length > 0) {
      try {
        await this.mergeLocal(newer)
      } catch (error) {
        this.log.debug(`merging newer states of ${key} before expiry failed: ${errorMessage(error)}`)
      }
      // A merge that changed the state refreshed its credits; if it did not, expire at once.
      if (this.engine.state(key) !== state) return
    }
    this.engine.expire(key, state)
  }

  private expired (key: string, before: KeyState, after: KeyState): void {
    const entry: Entry = { key, ttlMs: 0, state: after }
    // The expiry is a write with a new dot, logged without waiting: it is shared once durable (durable()).
    this.engine.durable().then(() => {
      for (const id of this.primariesOf(key)) {
        if (id === this.id || !this.isUp(id)) continue
        this.replicate(id, 'kv', [entry]).catch(error => { this.log.debug(`sending the expiry of ${key} to ${id} failed: ${errorMessage(error)}`) })
      }
    }, error => { this.log.debug(`the expiry of ${key} did not become durable: ${errorMessage(error)}`) })
    this.events.emit('change', { type: 'expired', key, replica: this.id, wall: newestTs(after)?.wall ?? this.clock.nowMs(), prior: before, state: after })
  }

  /** Counters since start, and the keys held here for others (hints pending). */
  get stats (): KvStats { return { ...this.counters, hintsPending: this.index.foreign.size } }

  get ring (): Ring { return this.ringNow }

  isUp (id: string): boolean { return id === this.id || this.isUpNow(id) }

  /** Membership changed: the ring (if its members changed) and who is up. */
  setMembership (ring: Ring, isUp: (id: string) => boolean): void {
    this.isUpNow = isUp
    if (ring === this.ringNow) return
    this.ringNow = ring
    this.sharedCache = null
    this.index.rebuild(ring, this.engine.entries())
  }

  private primariesOf (key: string): string[] {
    return this.ringNow.primaries(this.ringNow.position(key), this.config.n)
  }

  /** The members a request for `key` goes to, in order: up primaries, then fallbacks (unless strict). */
  preference (key: string, strict = this.config.strictQuorum): PreferenceEntry[] {
    const list = this.ringNow.preferenceList(this.ringNow.position(key), this.config.n, id => this.isUp(id))
    return strict ? list.filter(e => e.role === 'primary') : list
  }

  private checkCount (name: 'r' | 'w', value: number | undefined): number {
    const v = value ?? this.config[name]
    if (!Number.isInteger(v) || v < 1 || v > this.config.n) throw new ConfigError(name, `must be an integer in [1, ${this.config.n}] (N), got ${String(v)}`)
    return v
  }

  /**
   * Counters are at most about the wall clock (update() issues max(previous + 1, now)); one far ahead can
   * only be forged, and would push the key's counter past what contexts can carry.
   */
  private checkContext (vv: VersionVector): void {
    const limit = this.clock.nowMs() + CONTEXT_CLOCK_SKEW_MS
    for (let i = 1; i < vv.length; i += 2) {
      if ((vv[i] as number) > limit) throw new InvalidContextError(`counter ${vv[i] as number} is ahead of this peer's clock by more than ${CONTEXT_CLOCK_SKEW_MS} ms`)
    }
  }

  // ------------------------------------------------------------ client operations

  put (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<PutResult> {
    if (!(value instanceof Uint8Array)) return Promise.reject(new TypeError('value must be a Uint8Array'))
    // A copy: the stored value must not change if the caller reuses its buffer.
    return this.timed(this.write(key, new Uint8Array(value), options))
  }

  delete (key: string, options: Omit<WriteOptions, 'ttlMs'> = {}): Promise<PutResult> {
    return this.timed(this.write(key, null, options))
  }

  /** Records a client operation's latency (successful or not) for `info()`. */
  private timed<T> (op: Promise<T>): Promise<T> {
    const start = this.clock.nowMs()
    const record = (): void => { this.latencies[this.latencyCount++ % LATENCY_SAMPLES] = this.clock.nowMs() - start }
    op.then(record, record)
    return op
  }

  /** Another member's figures (or this peer's), for dashboards. Malformed replies become DecodeError. */
  async peerInfo (id: string, signal?: AbortSignal): Promise<PeerInfo> {
    if (id === this.id) return this.info()
    const reply = await this.transport.request(id, 'kv', { type: 'info' }, signal)
    if (reply.type !== 'info') throw replyError(id, reply, 'get')
    return parseInfo(id, reply.json)
  }

  /** The heartbeat services this replica holds records of, sorted by id. */
  localServices (): ServiceView[] {
    const out: ServiceView[] = []
    for (const key of this.index.heartbeats) {
      const state = this.engine.state(key)
      const service = state === undefined ? null : serviceOf(key, state)
      if (service !== null) out.push(service)
    }
    return out.sort(byId)
  }

  /**
   * Every heartbeat service in the mesh: the records of every up member merged (per service, the one with
   * the newest beat; an expiry over the alive record of the same beat). `failed` counts members that did
   * not answer (their services may be missing if no other replica holds them).
   */
  async meshServices (signal?: AbortSignal): Promise<{ services: ServiceView[]; asked: number; failed: number }> {
    const members = this.ringNow.members.map(m => m.id).filter(id => this.isUp(id))
    const merged = new Map<string, ServiceView>()
    mergeServices(merged, this.localServices())
    let failed = 0
    await Promise.all(members.filter(id => id !== this.id).map(async id => {
      try {
        const reply = await this.transport.request(id, 'kv', { type: 'services' }, signal)
        if (reply.type !== 'info') throw replyError(id, reply, 'get')
        mergeServices(merged, parseServices(reply.json))
      } catch (error) {
        failed++
        this.log.debug(`services of ${id}: ${errorMessage(error)}`)
      }
    }))
    return { services: [...merged.values()].sort(byId), asked: members.length, failed }
  }

  /** This peer's figures for dashboards. */
  info (): PeerInfo {
    const n = Math.min(this.latencyCount, LATENCY_SAMPLES)
    const sorted = Array.from(this.latencies.subarray(0, n)).sort((a, b) => a - b)
    const at = (q: number): number => n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(q * n))]!
    return {
      id: this.id,
      keys: this.engine.size,
      walBytes: this.engine.walBytes(),
      stats: this.stats,
      ops: this.latencyCount,
      latency: { samples: n, p50: at(0.5), p99: at(0.99) }
    }
  }

  private async write (key: string, value: Uint8Array | null, options: WriteOptions): Promise<PutResult> {
    this.engine.checkKey(key)
    // The engine checks too; checking here fails fast on a peer that would forward.
    if (value !== null && value.length > this.engine.config.valueBytesMax) throw new ValueTooLargeError(value.length, this.engine.config.valueBytesMax)
    const w = this.checkCount('w', options.w)
    const ctx = options.context === undefined || options.context === '' ? { vv: EMPTY_VV, ts: null } : decodeContext(options.context)
    this.checkContext(ctx.vv)
    throwIfAborted(options.signal)
    const op = value === null ? 'delete' : 'put'
    if (value === null) this.counters.deletes++
    else this.counters.puts++
    const pref = this.preference(key, options.strict)
    if (!pref.some(e => e.id === this.id)) {
      const reply = await this.forward(pref, { type: 'put', key, value, context: ctx.vv, ts: ctx.ts, lww: options.lww === true, ttlMs: options.ttlMs ?? 0, w, strict: options.strict ?? this.config.strictQuorum }, op, w, options.signal)
      if (reply.type !== 'put') throw replyError(pref[0]!.id, reply, op)
      return { key, context: encodeContext(reply.state.vv, newestTs(reply.state) ?? null), acks: reply.acks }
    }
    const { state, acks } = await this.coordinateWrite(key, value, ctx.vv, ctx.ts, pref, w, options)
    return { key, context: encodeContext(state.vv, newestTs(state) ?? null), acks }
  }

  private async coordinateWrite (key: string, value: Uint8Array | null, context: VersionVector, ts: Hlc | null, pref: PreferenceEntry[], w: number, options: { lww?: boolean; ttlMs?: number; signal?: AbortSignal }): Promise<{ state: KeyState; acks: number }> {
    const op = value === null ? 'delete' : 'put'
    if (this.leaving) throw new LeavingError(this.id)
    const before = this.engine.state(key)
    const local = this.engine.writeLocal(key, value, { context, contextTs: ts, lww: options.lww, ...(value === null ? {} : { ttlMs: options.ttlMs }) })
    const entry: Entry = { key, ttlMs: this.engine.ttl(key), state: local.state }
    // The new dot must be durable here before any other replica sees it: a coordinator that crashed with
    // its dot on others but not in its own log would issue the same dot again for a different value, and
    // replicas would keep either one. (With async durability the record reaches the OS within this turn,
    // so only a crash of the machine can do that; see the README.)
    await raceAbort(local.done, options.signal)
    const tasks: Array<Promise<unknown>> = [Promise.resolve()]
    for (const e of pref) {
      if (e.id !== this.id) tasks.push(this.replicate(e.id, 'kv', [entry], options.signal))
    }
    try {
      const acks = await quorum(tasks, w, (acked, reasons) => new QuorumError(op, acked, w, tasks.length, reasons), options.signal)
      this.events.emit('change', { type: op, key, replica: this.id, wall: newestTs(local.state)?.wall ?? this.clock.nowMs(), prior: before, state: local.state })
      return { state: local.state, acks }
    } catch (error) {
      if (error instanceof QuorumError) this.counters.quorumFailures++
      throw error
    }
  }

  private async replicate (to: string, channel: 'kv' | 'sync', entries: Entry[], signal?: AbortSignal): Promise<void> {
    const reply = await this.transport.request(to, channel, { type: 'merge', entries }, signal)
    if (reply.type !== 'ok') throw replyError(to, reply, 'put')
  }

  /** Sends a client request to a replica that can coordinate it; tries the next one if the first is unreachable. */
  private async forward (pref: PreferenceEntry[], request: KvRequest, op: 'put' | 'delete' | 'get', required: number, signal?: AbortSignal): Promise<KvReply> {
    if (pref.length === 0) {
      this.counters.quorumFailures++
      throw new QuorumError(op, 0, required, 0, ['no replica of the key is up'])
    }
    this.counters.forwarded++
    const reasons: string[] = []
    for (const e of pref.slice(0, 2)) {
      try {
        const reply = await this.transport.request(e.id, 'kv', request, signal)
        // A leaving replica applied nothing: the next one can take the request.
        if (reply.type === 'error' && reply.code === 'ERR_LEAVING') {
          reasons.push(`${e.id}: leaving`)
          continue
        }
        return reply
      } catch (error) {
        throwIfAborted(signal)
        reasons.push(`${e.id}: ${errorMessage(error)}`)
        // Only a peer that never got the request is safe to replace: one that timed out may have applied
        // the write, and a second coordinator would add a second copy of it as a sibling.
        if (!(error instanceof UnreachableError)) break
      }
    }
    this.counters.quorumFailures++
    throw new QuorumError(op, 0, required, pref.length, reasons)
  }

  get (key: string, options: ReadOptions = {}): Promise<GetResult> {
    return this.timed(this.read(key, options))
  }

  private async read (key: string, options: ReadOptions): Promise<GetResult> {
    this.engine.checkKey(key)
    const r = this.checkCount('r', options.r)
    throwIfAborted(options.signal)
    this.counters.gets++
    const pref = this.preference(key, options.strict)
    if (!pref.some(e => e.id === this.id)) {
      const reply = await this.forward(pref, { type: 'get', key, r, strict: options.strict ?? this.config.strictQuorum }, 'get', r, options.signal)
      if (reply.type !== 'get') throw replyError(pref[0]!.id, reply, 'get')
      return toResult(key, reply.state, reply.replies)
    }
    const { state, replies } = await this.coordinateRead(key, pref, r, options.signal)
    return toResult(key, state, replies)
  }

  private async coordinateRead (key: string, pref: PreferenceEntry[], r: number, signal?: AbortSignal): Promise<{ state: KeyState | null; replies: number }> {
    const answers = new Map<string, Held | null>()
    let merged: KeyState | null = null
    let ttlMs = 0
    let newestSeen: Hlc | null = null
    const take = (id: string, held: Held | null): void => {
      answers.set(id, held)
      if (held === null) return
      merged = merged === null ? held.state : sync(merged, held.state)
      // The TTL goes with the newest write: the answer that holds it decides (a stale TTL must not ride on
      // a newer state, say an expiry record).
      const newest = newestTs(held.state)
      if (newest !== undefined && (newestSeen === null || compareHlc(newest, newestSeen) > 0)) { newestSeen = newest; ttlMs = held.ttlMs }
    }
    const tasks = pref.map(async e => {
      if (e.id === this.id) {
        const state = this.engine.state(key)
        const held = state === undefined ? null : { state, ttlMs: this.engine.ttl(key) }
        await this.engine.durable()
        take(e.id, held)
        return
      }
      const reply = await this.transport.request(e.id, 'kv', { type: 'read', key })
      if (reply.type !== 'state') throw replyError(e.id, reply, 'get')
      take(e.id, reply.state === null ? null : { state: reply.state, ttlMs: reply.ttlMs })
    })
    // Read repair once everyone answered or failed; it runs after the client has its answer.
    void Promise.allSettled(tasks).then(() => { this.readRepair(key, answers, merged, ttlMs) })
    try {
      const replies = await quorum(tasks, r, (acked, reasons) => new QuorumError('get', acked, r, tasks.length, reasons), signal)
      return { state: merged, replies }
    } catch (error) {
      if (error instanceof QuorumError) this.counters.quorumFailures++
      throw error
    }
  }

  private readRepair (key: string, answers: Map<string, Held | null>, merged: KeyState | null, ttlMs: number): void {
    if (merged === null) return
    const entry: Entry = { key, ttlMs, state: merged }
    for (const [id, held] of answers) {
      if (held !== null && stateEquals(held.state, merged)) continue
      this.counters.readRepairs++
      if (id === this.id) {
        this.mergeLocal([entry]).catch(error => { this.log.debug(`read repair of ${key} here failed: ${errorMessage(error)}`) })
      } else {
        this.replicate(id, 'kv', [entry]).catch(error => { this.log.debug(`read repair of ${key} on ${id} failed: ${errorMessage(error)}`) })
      }
    }
  }

  /** The key's preference list with each replica's state, for inspection (`GET /kv/:key/placement`). */
  async placement (key: string, signal?: AbortSignal): Promise<{ position: number; segment: number; primaries: string[]; replicas: ReplicaView[] }> {
    this.engine.checkKey(key)
    const position = this.ringNow.position(key)
    const primaries = this.ringNow.primaries(position, this.config.n)
    const entries = this.preference(key, false)
    const ids = new Set(entries.map(e => e.id))
    // Down primaries are listed too, so the caller sees whom fallbacks stand in for.
    const all: Array<{ id: string; role: 'primary' | 'fallback'; hintFor?: string }> = [...entries]
    for (const p of primaries) if (!ids.has(p)) all.push({ id: p, role: 'primary' })
    const replicas = await Promise.all(all.map(async (e): Promise<ReplicaView> => {
      const base = { id: e.id, role: e.role, up: this.isUp(e.id), ...(e.hintFor === undefined ? {} : { hintFor: e.hintFor }) }
      if (e.id === this.id) return { ...base, state: this.engine.state(key) ?? null }
      if (!base.up) return { ...base, error: 'down' }
      try {
        const reply = await this.transport.request(e.id, 'kv', { type: 'read', key }, signal)
        if (reply.type !== 'state') throw replyError(e.id, reply, 'get')
        return { ...base, state: reply.state }
      } catch (error) {
        return { ...base, error: errorMessage(error) }
      }
    }))
    return { position, segment: segmentOf(position), primaries, replicas }
  }

  // ------------------------------------------------------------ serving other peers

  /** Answers a request from another peer. Never throws: failures become error replies. */
  async handle (from: string, request: KvRequest): Promise<KvReply> {
    try {
      switch (request.type) {
        case 'merge':
          // A leaving peer takes no more data: what it acknowledged now might miss its final handoff.
          if (this.leaving) throw new LeavingError(this.id)
          await this.mergeLocal(request.entries)
          return { type: 'ok' }
        case 'read': {
          this.engine.checkKey(request.key)
          const state = this.engine.state(request.key)
          const ttlMs = state === undefined ? 0 : this.engine.ttl(request.key)
          await this.engine.durable() // see durable(): a state leaves this replica only once durable here
          return { type: 'state', state: state ?? null, ttlMs }
        }
        case 'put': {
          const w = this.checkCount('w', request.w)
          this.checkContext(request.context)
          this.engine.checkKey(request.key)
          const pref = this.preference(request.key, request.strict)
          if (!pref.some(e => e.id === this.id)) throw new QuorumError(request.value === null ? 'delete' : 'put', 0, w, 0, [`${this.id} is not a replica of the key in its view of the ring`])
          if (request.value === null) this.counters.deletes++
          else this.counters.puts++
          const { state, acks } = await this.coordinateWrite(request.key, request.value, request.context, request.ts, pref, w, { lww: request.lww, ttlMs: request.ttlMs })
          return { type: 'put', state, acks }
        }
        case 'get': {
          const r = this.checkCount('r', request.r)
          this.engine.checkKey(request.key)
          const pref = this.preference(request.key, request.strict)
          if (!pref.some(e => e.id === this.id)) throw new QuorumError('get', 0, r, 0, [`${this.id} is not a replica of the key in its view of the ring`])
          this.counters.gets++
          const { state, replies } = await this.coordinateRead(request.key, pref, r)
          return { type: 'get', state, replies }
        }
        case 'sync-root': return { type: 'sync-root', equal: this.digests.root(this.leaves(from, request.segments)) === request.root }
        case 'sync-leaves': return this.diffLeaves(from, request.segments, request.hashes)
        case 'pull': {
          // Up to half a message of states; the rest are pulled in a later round.
          const entries: Entry[] = []
          let bytes = 0
          for (const key of request.keys) {
            const state = this.engine.state(key)
            if (state === undefined) continue
            const entry = { key, ttlMs: this.engine.ttl(key), state }
            bytes += entryBytes(entry)
            if (entries.length > 0 && bytes > this.config.messageBytesMax / 2) break
            entries.push(entry)
          }
          await this.engine.durable()
          return { type: 'entries', entries }
        }
        case 'info': return { type: 'info', json: JSON.stringify(this.info()) }
        case 'services': return { type: 'info', json: servicesJson(this.localServices()) }
        case 'reap': {
          if (this.engine.reap(request.key, request.state)) this.counters.reaped++
          return { type: 'ok' }
        }
      }
    } catch (error) {
      if (!(error instanceof QuorumError)) this.counters.badRequests++
      return errorReply(error)
    }
  }

  private async mergeLocal (entries: readonly Entry[]): Promise<void> {
    const done: Array<Promise<unknown>> = []
    for (const e of entries) done.push(this.engine.merge(e.key, e.state, { ttlMs: e.ttlMs }))
    await Promise.all(done)
  }

  /** Sends entries to a peer in messages of at most `handoffBatchKeys` keys and half the message limit. */
  private async send (to: string, entries: readonly Entry[], signal: AbortSignal | undefined, sent: (chunk: readonly Entry[]) => void): Promise<number> {
    let failed = 0
    let done = 0
    for (const chunk of chunks(entries, this.config.handoffBatchKeys, this.config.messageBytesMax / 2)) {
      throwIfAborted(signal)
      try {
        await this.replicate(to, 'sync', [...chunk], signal)
        sent(chunk)
      } catch (error) {
        failed += chunk.length
        this.log.debug(`sending ${chunk.length} keys to ${to} failed: ${errorMessage(error)}`)
        // An unreachable peer fails every chunk: stop; other failures concern this chunk only.
        if (error instanceof UnreachableError || error instanceof TimeoutError) return failed + (entries.length - done - chunk.length)
      }
      done += chunk.length
    }
    return failed
  }

  // ------------------------------------------------------------ handoff: hints and rebalancing

  /**
   * One turn of the handoff loop: sends keys held here for others (hints, ranges that moved) to those of
   * their primaries that are up and have not acknowledged that exact state yet, at most
   * `handoffKeysPerTurn` keys a turn, and drops each once every primary has acknowledged it (durably) and
   * this peer is still not a primary. Keys examined move to the back of the line, so none starves. Then
   * reaps tombstones. Returns what it did.
   */
  async handoff (signal?: AbortSignal): Promise<{ delivered: number; dropped: number; reaped: number }> {
    const batches = new Map<string, Entry[]>()
    const examined: string[] = []
    let budget = this.config.handoffKeysPerTurn
    /** Every key looked at, with the state it had: dropped below if all its primaries have acknowledged it. */
    const candidates: Array<[string, KeyState]> = []
    for (const key of this.index.foreign) {
      if (budget <= 0 || examined.length >= 4 * this.config.handoffKeysPerTurn) break
      examined.push(key)
      const state = this.engine.state(key)
      if (state === undefined) continue
      const primaries = this.primariesOf(key)
      if (primaries.includes(this.id)) continue
      candidates.push([key, state])
      const acked = this.deliveredTo.get(state)
      const targets = primaries.filter(id => this.isUp(id) && acked?.has(id) !== true)
      if (targets.length === 0) continue
      budget--
      const entry: Entry = { key, ttlMs: this.engine.ttl(key), state }
      for (const id of targets) {
        let batch = batches.get(id)
        if (batch === undefined) batches.set(id, batch = [])
        batch.push(entry)
      }
    }
    let delivered = 0
    if (batches.size > 0) await this.engine.durable()
    await Promise.all([...batches].map(async ([id, entries]) => {
      await this.send(id, entries, signal, chunk => {
        delivered += chunk.length
        for (const e of chunk) {
          let acked = this.deliveredTo.get(e.state)
          if (acked === undefined) this.deliveredTo.set(e.state, acked = new Set())
          acked.add(id)
        }
      })
    }))
    let dropped = 0
    for (const [key, state] of candidates) {
      // In the current ring (it may have changed while sending): still not a primary, every primary has
      // acknowledged, and the state is still the one they acknowledged.
      const primaries = this.primariesOf(key)
      const acked = this.deliveredTo.get(state)
      if (primaries.includes(this.id) || acked === undefined || !primaries.every(id => acked.has(id)) || this.engine.state(key) !== state) continue
      if (this.engine.drop(key, state)) dropped++
    }
    for (const key of examined) if (this.index.foreign.delete(key)) this.index.foreign.add(key)
    this.counters.handedOff += delivered
    this.counters.dropped += dropped
    const reaped = await this.reapTombstones(signal)
    return { delivered, dropped, reaped }
  }

  /**
   * Reaps tombstones this peer is the first primary of, once every primary is up and holds the identical
   * tombstone and the newest write is older than the grace period.
   */
  private async reapTombstones (signal?: AbortSignal): Promise<number> {
    const now = this.clock.nowMs()
    let reaped = 0
    let budget = this.config.handoffBatchKeys
    const examined: string[] = []
    for (const key of this.index.tombstones) {
      if (budget <= 0 || examined.length >= 4 * this.config.handoffKeysPerTurn) break
      examined.push(key)
      const state = this.engine.state(key)
      if (state === undefined || !isDeleted(state)) continue
      if ((newestTs(state)?.wall ?? 0) + this.config.tombstoneGraceMs > now) continue
      const primaries = this.primariesOf(key)
      if (primaries[0] !== this.id || !primaries.every(id => this.isUp(id))) continue
      budget--
      const others = primaries.filter(id => id !== this.id)
      try {
        const replies = await Promise.all(others.map(async id => await this.transport.request(id, 'sync', { type: 'read', key }, signal)))
        if (!replies.every(r => r.type === 'state' && r.state !== null && stateEquals(r.state, state))) continue
        await Promise.all(others.map(async id => await this.transport.request(id, 'sync', { type: 'reap', key, state }, signal)))
      } catch (error) {
        this.log.debug(`reaping ${key} postponed: ${errorMessage(error)}`)
        continue
      }
      if (this.engine.reap(key, state)) reaped++
    }
    for (const key of examined) {
      const state = this.engine.state(key)
      if (state === undefined || !isDeleted(state)) this.index.tombstones.delete(key)
      else if (this.index.tombstones.delete(key)) this.index.tombstones.add(key) // to the back of the line
    }
    this.counters.reaped += reaped
    return reaped
  }

  /** Refuse writes from now on (the first step of a graceful leave). */
  beginLeaving (): void {
    this.leaving = true
  }

  /**
   * Before a graceful leave: from now on this peer refuses writes (what it acknowledged later could miss
   * this handoff), and every key it holds goes to its primaries in the ring without this peer; resolves when
   * they acknowledged. Keys with no such primary up count as failed.
   */
  async handOffAll (ringWithout: Ring, progress: (done: number, total: number) => void, signal?: AbortSignal): Promise<{ delivered: number; failed: number }> {
    this.beginLeaving()
    const batches = new Map<string, Entry[]>()
    let failed = 0
    for (const [key, state] of this.engine.entries()) {
      const entry: Entry = { key, ttlMs: this.engine.ttl(key), state }
      let targets = 0
      for (const id of ringWithout.primaries(ringWithout.position(key), this.config.n)) {
        if (!this.isUp(id) || id === this.id) continue
        targets++
        let batch = batches.get(id)
        if (batch === undefined) batches.set(id, batch = [])
        batch.push(entry)
      }
      if (targets === 0) failed++
    }
    let delivered = 0
    await this.engine.durable()
    const total = [...batches.values()].reduce((a, b) => a + b.length, 0)
    await Promise.all([...batches].map(async ([id, entries]) => {
      failed += await this.send(id, entries, signal, chunk => {
        delivered += chunk.length
        progress(delivered, total)
      })
    }))
    this.counters.handedOff += delivered
    return { delivered, failed }
  }

  // ------------------------------------------------------------ anti-entropy

  /** Segments that both this peer and `peer` replicate some part of, in the current ring. */
  private shared (peer: string): number[] {
    if (this.sharedCache?.ring !== this.ringNow) this.sharedCache = { ring: this.ringNow, shared: new Map() }
    let segments = this.sharedCache.shared.get(peer)
    if (segments === undefined) {
      segments = []
      for (let s = 0; s < SEGMENT_COUNT; s++) {
        const replicas = this.ringNow.segmentReplicas(s, this.config.n)
        if (replicas.includes(this.id) && replicas.includes(peer)) segments.push(s)
      }
      this.sharedCache.shared.set(peer, segments)
    }
    return segments
  }

  /** Calls `visit` for every key held here, in `segments`, that both this peer and `peer` are primaries of. */
  private forShared (peer: string, segments: Iterable<number>, visit: (key: string, state: KeyState) => void): void {
    for (const segment of segments) {
      for (const key of this.index.bySegment[segment]!) {
        const state = this.engine.state(key)
        if (state === undefined) continue
        const primaries = this.primariesOf(key)
        if (primaries.includes(this.id) && primaries.includes(peer)) visit(key, state)
      }
    }
  }

  /** Segment hashes (2 numbers each) of the keys shared with `peer`, in the order of `segments`. */
  private leaves (peer: string, segments: readonly number[]): number[] {
    const leaves = this.index.pairLeaves.get(peer)
    const out: number[] = []
    for (const s of segments) out.push(leaves?.[2 * s] ?? 0, leaves?.[2 * s + 1] ?? 0)
    return out
  }

  private diffLeaves (peer: string, segments: readonly number[], hashes: readonly number[]): KvReply {
    const mine = this.leaves(peer, segments)
    const differing: number[] = []
    segments.forEach((s, i) => {
      if (mine[2 * i] !== hashes[2 * i] || mine[2 * i + 1] !== hashes[2 * i + 1]) differing.push(s)
    })
    // Whole segments only, up to the round's key budget (at least one segment), so the other side knows
    // exactly which segments the list covers; starting further along each time, so none starves.
    const start = differing.length === 0 ? 0 : this.diffCursor++ % differing.length
    const covered: number[] = []
    const keys: string[] = []
    const out: number[] = []
    let truncated = false
    for (let i = 0; i < differing.length; i++) {
      const s = differing[(start + i) % differing.length]!
      const list: Array<[string, readonly [number, number]]> = []
      this.forShared(peer, [s], (key, state) => { list.push([key, this.digests.of(key, state)]) })
      if (covered.length > 0 && keys.length + list.length > this.config.syncKeysPerRound) { truncated = true; break }
      covered.push(s)
      for (const [key, [hi, lo]] of list) { keys.push(key); out.push(hi, lo) }
    }
    return { type: 'digests', segments: covered, keys, hashes: out, truncated }
  }

  /** The next peer that shares segments with this one, round-robin over up ring members. */
  private nextSyncPeer (): string | null {
    const peers = this.ringNow.members.map(m => m.id).filter(id => id !== this.id && this.isUp(id)).sort()
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[(this.syncCursor + i) % peers.length]!
      if (this.shared(peer).length > 0) {
        this.syncCursor = (this.syncCursor + i + 1) % peers.length
        return peer
      }
    }
    return null
  }

  /** One anti-entropy round with the next peer (or `peer`). Returns null if no peer shares segments. */
  async syncRound (peer?: string, signal?: AbortSignal): Promise<SyncResult | null> {
    const with_ = peer ?? this.nextSyncPeer()
    if (with_ === null) return null
    const segments = this.shared(with_)
    if (segments.length === 0) return { peer: with_, equal: true, pushed: 0, pulled: 0 }
    this.counters.syncRounds++
    const hashes = this.leaves(with_, segments)
    const rootReply = await this.transport.request(with_, 'sync', { type: 'sync-root', segments, root: this.digests.root(hashes) }, signal)
    if (rootReply.type === 'sync-root' && rootReply.equal) return { peer: with_, equal: true, pushed: 0, pulled: 0 }
    const reply = await this.transport.request(with_, 'sync', { type: 'sync-leaves', segments, hashes }, signal)
    if (reply.type !== 'digests') throw replyError(with_, reply, 'get')
    const covered = new Set(reply.segments)
    const theirs = new Map<string, [number, number]>()
    for (let i = 0; i < reply.keys.length; i++) theirs.set(reply.keys[i]!, [reply.hashes[2 * i]!, reply.hashes[2 * i + 1]!])
    const push: Entry[] = []
    const seen = new Set<string>()
    this.forShared(with_, covered, (key, state) => {
      seen.add(key)
      const t = theirs.get(key)
      const d = this.digests.of(key, state)
      if (t === undefined || t[0] !== d[0] || t[1] !== d[1]) push.push({ key, ttlMs: this.engine.ttl(key), state })
    })
    const pull: string[] = []
    for (const [key, t] of theirs) {
      if (!seen.has(key)) { pull.push(key); continue }
      const state = this.engine.state(key)!
      const d = this.digests.of(key, state)
      if (t[0] !== d[0] || t[1] !== d[1]) pull.push(key)
    }
    await this.engine.durable()
    await this.send(with_, push, signal, () => {})
    let pulled = 0
    for (let i = 0; i < pull.length; i += this.config.handoffBatchKeys) {
      const r = await this.transport.request(with_, 'sync', { type: 'pull', keys: pull.slice(i, i + this.config.handoffBatchKeys) }, signal)
      if (r.type !== 'entries') throw replyError(with_, r, 'get')
      await this.mergeLocal(r.entries)
      pulled += r.entries.length
    }
    this.counters.syncRepairs += push.length + pulled
    return { peer: with_, equal: false, pushed: push.length, pulled }
  }
}

/** Orders by `id` (plain code-unit order, the same everywhere). */
export function byId (a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** A remote info reply, checked field by field: numbers that are not finite become 0. */
function parseInfo (id: string, json: string): PeerInfo {
  const raw = parseJson(json, 'info reply')
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>
  const num = (v: unknown): number => typeof v === 'number' && Number.isFinite(v) ? v : 0
  const stats = (typeof o.stats === 'object' && o.stats !== null ? o.stats : {}) as Record<string, unknown>
  const latency = (typeof o.latency === 'object' && o.latency !== null ? o.latency : {}) as Record<string, unknown>
  const kvStats = Object.fromEntries(STAT_NAMES.map(k => [k, num(stats[k])])) as unknown as KvStats
  return { id, keys: num(o.keys), walBytes: num(o.walBytes), stats: kvStats, ops: num(o.ops), latency: { samples: num(latency.samples), p50: num(latency.p50), p99: num(latency.p99) } }
}

const STAT_NAMES: ReadonlyArray<keyof KvStats> = ['puts', 'gets', 'deletes', 'forwarded', 'quorumFailures', 'readRepairs', 'hintsPending', 'handedOff', 'dropped', 'syncRounds', 'syncRepairs', 'reaped', 'badRequests']

/** About how many bytes an entry takes on the wire (an upper estimate). */
function entryBytes (e: Entry): number {
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

export function toResult (key: string, state: KeyState | null, replies: number): GetResult {
  if (state === null) return { key, values: [], siblings: [], context: '', deleted: false, replies }
  const live = valuesOf(state)
  const siblings = live.map(s => ({ value: s.value!, wall: s.wall, logical: s.logical, replica: s.id, counter: s.n }))
  return {
    key,
    values: siblings.map(s => s.value),
    siblings,
    context: encodeContext(state.vv, newestTs(state) ?? null),
    deleted: live.length === 0 && state.siblings.length > 0,
    replies
  }
}
