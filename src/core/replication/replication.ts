/**
 * The replicated key-value store of one peer as a state machine that returns decisions instead of awaiting
 * I/O, as the SWIM machine does (membership/swim.ts). The host starts client operations with `call(op, ...)`,
 * delivers peers' requests and replies with `receive(from, message, now)`, reports its log durable with
 * `persisted(token, error, now)`, and calls `tick(now)`, which times out requests and runs the background
 * work when due; each returns effects — `send`, `reply`, `persist`, `complete`, `change` — for the host to
 * perform (kv/node.ts over libp2p, test/sim/kv-faults.ts in a seeded simulator).
 *
 * The parts, each a module of flows over one ReplicaState: the coordinator of puts, gets and deletes
 * (coordinator.ts), the replica's request handlers (replica.ts), handoff, reaping and leave (handoff.ts),
 * anti-entropy (anti-entropy.ts) and TTL expiry (expiry.ts). The key index follows the storage engine's own
 * changes (key-index.ts), so no code path keeps it in step by hand.
 */
import { errorMessage } from '../errors.js'
import { isHeartbeatKey } from '../kv/heartbeat.js'
import { type ListOptions, listKeys } from '../kv/listing.js'
import { meshServices } from '../kv/services.js'
import type { KvRequest } from '../kv/messages.js'
import type { Ring } from '../ring/ring.js'
import type { KeyState } from '../version/dvv.js'
import { AntiEntropy } from './anti-entropy.js'
import { placement, read, write } from './coordinator.js'
import { checkExpiry, publishExpiry } from './expiry.js'
import { type Effect, type Flow, type Message, type PersistToken, Runtime, exchange } from './flow.js'
import { Handoff } from './handoff.js'
import { type DetectorHealth, HEALTH_SWEEP_LAG_PERIODS } from './health.js'
import { serve } from './replica.js'
import { ReplicaState, type ReplicationOptions } from './replica-state.js'
import type { KvStats, ReadOptions, WriteOptions } from './types.js'

/** An operation the host starts; it ends with one `complete` effect carrying its result or error. */
export type Call =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array; readonly options: WriteOptions }
  | { readonly type: 'delete'; readonly key: string; readonly options: WriteOptions }
  | { readonly type: 'get'; readonly key: string; readonly options: ReadOptions }
  | { readonly type: 'placement'; readonly key: string }
  /** One handoff turn (hints, ranges, reaping). */
  | { readonly type: 'handoff' }
  /** One anti-entropy round, with `peer` or the next one. */
  | { readonly type: 'sync'; readonly peer?: string }
  /** A graceful leave's handoff of everything to the owners in `ring` (the ring without this peer). */
  | { readonly type: 'hand-off-all'; readonly ring: Ring; readonly progress: (done: number, total: number) => void; readonly hintsOnly?: boolean }
  /** Every heartbeat service in the mesh. */
  | { readonly type: 'services' }
  /** A page of keys: the mesh's, merged, or this peer's own (`options.local`). */
  | { readonly type: 'list'; readonly options: ListOptions }
  /** A request to one peer, answered with its raw reply (dashboards ask peers for their figures). */
  | { readonly type: 'ask'; readonly to: string; readonly request: KvRequest }

export interface BackgroundPeriods {
  /** Handoff and reaping turns (KvConfig.handoffIntervalMs). */
  handoffMs: number
  /** Anti-entropy rounds (KvConfig.syncIntervalMs). */
  syncMs: number
  /** The storage engine's TTL sweep (StorageConfig.sweepPeriodMs). */
  sweepMs: number
}

/** A background loop: its next turn is due `periodMs` after the previous one ended. */
interface Loop {
  readonly name: string
  readonly periodMs: number
  dueMs: number
  running: boolean
  readonly turn: () => Flow<unknown> | null
}

