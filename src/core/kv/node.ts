/**
 * The replicated store of one peer with a Promise API: a thin facade over the replication state machine
 * (replication/replication.ts) that performs its effects through injected parts — a transport to other
 * peers, the storage engine's durability, and an event emitter for changes. Client operations become
 * `call`s whose `complete` effect settles their promise; a peer's request becomes a `receive` whose `reply`
 * effect answers it; `persist` effects made in one turn share one wait for the log (group commit).
 *
 * The host (services/kv-service.ts) calls `tick()` when `nextWakeMs()` says: request timeouts and the
 * background loops (handoff, anti-entropy, the TTL sweep) are ticks of the machine, not timers of their own.
 */
import { raceAbort, throwIfAborted } from '../abort.js'
import { Emitter } from '../emitter.js'
import type { Clock } from '../env.js'
import { AbortError, OverloadedError, errorMessage } from '../errors.js'
import type { Ring } from '../ring/ring.js'
import type { Effect, PersistToken } from '../replication/flow.js'
import { type ServiceView, isExpiredService } from './heartbeat.js'
import { newestTs } from '../version/dvv.js'
import { holdsRecord } from '../replication/refresh.js'
import type { KvReply, KvRequest } from './messages.js'
import { type BackgroundPeriods, type Call, Replication } from '../replication/replication.js'
import type { ReplicationOptions } from '../replication/replica-state.js'
import type { ListOptions, ListResult } from './listing.js'
import { type DetectorState, HEALTH_LOG_SYNC_MS, HEALTH_LOOP_DELAY_MS } from '../replication/health.js'
import { localServices } from './services.js'
import type { GetResult, KvEvents, KvStats, PutResult, ReadOptions, ReplicaView, SyncResult, WriteOptions } from '../replication/types.js'

export type { Channel } from '../replication/flow.js'
export type { ChangeEvent, GetResult, KvEvents, KvStats, PutResult, ReadOptions, ReplicaView, SiblingView, SyncResult, WriteOptions } from '../replication/types.js'
export { replyError } from '../replication/replica-state.js'
export type { ListOptions, ListResult } from './listing.js'
export { byId } from './services.js'

export interface KvTransport {
  /** Sends a request to a peer and resolves with its reply; rejects (typed) if the peer cannot be reached
   * or does not answer in time. 'kv' carries client and replica requests, 'sync' bulk transfer. */
  request(to: string, channel: 'kv' | 'sync', request: KvRequest, signal?: AbortSignal): Promise<KvReply>
}

export interface KvNodeOptions extends ReplicationOptions {
  transport: KvTransport
  clock: Clock
  /** Periods of the background loops tick() runs; null (the default) runs none: the caller drives them. */
  background?: BackgroundPeriods | null
  /** Called once every client operation settles, successful or not (metrics, dashboards); see OpObserver. */
  observeOp?: OpObserver
}

/**
 * Past the beats' bound, the first beats of new services take at most 1/URGENT_NEW_SHARE of the urgent lane
 * (256 of 1,024 by default): the rest stays for services about to expire (KvNode.beatIsUrgent).
 */
export const URGENT_NEW_SHARE = 4

/** The client operations a KvNode observes: a heartbeat is a put of a heartbeat record, counted apart. */
export type ClientOp = 'get' | 'put' | 'delete' | 'heartbeat'

/**
 * Told how each client operation through this peer ended: its kind, its latency in ms (by the clock's
 * `monotonicMs` when it has one), its error (null on success) and, for a successful get that found live
 * values, how many it returned (siblings; undefined otherwise). Positional arguments, so observing allocates
 * nothing per operation; unset, operations are not timed at all.
 */
export type OpObserver = (op: ClientOp, latencyMs: number, error: Error | null, siblings: number | undefined) => void

interface Settle {
  resolve: (value: never) => void
  reject: (error: Error) => void
  /** Told when the machine completes the operation (admission and observation, see timed()). */
  settled: Settled | undefined
}

/** How a client operation ended: its error (null on success) and its value. */
type Settled = (error: Error | null, value: unknown) => void

