/**
 * The replication state machine's runtime: how its multi-step work (a quorum write, a read with read repair,
 * a handoff turn, an anti-entropy round) runs without awaiting I/O. Each piece of work is a flow, a generator
 * that yields what it waits for — a reply from a peer, its own log becoming durable, a quorum of child flows
 * — and the runtime turns each wait into an effect for the host (`send`, `persist`) and resumes the flow when
 * the host reports back (`reply`, `persisted`). Timeouts are ticks: `expire(now)` fails the requests whose
 * deadline passed, so a simulator advances time and a seed replays every timeout (TigerBeetle drives its
 * protocol timeouts the same way; sans-I/O protocol libraries take the same shape).
 *
 * Nothing here awaits a promise, reads a clock or sets a timer: the host passes `now` in and performs the
 * effects taken out after each call.
 */
import { TimeoutError, errorMessage } from '../errors.js'
import type { KvReply, KvRequest } from '../kv/messages.js'
import type { ChangeEvent } from './types.js'

export type Channel = 'kv' | 'sync'

/** What the machine asks its host to do. */
export type Effect =
  /** Send `request` to `to`; report its answer with receive(to, { type: 'reply' | 'failed', rid }). */
  | { readonly type: 'send'; readonly to: string; readonly channel: Channel; readonly rid: RequestTicket; readonly request: KvRequest }
  /** Answer the request that `to` sent: `rid` is what the host passed in with it. */
  | { readonly type: 'reply'; readonly to: string; readonly rid: unknown; readonly reply: KvReply }
  /** Call persisted(token) once everything this replica has logged so far is durable (engine.durable()). */
  | { readonly type: 'persist'; readonly token: PersistToken }
  /** The operation the host started with call(op, ...) finished: `value` is its result, or its error. */
  | { readonly type: 'complete'; readonly op: unknown; readonly ok: boolean; readonly value: unknown }
  /** A change this replica made (a write it coordinated, an expiry), for watchers. */
  | { readonly type: 'change'; readonly event: ChangeEvent }

/**
 * What the host delivers: a peer's request (with `rid`, any value of the host's, handed back in the reply
 * effect), or the answer (or failure) of one of ours.
 */
export type Message =
  | { readonly type: 'request'; readonly rid: unknown; readonly request: KvRequest }
  | { readonly type: 'reply'; readonly rid: RequestTicket; readonly reply: KvReply }
  | { readonly type: 'failed'; readonly rid: RequestTicket; readonly error: Error }

/** What a flow waits for. */
export type Wait =
  | { readonly kind: 'request'; readonly to: string; readonly channel: Channel; readonly request: KvRequest }
  | { readonly kind: 'persist' }
  /**
   * Runs `flows` side by side; resumes with how many succeeded once `required` did, or throws `fail(acked,
   * reasons)` once so many failed that they cannot. The flows run on afterwards; `settled` is called when the
   * last one ends.
   */
  | { readonly kind: 'quorum'; readonly flows: ReadonlyArray<Flow<unknown>>; readonly required: number; readonly fail: (acked: number, reasons: string[]) => Error; readonly settled?: () => void }
  /** Work written with callbacks (the coordinator's hot paths): `start` calls `done` once, maybe at once. */
  | { readonly kind: 'callback'; readonly start: (done: Resume) => void }

export type Flow<T> = Generator<Wait, T, unknown>

/** How a wait ends: with its value, or (ok false) with an error. */
export type Resume = (ok: boolean, value: unknown) => void

/**
 * What a `persist` effect carries and the host hands back to persisted(): opaque to hosts. An object, not
 * an id in a map: the machine keeps no table of waits that churns with every write.
 */
export class PersistToken {
  /** @internal */
  constructor (readonly resume: Resume) {}
}

/**
 * One request waiting for its reply: what a `send` effect carries and the host hands back with the reply.
 * Opaque to hosts. Outstanding requests sit in a slot array, not a map keyed by id: a map's table is
 * replaced as it fills with deleted entries, and the dead table keeps the requests it held (whole
 * operations, through their callbacks) alive into the old generation: with a map, a coordinator serving 64
 * puts and gets in flight spent 1.8 times the GC time.
 */
export class RequestTicket {
  /** @internal */
  constructor (readonly to: string, readonly sentAt: number, readonly deadline: number, public resume: Resume | null, readonly slot: number, public hedgeAt: number, public hedge: (() => void) | null) {}
}

const PERSIST: Wait = { kind: 'persist' }

/**
 * What a flow yields to wait for `to`'s reply to `req` (`const reply = (yield request(...)) as KvReply`);
 * the yield throws the transport's error or a TimeoutError. Yielded directly rather than through a helper
 * generator: the hot paths take one generator fewer per message.
 */