/**
 * Expiry checks (expiry.ts) running at once on a replica; keys due beyond that wait their turn, first due
 * first. A sweep hands over every key that ran out of credits at once: under overload (beats refused, so
 * most keys run out) that was tens of thousands of checks in one turn, past what this replica's links to the
 * others take (rpc.ts refuses requests past 4,096 in flight), so which keys got asked about depended on where
 * they sat in the sweep's order, and the overloaded peer those checks go to got them all at once. Each check
 * asks the key's N-1 other replicas: 1,024 checks are at most 2,048 requests with N=3.
 */
export const EXPIRY_CHECKS_MAX = 1024

export class Replication {
  readonly id: string
  readonly state: ReplicaState
  private readonly rt: Runtime
  private readonly antiEntropy: AntiEntropy
  private readonly handoff: Handoff
  private readonly loops: Loop[]
  /** The failure detector's own health (ReplicaState.health): the host reports its signals here. */
  readonly health: DetectorHealth
  /** How to cancel each operation running as a flow (client puts, gets and deletes are not cancellable). */
  private readonly cancellers = new Map<unknown, (reason: Error) => void>()
  /** Expiry checks running now, and the keys (with the state that ran out) waiting for one, first due first. */
  private expiryChecks = 0
  private readonly expiryWaiting = new Map<string, KeyState>()
  private drainingExpiry = false
  /** While a sweep runs, the keys it finds due (their checks start once it has ended). */
  private sweepDue: Array<[string, KeyState]> | null = null
  /** When the key index's rebuild under way started (for its log line). */
  private rebuildStartMs = 0

  /** `background` null runs no background work from tick() (tests call it with call()). */
  constructor (ring: Ring, options: ReplicationOptions, nowMs: number, background: BackgroundPeriods | null) {
    this.rt = new Runtime(options.requestDeadlineMs ?? options.config.requestTimeoutMs)
    this.rt.nowMs = nowMs
    const s = this.state = new ReplicaState(ring, this.rt, options)
    this.id = s.id
    this.health = s.health
    this.antiEntropy = new AntiEntropy(s)
    this.handoff = new Handoff(s)
    const engine = options.engine
    engine.onChange = (key, prior, state) => {
      s.index.note(key, prior, state)
      s.ordered.note(key, prior, state)
    }
    // An expiry is a write by this replica: its other replicas get it once durable.
    engine.events.on('expired', e => { this.spawn(publishExpiry(s, e.key, e.state, e.expired), `publishing the expiry of ${e.key}`) })
    engine.onExpiring = (key, state) => {
      if (this.sweepDue !== null) this.sweepDue.push([key, state])
      else this.offerExpiry(key, state)
    }
    const loop = (name: string, periodMs: number, turn: () => Flow<unknown> | null): Loop => ({ name, periodMs, dueMs: nowMs + periodMs, running: false, turn })
    this.loops = background === null
      ? []
      : [
          loop('handoff', background.handoffMs, () => this.handoff.turn()),
          // Hash trees of a half-rebuilt index would differ for nothing: anti-entropy waits for the new ring's.
          loop('anti-entropy', background.syncMs, () => this.state.index.rebuilding ? null : this.antiEntropy.round()),
          loop('sweep', background.sweepMs, () => { this.runSweep(this.rt.nowMs); return null })
        ]
  }

  /** Counters since start, and the keys held here for others (hints pending). */
  get stats (): KvStats { return { ...this.state.counters, hintsPending: this.state.index.foreign.size, expiryChecksWaiting: this.expiryWaiting.size } }

  get ring (): Ring { return this.state.ring }

  /** Membership changed: the ring (if its members changed) and who is up. */
  setMembership (ring: Ring, isUp: (id: string) => boolean): void {
    const s = this.state
    s.isUpNow = isUp
    // A member that went down and came back (a restart: an upgrade keeps its id) is asked anew.
    s.olderPeers.clear()
    s.noRefresh.clear()
    if (ring === s.ring) return
    s.ring = ring
    // The key index follows in steps of kv.index-rebuild-keys-per-turn keys: the first now (a small store
    // is done with it), the others from tick().
    if (!s.index.rebuilding) this.rebuildStartMs = this.rt.nowMs
    s.index.retarget(ring)
    this.stepIndexRebuild()
    s.latencies.retain(id => ring.member(id) !== undefined)
  }

