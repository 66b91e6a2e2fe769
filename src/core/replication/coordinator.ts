/**
 * The coordinator of client requests (Dynamo §4.5, DeCandia et al. 2007), as flows over a replica's state:
 *
 * - put/delete: the coordinator — a replica of the key; any other peer forwards to one — applies the write
 *   to its own engine, which gives the new value the coordinator's next dot, makes it durable in its own log,
 *   then sends the resulting state to the other N-1 replicas of the preference list, and answers after W of
 *   them (itself included) have made it durable. Fewer than W: QuorumError with the acked count, never
 *   success.
 * - get: the coordinator asks R replicas (itself and as many others as R needs; primaries before fallbacks,
 *   durable ones first) and merges the first R answers; the other replicas of the preference list stand in
 *   for one that fails or is slow, and are all asked before a not-found or a failure is answered. Once those
 *   asked answer (or time out), any whose state was behind the merge gets it (read repair). `readAll` asks
 *   all N at once.
 * - durable acknowledgements: a write also needs `dw` (the mesh's `durableAcks`, default 1) of its acks
 *   from durable replicas (Node peers), so tabs alone never acknowledge it; with too few durable members up
 *   it fails at once with NoDurableReplicaError, before anything is written.
 * - not found: unless `notFoundOk`, a replica's not-found answer counts toward R only once every replica
 *   asked has answered (Riak's notfound_ok=false), so a fresh tab's empty replica does not hide a value.
 * - sloppy quorum: when a primary is down, the preference list continues with the next up member (a
 *   fallback), which holds the key like any replica until handoff delivers it (handoff.ts).
 * - hedged requests (Dynamo §4.6): a replica that fails, or has not answered after a multiple of its own
 *   p99 round trip (latency.ts), gets a stand-in: the request also goes to the next member by the placement
 *   rules, whose answer counts like any replica's. A coordinator never waits for SWIM to declare a silent
 *   replica dead. A stand-in may get its own; at most N stand-ins per operation.
 */
import { LeavingError, NoDurableReplicaError, QuorumError, UnreachableError, ValueTooLargeError, errorMessage } from '../errors.js'
import { detached } from '../kv/heartbeat.js'
import type { Entry, KvReply, KvRequest } from '../kv/messages.js'
import { type PreferenceEntry, segmentOf } from '../ring/ring.js'
import { decodeContext, encodeContext } from '../version/context.js'
import { type KeyState, newestTs, stateEquals, sync, valuesOf } from '../version/dvv.js'
import { type Hlc, compareHlc } from '../version/hlc.js'
import { EMPTY_VV, type VersionVector } from '../version/vv.js'
import { type Flow, all, request } from './flow.js'
import { notRefreshed, refreshable } from './refresh.js'
import { type ReplicaState, replyError } from './replica-state.js'
import type { GetResult, Held, PutResult, ReadOptions, ReplicaView, WriteOptions } from './types.js'

/** How callback-style coordination reports: its result (ok) or its error. */
export type Done<T> = (ok: boolean, value: T | Error) => void

/**
 * A client put (value) or delete (null) through this peer. Bad input throws at once; the rest reports
 * through `done`. The coordinator's hot paths (this, coordinateWrite, read, coordinateRead) are written
 * with the runtime's callback forms rather than as flows: they run for every client operation, and
 * allocate no generator per replica that way.
 */