export class KvNode {
  readonly id: string
  readonly events: Emitter<KvEvents>
  readonly machine: Replication
  private readonly transport: KvTransport
  private readonly clock: Clock
  private readonly observeOp: OpObserver | undefined
  private readonly elapsedMs: () => number
  private inFlight = 0
  private beatsInFlight = 0
  /** Of those, beats admitted past admitBeatsMax because their service was about to expire here, or new here (urgent: beatIsUrgent). */
  private urgentInFlight = 0
  private urgentAdmitted = 0
  /** Of the urgent ones, the first beats of new services (at most admitBeatsMax / URGENT_NEW_SHARE in flight). */
  private urgentNewInFlight = 0
  private urgentNewAdmitted = 0
  private refused = 0
  /** Beats refused that renewed their key here all the same (refreshRefused). */
  private refusedRefreshed = 0
  /** Start times (host clock) of this peer's own log syncs still pending, oldest first (insertion order). */
  private readonly syncing = new Map<object, number>()

  constructor (ring: Ring, private readonly options: KvNodeOptions) {
    this.transport = options.transport
    this.clock = options.clock
    this.observeOp = options.observeOp
    const clock = options.clock
    this.elapsedMs = clock.monotonicMs === undefined ? () => clock.nowMs() : () => clock.monotonicMs!()
    this.events = new Emitter<KvEvents>(error => { options.log.error('kv change listener threw', error) })
    this.machine = new Replication(ring, options, options.clock.nowMs(), options.background ?? null)
    this.id = this.machine.id
  }

  get stats (): KvStats { return this.machine.stats }
  get ring (): Ring { return this.machine.ring }
  setMembership (ring: Ring, isUp: (id: string) => boolean): void { this.machine.setMembership(ring, isUp) }
  beginLeaving (): void { this.machine.beginLeaving() }

  /**
   * Admission control's figures: client operations and heartbeats in flight now (urgentInFlight: beats in
   * the lane of services about to expire or new), operations refused, and urgent beats admitted past the
   * bound (urgentNewAdmitted: of those, first beats of new services).
   */
  get admission (): { inFlight: number; beatsInFlight: number; urgentInFlight: number; refused: number; urgentAdmitted: number; urgentNewAdmitted: number; refusedRefreshed: number } {
    return { inFlight: this.inFlight, beatsInFlight: this.beatsInFlight, urgentInFlight: this.urgentInFlight, refused: this.refused, urgentAdmitted: this.urgentAdmitted, urgentNewAdmitted: this.urgentNewAdmitted, refusedRefreshed: this.refusedRefreshed }
  }