  /** One step of the key index's rebuild for a new ring, if one is under way. */
  private stepIndexRebuild (): void {
    const s = this.state
    const done = s.index.rebuildStep(s.config.indexRebuildKeysPerTurn, key => s.engine.state(key))
    if (done !== null && done.steps > 1) s.log.debug(`key index rebuilt for the new ring: ${done.keys} keys in ${done.steps} steps over ${Math.round(this.rt.nowMs - this.rebuildStartMs)} ms${done.restarts === 0 ? '' : ` (restarted ${done.restarts} times by newer rings, each doubling the step)`}`)
  }

  /** Refuse writes from now on (the first step of a graceful leave). */
  beginLeaving (): void { this.state.leaving = true }

  /** Starts an operation; its `complete` effect carries `op` (any value of the host's) back. */
  call (op: unknown, call: Call, nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    const s = this.state
    const complete = (ok: boolean, value: unknown): void => { this.rt.emit({ type: 'complete', op, ok, value }) }
    try {
      // Puts, gets and deletes are the coordinator's callback-style hot paths; the rest are flows.
      if (call.type === 'put') write(s, call.key, call.value, call.options, complete)
      else if (call.type === 'delete') write(s, call.key, null, call.options, complete)
      else if (call.type === 'get') read(s, call.key, call.options, complete)
      else {
        let ended = false
        const cancel = this.rt.spawn(this.flowOf(call), (ok, value) => {
          ended = true
          this.cancellers.delete(op)
          complete(ok, value)
        })
        if (!ended) this.cancellers.set(op, cancel)
      }
    } catch (error) {
      complete(false, error) // bad input, refused before anything started
    }
    return this.rt.take()
  }

  /**
   * Stops an operation started with call(op, ...) that is still running as a flow (a handoff, an
   * anti-entropy round, a leave's handoff, a placement, services or listing lookup): `reason` is thrown into it, so
   * it sends nothing more and completes with that error. Puts, gets and deletes run to their end.
   */
  cancel (op: unknown, reason: Error, nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    this.cancellers.get(op)?.(reason)
    return this.rt.take()
  }

  private flowOf (call: Exclude<Call, { type: 'put' | 'delete' | 'get' }>): Flow<unknown> {
    const s = this.state
    switch (call.type) {
      case 'placement': return placement(s, call.key)
      case 'handoff': return this.handoff.turn()
      case 'sync': return this.antiEntropy.round(call.peer)
      case 'hand-off-all': return this.handoff.handOffAll(call.ring, call.progress, call.hintsOnly === true)
      case 'services': return meshServices(s)
      case 'list': return listKeys(s, call.options)
      case 'ask': return exchange(call.to, 'kv', call.request)
    }
  }

  receive (from: string, message: Message, nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    switch (message.type) {
      case 'request': {
        const rid = message.rid
        serve(this.state, this.antiEntropy, from, message.request, reply => { this.rt.emit({ type: 'reply', to: from, rid, reply }) })
        break
      }
      case 'reply': this.rt.answer(message.rid, true, message.reply); break
      case 'failed': this.rt.answer(message.rid, false, message.error); break
    }
    return this.rt.take()
  }

  persisted (token: PersistToken, error: Error | undefined, nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    this.rt.persisted(token, error)
    return this.rt.take()
  }