export function write (s: ReplicaState, key: string, value: Uint8Array | null, options: WriteOptions, done: Done<PutResult>): void {
  s.engine.checkKey(key)
  // The engine checks too; checking here fails fast on a peer that would forward.
  if (value !== null && value.length > s.engine.config.valueBytesMax) throw new ValueTooLargeError(value.length, s.engine.config.valueBytesMax)
  const w = s.checkCount('w', options.w)
  const dw = s.checkDurableAcks(options.dw)
  const ctx = options.context === undefined || options.context === '' ? { vv: EMPTY_VV, ts: null } : decodeContext(options.context)
  s.checkContext(ctx.vv)
  const op = value === null ? 'delete' : 'put'
  if (value === null) s.counters.deletes++
  else s.counters.puts++
  const strict = options.strict ?? s.config.strictQuorum
  const pref = s.preference(key, strict)
  if (!pref.some(e => e.id === s.id)) {
    s.rt.spawn(forward(s, pref, { type: 'put', key, value, context: ctx.vv, ts: ctx.ts, lww: options.lww === true, ttlMs: options.ttlMs ?? 0, w, dw, strict }, op, w), (ok, reply) => {
      if (!ok) { done(false, reply as Error); return }
      const r = reply as KvReply
      if (r.type !== 'put') done(false, replyError(pref[0]!.id, r, op))
      else done(true, putResult(key, r.state, r.acks))
    })
    return
  }
  coordinateWrite(s, key, value, ctx.vv, ctx.ts, pref, w, dw, { ...options, strict }, (ok, result) => {
    if (!ok) { done(false, result as Error); return }
    const { state, acks } = result as { state: KeyState; acks: number }
    done(true, putResult(key, state, acks))
  })
}

/**
 * A write's result. Its context is encoded when first read, then kept: a heartbeat's caller, the commonest
 * writer, never reads it, and the encoding (a buffer, a base64url string) was a sixth of what a beat
 * allocated in the coordinator. The key states are immutable (dvv.ts makes new ones), so the context read
 * later is the write's. An own enumerable getter, so spreads, JSON and structured clones still carry it.
 */
export function putResult (key: string, state: KeyState, acks: number): PutResult {
  let context: string | undefined
  return {
    key,
    get context (): string { return (context ??= encodeContext(state.vv, newestTs(state) ?? null)) },
    acks
  }
}

/**
 * Coordinates a write this peer is a replica of (for a client here, or one a peer forwarded). Reports
 * through `done`, at once if the write cannot start (this peer is leaving, too few durable replicas are up,
 * or the engine refused it).
 */