  put (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<PutResult> {
    if (!(value instanceof Uint8Array)) return Promise.reject(new TypeError('value must be a Uint8Array'))
    // A copy: the stored value must not change if the caller reuses its buffer.
    return this.timed('put', settled => this.start({ type: 'put', key, value: new Uint8Array(value), options }, options.signal, settled))
  }

  /** A heartbeat's write (a put of its record, built fresh by peer.ts, so not copied): the same as put,
   * observed as op 'heartbeat'. */
  putHeartbeat (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<PutResult> {
    return this.timed('heartbeat', settled => this.start({ type: 'put', key, value, options }, options.signal, settled), () => this.beatIsUrgent(key), () => { this.refreshRefused(key, value, options) })
  }

  /**
   * A beat refused for overload still shows that its service is alive, and costs nothing more to note than
   * the refusal: if this peer holds the key alive in one version with the beat's very record and TTL (what a
   * refresh needs, refresh.ts), it renews the key's TTL credits here and notes the time apart from the
   * refreshes that got through (StorageEngine.noteAlive) — no log record, no message, and no acknowledgement:
   * the caller still gets ERR_OVERLOADED and retries after Retry-After. Its own sweep then does not expire the service, and the other replicas' expiry checks
   * learn the time from it ('beat-check', expiry.ts) and keep the service for the rest of that TTL. So a
   * service that goes on beating is not declared dead because this peer was too busy to take its beats
   * (Lifeguard's point: a slow member must not accuse others). A peer that does not hold the key that way
   * (not a replica of it, another version, an expired record) notes nothing; the beats' urgent lane
   * (beatIsUrgent) is what keeps such a service.
   */
  private refreshRefused (key: string, value: Uint8Array, options: WriteOptions): void {
    const ttlMs = options.ttlMs
    if (ttlMs === undefined || options.lww !== true || options.context !== undefined) return
    const engine = this.options.engine
    const held = engine.state(key)
    if (held === undefined || !holdsRecord(held, value)) return
    // Apart from the refreshes that got through: beatIsUrgent must still let this service's beats in once none
    // got through for a TTL, or only this peer would know it lives.
    if (engine.noteAlive(key, held, ttlMs, engine.hlc.now(), true)) this.refusedRefreshed++
  }

  /**
   * Whether a beat must not wait for the next one (asked only when the beats' lane is full): its service's
   * last beat here is a TTL old or more, so its replicas hold its expiry only while some replica is degraded
   * (expiry.ts, at most DETECTOR_STRETCH TTLs), or it already expired (the beat revives it), or this peer,
   * one of the key's replicas, has no record of it ('new'): a new service, whose refused beat renews nothing
   * (refreshRefused), so that, refused, it would stay unknown to the detector — neither watched nor ever
   * detected when it stops — for as long as the overload lasts (in the heartbeat benchmark at 40,000
   * services, 2 and 5 services never got one beat in in 23 s of retries). Such first beats take at most a
   * quarter of the lane (URGENT_NEW_SHARE), so a burst of new services (a fleet starting, ids that change
   * on every restart) cannot crowd out the services about to expire; a key can also lack a record here for
   * other reasons (a peer that just joined, before handoff fills its ranges), and that share bounds those
   * too. Refusing such a beat is what turns an overloaded detector into false deaths or blind spots;
   * refusing the others costs little, since their services were refreshed within the TTL and retry after
   * Retry-After. Where this peer is not one of the key's replicas, no record here says nothing.
   */
  private beatIsUrgent (key: string): 'late' | 'new' | null {
    const engine = this.options.engine
    const state = engine.state(key)
    if (state === undefined) return this.machine.state.primariesOf(key).includes(this.id) ? 'new' : null
    const ttlMs = engine.ttl(key)
    if (ttlMs === 0) return isExpiredService(key, state) ? 'late' : null
    // On the hybrid logical clock that stamped the beat: skew between the peers' clocks cancels out.
    return engine.hlc.now().wall - Math.max(newestTs(state)?.wall ?? 0, engine.refreshedWall(key)) >= ttlMs ? 'late' : null
  }

  delete (key: string, options: Omit<WriteOptions, 'ttlMs'> = {}): Promise<PutResult> {
    return this.timed('delete', settled => this.start({ type: 'delete', key, options }, options.signal, settled))
  }

  get (key: string, options: ReadOptions = {}): Promise<GetResult> {
    return this.timed('get', settled => this.start({ type: 'get', key, options }, options.signal, settled))
  }

  /** The key's preference list with each replica's state, for inspection (`GET /kv/:key/placement`). */
  placement (key: string, signal?: AbortSignal): Promise<{ position: number; segment: number; primaries: string[]; replicas: ReplicaView[] }> {
    return this.start({ type: 'placement', key }, signal)
  }

  /** One turn of the handoff loop (hints, ranges that moved, reaping). */
  handoff (signal?: AbortSignal): Promise<{ delivered: number; dropped: number; reaped: number }> {
    return this.start({ type: 'handoff' }, signal)
  }

  /** One anti-entropy round with the next peer (or `peer`). Null if no peer shares segments. */
  syncRound (peer?: string, signal?: AbortSignal): Promise<SyncResult | null> {
    return this.start({ type: 'sync', ...(peer === undefined ? {} : { peer }) }, signal)
  }

  /**
   * Before a graceful leave: refuses writes from now on, and sends every key to its primaries in
   * `ringWithout`; resolves when they acknowledged. Keys with no such primary up count as failed. With
   * `hintsOnly` (a tab the others keep in the ring for its leave grace) only the keys held for others go.
   */
  handOffAll (ringWithout: Ring, progress: (done: number, total: number) => void, signal?: AbortSignal, hintsOnly = false): Promise<{ delivered: number; failed: number }> {
    return this.start({ type: 'hand-off-all', ring: ringWithout, progress, hintsOnly }, signal)
  }

  /** The heartbeat services this replica holds records of, sorted by id. */
  localServices (): ServiceView[] { return localServices(this.machine.state) }

  /** Every heartbeat service in the mesh, merged from every up member's records. */
  meshServices (signal?: AbortSignal): Promise<{ services: ServiceView[]; asked: number; failed: number }> {
    return this.start({ type: 'services' }, signal)
  }

  /**
   * A page of keys under `options.prefix`, after `options.cursor`: every up member's keys merged (deleted
   * keys left out), or this peer's own with `local` (kv/listing.ts says what a listing promises).
   */
  list (options: ListOptions = {}): Promise<ListResult> {
    return this.start({ type: 'list', options }, options.signal)
  }

  /** Sends one request to a peer and resolves with its raw reply (dashboards ask for figures this way). */
  ask (to: string, request: KvRequest, signal?: AbortSignal): Promise<KvReply> {
    return this.start({ type: 'ask', to, request }, signal)
  }

  /** Answers a request from another peer. Never rejects: failures become error replies. */
  handle (from: string, request: KvRequest): Promise<KvReply> {
    // The reply effect hands `resolve` back: no table of requests being answered.
    return new Promise(resolve => {
      this.perform(this.machine.receive(from, { type: 'request', rid: resolve, request }, this.clock.nowMs()))
    })
  }

  /** Runs the machine's timeouts and due background turns. */
  tick (): void {
    const now = this.clock.nowMs()
    // This peer's own log, if a sync has been pending this long: its disk is behind, and every write and
    // beat it takes waits in that queue (a wait for another peer is not counted: it says nothing of this one).
    for (const startedMs of this.syncing.values()) {
      this.machine.health.note('log sync', now - startedMs, HEALTH_LOG_SYNC_MS, now)
      break
    }
    this.perform(this.machine.tick(now))
  }

  /** When tick() next has work, by this node's clock. */
  nextWakeMs (): number { return this.machine.nextWakeMs() }

  private start<T> (call: Call, signal: AbortSignal | undefined, settled?: Settled): Promise<T> {
    try {
      throwIfAborted(signal)
    } catch (error) {
      settled?.(error as Error, undefined)
      return Promise.reject(error)
    }
    // The complete effect hands the settle functions back: no table of operations.
    let op: Settle | undefined
    const done = new Promise<T>((resolve, reject) => {
      op = { resolve: resolve as (value: never) => void, reject, settled }
      this.perform(this.machine.call(op, call, this.clock.nowMs()))
    })
    if (signal === undefined) return done
    // An abort rejects the caller at once and stops the operation if it runs as a flow (a leave's handoff
    // sends no more chunks).
    const onAbort = (): void => { this.perform(this.machine.cancel(op, new AbortError(signal.reason), this.clock.nowMs())) }
    signal.addEventListener('abort', onAbort, { once: true })
    const off = (): void => { signal.removeEventListener('abort', onAbort) }
    done.then(off, off)
    return raceAbort(done, signal)
  }

  /**
   * A client operation: admitted (or refused with OverloadedError, see KvConfig.admitOpsMax), counted while
   * in flight — until the machine completes it, also when the caller's signal gave up on it earlier — and
   * observed when it completes. Counted from the complete effect, so admission adds no promise per operation.
   */
  private timed<T extends PutResult | GetResult> (name: ClientOp, start: (settled: Settled) => Promise<T>, urgent?: () => 'late' | 'new' | null, refusedBeat?: () => void): Promise<T> {
    const config = this.options.config
    const beat = name === 'heartbeat'
    let refusal: OverloadedError | null = null
    // A beat past the beats' bound still goes in its own lane (as many again) if its service is about to
    // expire here: see beatIsUrgent.
    let lane: 'normal' | 'late' | 'new' = 'normal'
    if (this.inFlight >= config.admitOpsMax) refusal = new OverloadedError(`peer ${this.id}: client operations in flight`, config.admitOpsMax)
    else if (beat && this.beatsInFlight - this.urgentInFlight >= config.admitBeatsMax) {
      const why = this.urgentInFlight < config.admitBeatsMax ? urgent?.() ?? null : null
      if (why === 'late' || (why === 'new' && this.urgentNewInFlight < Math.max(1, Math.floor(config.admitBeatsMax / URGENT_NEW_SHARE)))) lane = why
      else refusal = new OverloadedError(`peer ${this.id}: heartbeats in flight`, config.admitBeatsMax)
    }
    const observe = this.observeOp
    if (refusal !== null) {
      this.refused++
      // A peer that turns beats away cannot vouch that their services stopped: its detector says so
      // (expiry.ts holds expiries for it). Other refusals say nothing of the beats.
      if (beat) {
        this.machine.health.noteOverload(this.clock.nowMs(), refusal.message)
        refusedBeat?.()
      }
      observe?.(name, 0, refusal, undefined)
      return Promise.reject(refusal)
    }
    this.inFlight++
    if (beat) this.beatsInFlight++
    if (lane !== 'normal') { this.urgentInFlight++; this.urgentAdmitted++ }
    if (lane === 'new') { this.urgentNewInFlight++; this.urgentNewAdmitted++ }
    const began = observe === undefined ? 0 : this.elapsedMs()
    return start((error, value) => {
      this.inFlight--
      if (beat) this.beatsInFlight--
      if (lane !== 'normal') this.urgentInFlight--
      if (lane === 'new') this.urgentNewInFlight--
      if (observe === undefined) return
      if (error !== null) { observe(name, this.elapsedMs() - began, error instanceof Error ? error : new Error(errorMessage(error)), undefined); return }
      const found = name === 'get' ? (value as GetResult).values.length : 0
      observe(name, this.elapsedMs() - began, null, found > 0 ? found : undefined)
    })
  }

  /** The failure detector's health here (DetectorHealth): healthy, or degraded with the reason. */
  get detector (): DetectorState { return this.machine.health.state(this.clock.nowMs()) }

  /** The host's event loop ran `lateMs` late (a timer's lateness): a signal of this peer's own health. */
  noteLoopDelay (lateMs: number): void {
    this.machine.health.note('event-loop delay', lateMs, HEALTH_LOOP_DELAY_MS, this.clock.nowMs())
  }

  private perform (effects: readonly Effect[]): void {
    let tokens: PersistToken[] | null = null
    for (const effect of effects) {
      switch (effect.type) {
        case 'send': {
          const { to, rid } = effect
          this.transport.request(to, effect.channel, effect.request).then(
            reply => { this.perform(this.machine.receive(to, { type: 'reply', rid, reply }, this.clock.nowMs())) },
            (error: unknown) => { this.perform(this.machine.receive(to, { type: 'failed', rid, error: error instanceof Error ? error : new Error(errorMessage(error)) }, this.clock.nowMs())) }
          )
          break
        }
        case 'reply': (effect.rid as (reply: KvReply) => void)(effect.reply); break
        case 'persist': (tokens ??= []).push(effect.token); break
        case 'complete': {
          const settle = effect.op as Settle
          if (settle.settled !== undefined) {
            try {
              settle.settled(effect.ok ? null : effect.value as Error, effect.value)
            } catch (error) {
              this.options.log.error('an operation observer threw', error)
            }
          }
          if (effect.ok) settle.resolve(effect.value as never)
          else settle.reject(effect.value as Error)
          break
        }
        case 'change': this.events.emit('change', effect.event)
      }
    }
    // One wait for the log covers every persist of this turn: all were logged before it starts.
    if (tokens !== null) {
      const waiting = tokens
      const settle = (error: Error | undefined): void => {
        const next: Effect[] = []
        for (const t of waiting) {
          try {
            next.push(...this.machine.persisted(t, error, this.clock.nowMs()))
          } catch (thrown) {
            // A bug in what this persist resumed must not strand the others of the batch.
            this.options.log.error('resuming after the log sync failed', thrown)
          }
        }
        this.perform(next)
      }
      const token = {}
      const startedMs = this.clock.nowMs()
      this.syncing.set(token, startedMs)
      const synced = (): void => {
        this.syncing.delete(token)
        const now = this.clock.nowMs()
        this.machine.health.note('log sync', now - startedMs, HEALTH_LOG_SYNC_MS, now)
      }
      this.options.engine.durable().then(() => { synced(); settle(undefined) }, (error: unknown) => { synced(); settle(error instanceof Error ? error : new Error(errorMessage(error))) })
    }
  }
}