  /** Times out requests past their deadline and starts the background turns that are due. */
  tick (nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    this.rt.expire()
    this.stepIndexRebuild()
    for (const loop of this.loops) {
      if (loop.running || loop.dueMs > nowMs) continue
      // A sweep that runs late: this replica is too slow to take beats in time (DetectorHealth).
      if (loop.name === 'sweep') this.health.note('sweep lag', nowMs - loop.dueMs, HEALTH_SWEEP_LAG_PERIODS * loop.periodMs, nowMs)
      let flow: Flow<unknown> | null
      try {
        flow = loop.turn()
      } catch (error) {
        this.state.log.debug(`${loop.name} turn failed: ${errorMessage(error)}`)
        flow = null
      }
      if (flow === null) { loop.dueMs = nowMs + loop.periodMs; continue }
      loop.running = true
      this.rt.spawn(flow, (ok, value) => {
        if (!ok) this.state.log.debug(`${loop.name} turn failed: ${errorMessage(value)}`)
        loop.running = false
        loop.dueMs = this.rt.nowMs + loop.periodMs
      })
    }
    return this.rt.take()
  }

  /** One turn of the storage engine's TTL sweep now (tick() runs it every sweep period). */
  sweep (nowMs: number): Effect[] {
    this.rt.nowMs = nowMs
    this.runSweep(nowMs)
    return this.rt.take()
  }

  /**
   * A turn of the TTL sweep (stretched while the detector is degraded). The heartbeat keys it finds due are
   * counted first (DetectorHealth.noteDue: too many at once make the detector degraded), then the expiry
   * checks of every key it found due start (also if the sweep threw: each is marked pending, and a pending
   * key is not offered again).
   */
  private runSweep (nowMs: number): void {
    const due: Array<[string, KeyState]> = []
    this.sweepDue = due
    try {
      this.state.engine.sweep({ takeCredit: this.health.takeCredit(nowMs) })
    } finally {
      this.sweepDue = null
      let beats = 0
      for (const [key] of due) if (isHeartbeatKey(key)) beats++
      if (beats > 0) this.health.noteDue(nowMs, beats, this.state.index.heartbeats.size)
      for (const [key, state] of due) this.offerExpiry(key, state)
    }
  }

  /** Starts the expiry check of a key the sweep found due, or queues it while EXPIRY_CHECKS_MAX run. */
  private offerExpiry (key: string, state: KeyState): void {
    if (this.expiryChecks < EXPIRY_CHECKS_MAX) this.startExpiryCheck(key, state)
    else this.expiryWaiting.set(key, state)
  }

  /** When tick() next has something to do (a request's deadline or a background turn), by the host's clock. */
  nextWakeMs (): number {
    if (this.state.index.rebuilding) return this.rt.nowMs
    let at = this.rt.nextDeadline()
    for (const loop of this.loops) if (!loop.running && loop.dueMs < at) at = loop.dueMs
    return at
  }

  /** Runs the expiry check of `key`; when it ends, the keys waiting get its place. */
  private startExpiryCheck (key: string, state: KeyState): void {
    this.expiryChecks++
    this.rt.spawn(checkExpiry(this.state, key, state), (ok, error) => {
      this.expiryChecks--
      if (!ok) this.state.log.debug(`the expiry check of ${key} failed: ${errorMessage(error)}`)
      this.drainExpiryChecks()
    })
  }

  /**
   * Starts the checks of waiting keys, first due first, while fewer than EXPIRY_CHECKS_MAX run. A key written
   * or refreshed while it waited has credits again (the engine no longer offers it): it is dropped. A check
   * may end within this loop (no other replica up): the loop, not a nested one, starts the next.
   */
  private drainExpiryChecks (): void {
    if (this.drainingExpiry) return
    this.drainingExpiry = true
    try {
      for (const [key, state] of this.expiryWaiting) {
        if (this.expiryChecks >= EXPIRY_CHECKS_MAX) break
        this.expiryWaiting.delete(key)
        if (this.state.engine.expiryPending(key, state)) this.startExpiryCheck(key, state)
      }
    } finally {
      this.drainingExpiry = false
    }
  }

  private spawn (flow: Flow<unknown>, what: string): void {
    this.rt.spawn(flow, (ok, error) => { if (!ok) this.state.log.debug(`${what} failed: ${errorMessage(error)}`) })
  }
}