export function coordinateWrite (s: ReplicaState, key: string, value: Uint8Array | null, context: VersionVector, ts: Hlc | null, pref: readonly PreferenceEntry[], w: number, dw: number, options: { lww?: boolean; ttlMs?: number; strict?: boolean; noRefresh?: boolean }, done: Done<{ state: KeyState; acks: number }>): void {
  const op = value === null ? 'delete' : 'put'
  const ring = s.ring
  const isUp = (id: string): boolean => s.isUp(id)
  const targets: string[] = []
  let durableTargets = 0
  for (const e of pref) {
    if (e.id !== s.id) targets.push(e.id)
    if (ring.isDurable(e.id)) durableTargets++
  }
  let before: KeyState | undefined
  let local: { state: KeyState; shareable: boolean }
  // A heartbeat that only says its service is still alive: a refresh, not a write (refresh.ts).
  let refresh: Hlc | null = null
  try {
    if (s.leaving) throw new LeavingError(s.id)
    // A request's dw above the durable members placement gives the key: more durable members hold it too
    // (as hints, delivered on by handoff).
    while (durableTargets < dw && options.strict !== true) {
      const extra = ring.nextFallback(ring.position(key), s.config.n, [s.id, ...targets], [], isUp, { durableOnly: true })
      if (extra === undefined) break
      targets.push(extra)
      durableTargets++
    }
    if (durableTargets < dw) throw new NoDurableReplicaError(op, 0, dw, durableTargets, [durableTargets === 0 ? 'no durable member (Node peer) is up' : `only ${durableTargets} durable members are up`])
    before = s.engine.state(key)
    refresh = options.noRefresh === true ? null : refreshable(s, key, before, value, context, ts, options, targets)
    if (refresh !== null) {
      // Full credits here, nothing logged; the state is the one held. A replica that does not take the
      // refresh, or one too slow for it, gets the beat written instead (writeInstead below).
      s.engine.refresh(key, before!, options.ttlMs!, refresh)
      s.counters.refreshes++
      local = { state: before!, shareable: true }
    } else {
      // Logged now, made durable by the persist below (which shares the group commit with every other write).
      local = s.engine.writeLocal(key, value, { context, contextTs: ts, lww: options.lww, durability: 'async', ...(value === null ? {} : { ttlMs: options.ttlMs }) })
    }
  } catch (error) {
    if (error instanceof NoDurableReplicaError) s.counters.quorumFailures++
    done(false, error as Error)
    return
  }
  const entry: Entry = { key, ttlMs: s.engine.ttl(key), state: local.state }
  // A refresh that some replica did not take is written instead (below): from then on the write reports.
  let written = false
  const quorum = new WriteQuorum(w, dw, (acked, durableAcked, total, durableTotal, reasons) => acked >= w
    ? new NoDurableReplicaError(op, durableAcked, dw, durableTotal, reasons)
    : new QuorumError(op, acked, w, total, reasons), (ok, value) => {
    if (written) return
    if (!ok) {
      if (value instanceof QuorumError || value instanceof NoDurableReplicaError) s.counters.quorumFailures++
      done(false, value as Error)
      return
    }
    // A refresh changed nothing: no event (the change feed never reported refreshes anyway).
    if (refresh === null) s.rt.emit({ type: 'change', event: { type: op, key, replica: s.id, wall: newestTs(local.state)?.wall ?? s.nowMs, prior: before, state: local.state } })
    done(true, { state: local.state, acks: value as number })
  })
  const selfDurable = ring.isDurable(s.id)
  quorum.add(selfDurable)
  // Every member asked (made on the first hedge only), and those that acknowledged: a stand-in is chosen
  // among the others.
  let asked: Set<string> | null = null
  const holding: string[] = []
  // The other replicas get the write while this one makes it durable (one fsync on the critical path, not
  // two in a row) when its dot is covered by a durable dot-counter lease: a coordinator that crashed with
  // the dot on others but not in its own log restarts above the lease, so it never issues the same dot
  // again for a different value (which replicas would take for the first, keeping either). Otherwise — the
  // first write after a start, or a counter that outran its lease — the dot must be durable here first.
  // (With async durability the record reaches the OS within this turn, so only a crash of the machine can
  // reuse a dot; see the README.)
  const replicate = (): void => {
    const merge: KvRequest = { type: 'merge', entries: [entry] }
    // A refresh goes to the targets (primaries, or fallbacks for down ones, which answer with what they hold).
    const refreshing: KvRequest | null = refresh === null ? null : { type: 'refresh', key, digest: s.digests.of(key, local.state), ts: refresh, ttlMs: entry.ttlMs }
    let standIns = 0
    const sendTo = (id: string, mayHedge: boolean, request: KvRequest = merge): void => {
      const durable = ring.isDurable(id)
      quorum.add(durable)
      let hedged = !mayHedge
      const hedge = (): void => {
        if (hedged || quorum.decided || written || standIns >= s.config.n) return
        hedged = true
        standIns++
        // A durable member first where one is left: it does not vanish with a browser, so its ack is the
        // one most likely to come, and the hint it keeps is durable.
        asked ??= new Set([s.id, ...targets])
        const next = ring.nextFallback(ring.position(key), s.config.n, asked, holding, isUp, { needDurable: s.config.n })
        if (next === undefined) return
        // A refresh target that failed or is slow, with a stand-in to be had: the beat is written instead,
        // with the write's own stand-ins (one sent the held copy would ack a beat it holds no newer version
        // of). Without one, nothing is sent, as for a write: under overload a refresh that turned into a
        // write at every slow answer would only add to the load.
        if (refreshing !== null) { writeInstead(null, 0); return }
        s.counters.hedged++
        asked.add(next)
        // A stand-in may get its own (one that failed too, say another tab of a browser that quit), up to
        // N stand-ins per write.
        sendTo(next, true)
      }
      const after = mayHedge ? s.latencies.hedgeAfterMs(id) : undefined
      s.rt.send(id, 'kv', request, (ok, reply) => {
        if (ok && (reply as KvReply).type === 'ok') {
          holding.push(id)
          quorum.ok(durable)
          return
        }
        // A replica that did not take the refresh — it holds another version of the key (it missed a write,
        // or holds a newer one, say an expiry), or none, or predates refreshes — would not have its credits
        // renewed by this beat: the beat is written instead, as beats always were. Its state first, so that
        // the write's timestamp is newer than anything it holds.
        if (request !== merge && ok && notRefreshed(reply as KvReply)) {
          const r = reply as KvReply
          if (r.type === 'error') s.noRefresh.note(id, s.nowMs)
          writeInstead(r.type === 'state' ? r.state : null, r.type === 'state' ? r.ttlMs : 0)
          quorum.no(durable, `${id} did not take the refresh`)
          return
        }
        // A replica that failed or refused gets its stand-in at once (before its failure counts).
        hedge()
        quorum.no(durable, errorMessage(ok ? replyError(id, reply as KvReply, op) : reply))
      }, after === undefined ? undefined : { afterMs: after, fire: hedge })
    }
    // Strict quorum: primaries only, so no stand-ins; nor with hedging off.
    const hedging = options.strict !== true && s.config.hedgeMultiplier > 0
    for (const id of targets) sendTo(id, hedging, refreshing ?? merge)
  }
  // The beat written after all (once): a write with its own dot to every replica, which reports the outcome
  // unless the refresh already did (then it runs on, so that the replica behind gets it).
  const writeInstead = (held: KeyState | null, heldTtlMs: number): void => {
    if (written) return
    written = true
    if (held !== null) {
      try {
        s.engine.mergeNow(key, held, heldTtlMs)
      } catch (error) {
        s.log.debug(`merging a replica's state of ${key} before writing a beat failed: ${errorMessage(error)}`)
      }
    }
    const decided = quorum.decided
    coordinateWrite(s, key, value, context, ts, s.preference(key, options.strict), w, dw, { ...options, noRefresh: true }, (ok, result) => {
      if (!decided) done(ok, result)
    })
  }
  const shared = local.shareable
  if (shared) replicate()
  s.rt.afterPersist(error => {
    if (error !== undefined) { quorum.no(selfDurable, errorMessage(error)); return }
    if (!shared) replicate()
    holding.push(s.id)
    quorum.ok(selfDurable) // this replica's own copy, durable now
  })
}