export function request (to: string, channel: Channel, req: KvRequest): Wait {
  return { kind: 'request', to, channel, request: req }
}

/** What a flow yields to wait until everything this replica has logged so far is durable. */
export function persist (): Wait {
  return PERSIST
}

/** What a flow yields to wait for callback-style work (`(yield callback(done => ...)) as T`). */
export function callback (start: (done: Resume) => void): Wait {
  return { kind: 'callback', start }
}

/** A flow of one request: its reply (for quorums of plain requests). */
export function * exchange (to: string, channel: Channel, req: KvRequest): Flow<KvReply> {
  return (yield request(to, channel, req)) as KvReply
}

/** Runs flows side by side; see Wait 'quorum'. Resumes with the number that succeeded. */
export function * quorum (flows: ReadonlyArray<Flow<unknown>>, required: number, fail: (acked: number, reasons: string[]) => Error, settled?: () => void): Flow<number> {
  return (yield { kind: 'quorum', flows, required, fail, ...(settled === undefined ? {} : { settled }) }) as number
}

/** Runs flows side by side until every one ended; resumes with how many succeeded. Never throws. */
export function * all (flows: ReadonlyArray<Flow<unknown>>): Flow<number> {
  let ok = 0
  const guarded = flows.map(function * (f): Flow<void> {
    try { yield * f; ok++ } catch { /* counted as not ok */ }
  })
  yield * quorum(guarded, guarded.length, () => new Error('all: a guarded flow failed'))
  return ok
}

/**
 * Counts the outcomes of `total` parallel tries toward `required` successes: `decide` is called once, as
 * soon as `required` succeeded (with that count) or so many failed that they cannot (with `fail(acked,
 * reasons)`); with fewer tries than required the verdict waits for all of them, so the error reports the
 * real count. `settled` is called when the last try ended. Call `start()` after wiring the tries up.
 */
class Tally {
  acked = 0
  failed = 0
  private decided = false
  private readonly reasons: string[] = []

  constructor (private readonly total: number, private readonly required: number, private readonly fail: (acked: number, reasons: string[]) => Error, private readonly decide: Resume, private readonly settled?: () => void) {}

  ok (): void {
    if (++this.acked === this.required) this.verdict(true, this.acked)
    this.ended()
  }

  no (reason: string): void {
    this.reasons.push(reason)
    if (++this.failed === this.total - this.required + 1 && this.total >= this.required) this.verdict(false, this.fail(this.acked, this.reasons))
    this.ended()
  }

  /** Decides at once if there is nothing to wait for (no tries). */
  start (): void {
    if (this.total === 0) this.ended()
  }

  private verdict (ok: boolean, value: unknown): void {
    if (this.decided) return
    this.decided = true
    this.decide(ok, value)
  }

  private ended (): void {
    if (this.acked + this.failed < this.total) return
    if (!this.decided) this.verdict(this.acked >= this.required, this.acked >= this.required ? this.acked : this.fail(this.acked, this.reasons))
    this.settled?.()
  }
}

export class Runtime {
  /** Requests sent and not yet answered (freed slots are undefined, and listed in `freeSlots`). */
  private readonly slots: Array<RequestTicket | undefined> = []
  private readonly freeSlots: number[] = []
  private outstanding = 0
  private out: Effect[] = []
  /** The time passed in with the current call. */
  nowMs = 0
  /** Replies that matched no outstanding request (late after a timeout, or duplicated by the network). */
  lateReplies = 0

  constructor (private readonly timeoutMs: number) {}

  /** Requests waiting for replies. */
  get inFlight (): number { return this.outstanding }

  /** Called with each answered request's round trip (ms), for per-peer latency. */
  observe: ((to: string, ms: number) => void) | null = null

  /** When the first outstanding request times out or is due a hedge (Infinity if none). */
  nextDeadline (): number {
    let at = Infinity
    for (const t of this.slots) {
      if (t === undefined) continue
      if (t.deadline < at) at = t.deadline
      if (t.hedge !== null && t.hedgeAt < at) at = t.hedgeAt
    }
    return at
  }

  emit (effect: Effect): void { this.out.push(effect) }

  /** The effects produced since the last call, for the host to perform. */
  take (): Effect[] {
    const effects = this.out
    this.out = []
    return effects
  }