/**
 * A write's quorum: it succeeds once `w` replicas acknowledged, `dw` of them durable, and fails once the
 * replicas still out cannot make either count. Stand-ins (hedges) join with `add` while it is undecided.
 */
class WriteQuorum {
  decided = false
  private acked = 0
  private durableAcked = 0
  private failed = 0
  private durableFailed = 0
  private total = 0
  private durableTotal = 0
  private readonly reasons: string[] = []

  constructor (private readonly w: number, private readonly dw: number, private readonly fail: (acked: number, durableAcked: number, total: number, durableTotal: number, reasons: string[]) => Error, private readonly decide: Done<number>) {}

  add (durable: boolean): void {
    this.total++
    if (durable) this.durableTotal++
  }

  ok (durable: boolean): void {
    this.acked++
    if (durable) this.durableAcked++
    if (!this.decided && this.acked >= this.w && this.durableAcked >= this.dw) this.verdict(true, this.acked)
    else this.ended()
  }

  no (durable: boolean, reason: string): void {
    this.failed++
    if (durable) this.durableFailed++
    this.reasons.push(reason)
    if (this.decided) return
    const lost = this.total - this.failed < this.w || this.durableTotal - this.durableFailed < this.dw
    if (lost) this.verdict(false, this.fail(this.acked, this.durableAcked, this.total, this.durableTotal, this.reasons))
    else this.ended()
  }

  /** Everyone asked has answered without making the quorum. */
  private ended (): void {
    if (!this.decided && this.acked + this.failed === this.total) this.verdict(false, this.fail(this.acked, this.durableAcked, this.total, this.durableTotal, this.reasons))
  }

  private verdict (ok: boolean, value: number | Error): void {
    this.decided = true
    this.decide(ok, value)
  }
}

/** Sends a client request to a replica that can coordinate it; tries the next one if the first is unreachable. */
function * forward (s: ReplicaState, pref: readonly PreferenceEntry[], req: KvRequest, op: 'put' | 'delete' | 'get', required: number): Flow<KvReply> {
  if (pref.length === 0) {
    s.counters.quorumFailures++
    throw new QuorumError(op, 0, required, 0, ['no replica of the key is up'])
  }
  s.counters.forwarded++
  const reasons: string[] = []
  // Durable replicas first: a Node peer does not vanish with a browser, and a forward cannot be hedged.
  const order = [...pref].sort((a, b) => Number(s.ring.isDurable(b.id)) - Number(s.ring.isDurable(a.id)))
  for (const e of order.slice(0, 2)) {
    try {
      const reply = (yield request(e.id, 'kv', req)) as KvReply
      // A leaving replica applied nothing: the next one can take the request.
      if (reply.type === 'error' && reply.code === 'ERR_LEAVING') {
        reasons.push(`${e.id}: leaving`)
        continue
      }
      return reply
    } catch (error) {
      reasons.push(`${e.id}: ${errorMessage(error)}`)
      // Only a peer that never got the request is safe to replace: one that timed out may have applied
      // the write, and a second coordinator would add a second copy of it as a sibling.
      if (!(error instanceof UnreachableError)) break
    }
  }
  s.counters.quorumFailures++
  throw new QuorumError(op, 0, required, pref.length, reasons)
}

/** A client get through this peer. Bad input throws at once; the rest reports through `done`. */
export function read (s: ReplicaState, key: string, options: ReadOptions, done: Done<GetResult>): void {
  s.engine.checkKey(key)
  const r = s.checkCount('r', options.r)
  s.counters.gets++
  const strict = options.strict ?? s.config.strictQuorum
  const pref = s.preference(key, strict)
  if (!pref.some(e => e.id === s.id)) {
    s.rt.spawn(forward(s, pref, { type: 'get', key, r, strict }, 'get', r), (ok, reply) => {
      if (!ok) { done(false, reply as Error); return }
      const g = reply as KvReply
      if (g.type !== 'get') done(false, replyError(pref[0]!.id, g, 'get'))
      else done(true, toResult(key, g.state, g.replies))
    })
    return
  }
  coordinateRead(s, key, pref, r, strict, (ok, result) => {
    if (!ok) { done(false, result as Error); return }
    const { state, replies } = result as { state: KeyState | null; replies: number }
    done(true, toResult(key, state, replies))
  })
}

/**
 * Coordinates a read this peer is a replica of; read repair follows once every replica asked has answered.
 * It asks this replica and as many others as R needs, durable ones first; the rest of the preference list
 * (the spares) only when an asked replica fails or is slow, or when the answers cannot decide (all
 * not-found, or too few). `kv.readAll` asks them all at once.
 */