  /** Starts a flow; `done` is called with its result or its error (thrown errors never escape). */
  spawn<T> (flow: Flow<T>, done: (ok: boolean, value: T | Error) => void): (reason: Error) => void {
    let running = false
    let finished = false
    let pending = true
    let nextOk = true
    let nextValue: unknown
    /** Counts waits, so that only the current wait can resume the flow (not one a cancel overtook). */
    let waits = 0
    let cancelled: Error | null = null
    const step = (): void => {
      running = true
      while (pending) {
        pending = false
        let r: IteratorResult<Wait, T>
        try {
          r = nextOk ? flow.next(nextValue) : flow.throw(nextValue)
        } catch (error) {
          running = false
          finished = true
          done(false, error instanceof Error ? error : new Error(errorMessage(error)))
          return
        }
        if (r.done === true) {
          running = false
          finished = true
          done(true, r.value)
          return
        }
        if (cancelled !== null) { resumeWith(false, cancelled); continue } // a cancelled flow starts no more waits
        const wait = ++waits
        try {
          // May resume at once (a quorum of flows that need not wait, callback work that ended).
          this.wait(r.value, (ok, value) => { if (wait === waits) resumeWith(ok, value) })
        } catch (error) {
          resumeWith(false, error) // the wait could not start: the flow gets the error
        }
      }
      running = false
    }
    const resumeWith = (ok: boolean, value: unknown): void => {
      if (finished) return
      pending = true
      nextOk = ok
      nextValue = value
      if (!running) step()
    }
    step()
    // Cancelling throws `reason` into the flow at once (its current wait is ignored from then on), and at
    // every wait it starts after that.
    return reason => {
      if (finished || cancelled !== null) return
      cancelled = reason
      waits++
      resumeWith(false, reason)
    }
  }

  private wait (w: Wait, resume: Resume): void {
    switch (w.kind) {
      case 'request': {
        this.send(w.to, w.channel, w.request, resume)
        return
      }
      case 'persist': {
        this.out.push({ type: 'persist', token: new PersistToken(resume) })
        return
      }
      case 'quorum': {
        const tally = new Tally(w.flows.length, w.required, w.fail, resume, w.settled)
        for (const flow of w.flows) this.spawn(flow, (ok, value) => { if (ok) tally.ok(); else tally.no(errorMessage(value)) })
        tally.start()
        return
      }
      case 'callback': w.start(resume)
    }
  }

  /**
   * Sends `request` to `to`; `done` gets the reply, or the transport's error or a TimeoutError (the
   * callback form of `yield request(...)`). With `hedge`, a tick calls `hedge.fire` once if the request is
   * still unanswered `hedge.afterMs` after it was sent (the request itself still waits for its answer).
   */
  send (to: string, channel: Channel, req: KvRequest, done: Resume, hedge?: { afterMs: number; fire: () => void }): void {
    const slot = this.freeSlots.pop() ?? this.slots.length
    const ticket = new RequestTicket(to, this.nowMs, this.nowMs + this.timeoutMs, done, slot, hedge === undefined ? Infinity : this.nowMs + hedge.afterMs, hedge?.fire ?? null)
    this.slots[slot] = ticket
    this.outstanding++
    this.out.push({ type: 'send', to, channel, rid: ticket, request: req })
  }

  /**
   * Calls `done` once everything logged so far is durable (with the log's error if it failed): the
   * flow-free form of `yield persist()`, for the replica's hottest replies.
   */
  afterPersist (done: (error: Error | undefined) => void): void {
    this.out.push({ type: 'persist', token: new PersistToken((ok, value) => { done(ok ? undefined : value as Error) }) })
  }

  /** A peer answered request `ticket` (ok) or the transport gave up on it (error). */
  answer (ticket: RequestTicket, ok: boolean, value: KvReply | Error): void {
    const resume = ticket.resume
    if (resume === null || this.slots[ticket.slot] !== ticket) { this.lateReplies++; return }
    this.release(ticket)
    if (ok) this.observe?.(ticket.to, this.nowMs - ticket.sentAt)
    resume(ok, value)
  }

  private release (ticket: RequestTicket): void {
    ticket.resume = null
    ticket.hedge = null
    this.slots[ticket.slot] = undefined
    this.freeSlots.push(ticket.slot)
    this.outstanding--
  }

  persisted (token: PersistToken, error: Error | undefined): void {
    if (error === undefined) token.resume(true, undefined)
    else token.resume(false, error)
  }

  /** Fires the hedges that are due, and fails every request whose deadline passed. */
  expire (): number {
    let expired = 0
    for (const t of this.slots) {
      if (t === undefined) continue
      if (t.hedge !== null && t.hedgeAt <= this.nowMs) {
        const fire = t.hedge
        t.hedge = null
        fire()
      }
      if (t.deadline > this.nowMs || t.resume === null) continue
      const resume = t.resume!
      this.release(t)
      expired++
      resume(false, new TimeoutError(t.to, this.timeoutMs))
    }
    return expired
  }

}