export function coordinateRead (s: ReplicaState, key: string, pref: readonly PreferenceEntry[], r: number, strict: boolean, done: Done<{ state: KeyState | null; replies: number }>): void {
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
  // Read repair once everyone answered or failed; it runs after the client has its answer.
  const quorum = new ReadQuorum(r, s.config.notFoundOk, (acked, total, reasons) => new QuorumError('get', acked, r, total, reasons), (ok, value) => {
    if (!ok) {
      if (value instanceof QuorumError) s.counters.quorumFailures++
      done(false, value as Error)
      return
    }
    done(true, { state: merged, replies: value as number })
  }, () => { readRepair(s, key, answers, merged, ttlMs) }, () => expand())
  const read: KvRequest = { type: 'read', key }
  const { self, first, spares } = readTargets(s, pref, r)
  /** The next spare still up, taken off the list; undefined when none is left. */
  const nextSpare = (): string | undefined => {
    while (spares.length > 0) {
      const id = spares.shift()!
      if (s.isUp(id)) return id
    }
    return undefined
  }
  /** Asks every spare left; true if it asked one (the quorum then waits for its answer). */
  const expand = (): boolean => {
    let asked = false
    for (let id = nextSpare(); id !== undefined; id = nextSpare()) { ask(id); asked = true }
    return asked
  }
  // Who was asked, made on the first hedge only (most reads have none).
  let asked: Set<string> | null = null
  let standIns = 0
  // Hedging (a timer per request) needs hedgeMultiplier > 0 (then readTargets keeps spares); a stand-in that
  // is not a replica of the key (a fallback) also needs a read that is not strict.
  const timed = s.config.hedgeMultiplier > 0
  const ask = (id: string): void => {
    quorum.add()
    let hedged = false
    const hedge = (): void => {
      if (hedged || quorum.decided) return
      const spare = nextSpare()
      if (spare !== undefined) {
        // A replica of the key not asked yet stands in first (a strict read's too: it is a primary).
        hedged = true
        s.counters.hedged++
        ask(spare)
        return
      }
      if (strict || !timed || standIns >= s.config.n) return
      hedged = true
      asked ??= new Set(pref.map(e => e.id))
      const next = s.ring.nextFallback(s.ring.position(key), s.config.n, asked, [...answers.keys()], id => s.isUp(id))
      if (next === undefined) return
      standIns++
      s.counters.hedged++
      asked.add(next)
      // A stand-in may get its own, up to N per read. The slow replica is still awaited: a stand-in's
      // not-found cannot stand for the answer of a replica that may hold the key.
      ask(next)
    }
    const after = timed ? s.latencies.hedgeAfterMs(id) : undefined
    s.rt.send(id, 'kv', read, (ok, reply) => {
      const rep = reply as KvReply
      if (ok && rep.type === 'state') {
        take(id, rep.state === null ? null : { state: rep.state, ttlMs: rep.ttlMs })
        quorum.ok(rep.state !== null)
        return
      }
      // A failed replica gets its stand-in at once.
      hedge()
      quorum.no(errorMessage(ok ? replyError(id, rep, 'get') : reply))
    }, after === undefined ? undefined : { afterMs: after, fire: hedge })
  }
  if (self) {
    quorum.add()
    const state = s.engine.state(key)
    const held = state === undefined ? null : { state, ttlMs: s.engine.ttl(key) }
    // A state leaves this replica only once durable here.
    s.rt.afterPersist(error => {
      if (error !== undefined) { quorum.no(errorMessage(error)); return }
      take(s.id, held)
      quorum.ok(held !== null)
    })
  }
  for (const id of first) ask(id)
  quorum.start()
}

/**
 * Whom a read asks at once (`first`) and who is kept back (`spares`): of the other members of the preference
 * list, as many as R needs besides this one — primaries before fallbacks (a fallback holds only the hints
 * written since a primary went down), durable ones first within each (a tab may be gone or slow), otherwise
 * in the list's order. All of them with `readAll`, and with hedging off (nothing would notice a slow one).
 */
function readTargets (s: ReplicaState, pref: readonly PreferenceEntry[], r: number): { self: boolean; first: string[]; spares: string[] } {
  const self = pref.some(e => e.id === s.id)
  const need = Math.max(0, r - (self ? 1 : 0))
  if (s.config.readAll || s.config.hedgeMultiplier === 0 || need >= pref.length - (self ? 1 : 0)) {
    // Everyone at once: the order does not matter.
    return { self, first: pref.filter(e => e.id !== s.id).map(e => e.id), spares: [] }
  }
  // Four ranks (primary and durable first), each in the list's order; N is small, so a pass per rank.
  const rank = (e: PreferenceEntry): number => (e.role === 'primary' ? 0 : 2) + (s.ring.isDurable(e.id) ? 0 : 1)
  const ordered: string[] = []
  for (let k = 0; k < 4; k++) for (const e of pref) if (e.id !== s.id && rank(e) === k) ordered.push(e.id)
  return { self, first: ordered.slice(0, need), spares: ordered.slice(need) }
}

/**
 * A read's quorum: R answers, of which (unless `notFoundOk`) at least one holds the key, or else every
 * replica asked (stand-ins included) has answered or failed. Fails once the requests still out cannot make
 * R. `settled` runs when every request has ended.
 */
class ReadQuorum {
  decided = false
  private complete = false
  private acked = 0
  private found = 0
  private failed = 0
  private total = 0
  private readonly reasons: string[] = []

  /** `expand` asks the replicas held back, if any are left (true): called before answering not-found or failing. */
  constructor (private readonly r: number, private readonly notFoundOk: boolean, private readonly fail: (acked: number, total: number, reasons: string[]) => Error, private readonly decide: Done<number>, private readonly settled: () => void, private readonly expand: () => boolean) {}

  add (): void { this.total++ }

  ok (hit: boolean): void {
    this.acked++
    if (hit) this.found++
    this.check()
  }

  no (reason: string): void {
    this.failed++
    this.reasons.push(reason)
    this.check()
  }

  start (): void { this.check() }

  private check (): void {
    const ended = this.acked + this.failed === this.total
    if (!this.decided) {
      const enough = this.acked >= this.r && (this.notFoundOk || this.found > 0 || ended)
      const hopeless = !enough && (this.total - this.failed < this.r || ended)
      // A not-found (unless notFoundOk) or a failure waits for the replicas held back, if any are left.
      if (((enough && this.found === 0 && !this.notFoundOk) || hopeless) && this.expand()) return
      if (enough) this.verdict(true, this.acked)
      else if (hopeless) this.verdict(false, this.fail(this.acked, this.total, this.reasons))
    }
    if (ended && !this.complete) {
      this.complete = true
      this.settled()
    }
  }

  private verdict (ok: boolean, value: number | Error): void {
    this.decided = true
    this.decide(ok, value)
  }
}

function readRepair (s: ReplicaState, key: string, answers: Map<string, Held | null>, merged: KeyState | null, ttlMs: number): void {
  if (merged === null) return
  const entry: Entry = { key, ttlMs, state: merged }
  for (const [id, held] of answers) {
    if (held !== null && stateEquals(held.state, merged)) continue
    s.counters.readRepairs++
    const flow = id === s.id ? s.mergeLocal([entry]) : s.replicate(id, 'kv', [entry])
    s.rt.spawn(flow, (ok, error) => { if (!ok) s.log.debug(`read repair of ${key} on ${id} failed: ${errorMessage(error)}`) })
  }
}

/** The key's preference list with each replica's state, for inspection (`GET /kv/:key/placement`). */
export function * placement (s: ReplicaState, key: string): Flow<{ position: number; segment: number; primaries: string[]; replicas: ReplicaView[] }> {
  s.engine.checkKey(key)
  const position = s.ring.position(key)
  const explained = s.ring.explain(position, s.config.n)
  const primaries = explained.map(e => e.id)
  const reasonOf = new Map(explained.map(e => [e.id, e.reason]))
  const entries = s.preference(key, false)
  const ids = new Set(entries.map(e => e.id))
  // Down primaries are listed too, so the caller sees whom fallbacks stand in for.
  const listed: Array<{ id: string; role: 'primary' | 'fallback'; hintFor?: string }> = [...entries]
  for (const p of primaries) if (!ids.has(p)) listed.push({ id: p, role: 'primary' })
  const replicas: ReplicaView[] = listed.map(e => {
    const member = s.ring.member(e.id)
    return {
      id: e.id,
      role: e.role,
      up: s.isUp(e.id),
      location: member?.location ?? e.id,
      durable: s.ring.isDurable(e.id),
      reason: e.role === 'fallback' ? 'fallback' as const : reasonOf.get(e.id) ?? 'new-location',
      ...(e.hintFor === undefined ? {} : { hintFor: e.hintFor })
    }
  })
  yield * all(replicas.map(function * (base, i): Flow<void> {
    let view: ReplicaView
    if (base.id === s.id) {
      const state = s.engine.state(key)
      view = { ...base, state: state === undefined ? null : detached(key, state) }
    }
    else if (!base.up) view = { ...base, error: 'down' }
    else {
      try {
        const reply = (yield request(base.id, 'kv', { type: 'read', key })) as KvReply
        if (reply.type !== 'state') throw replyError(base.id, reply, 'get')
        view = { ...base, state: reply.state }
      } catch (error) {
        view = { ...base, error: errorMessage(error) }
      }
    }
    replicas[i] = view
  }))
  return { position, segment: segmentOf(position), primaries, replicas }
}

export function toResult (key: string, state: KeyState | null, replies: number): GetResult {
  if (state === null) return { key, values: [], siblings: [], context: '', deleted: false, replies }
  // Heartbeat records share their bytes between keys: the caller gets a copy it may change (detached).
  const live = valuesOf(detached(key, state))
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
