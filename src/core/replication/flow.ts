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
  | { readonly type: 'send'; readonly to: string; readonly channel: Channel; readonly rid: number; readonly request: KvRequest }
  /** Answer the request `rid` that `to` sent. */
  | { readonly type: 'reply'; readonly to: string; readonly rid: number; readonly reply: KvReply }
  /** Call persisted(token) once everything this replica has logged so far is durable (engine.durable()). */
  | { readonly type: 'persist'; readonly token: number }
  /** The operation the host started with call(op, ...) finished: `value` is its result, or its error. */
  | { readonly type: 'complete'; readonly op: number; readonly ok: boolean; readonly value: unknown }
  /** A change this replica made (a write it coordinated, an expiry), for watchers. */
  | { readonly type: 'change'; readonly event: ChangeEvent }

/** What the host delivers: a peer's request, or the answer (or failure) of one of ours. */
export type Message =
  | { readonly type: 'request'; readonly rid: number; readonly request: KvRequest }
  | { readonly type: 'reply'; readonly rid: number; readonly reply: KvReply }
  | { readonly type: 'failed'; readonly rid: number; readonly error: Error }

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

export type Flow<T> = Generator<Wait, T, unknown>

type Resume = (ok: boolean, value: unknown) => void

interface Outstanding {
  readonly to: string
  readonly deadline: number
  readonly resume: Resume
}

/** Waits for `to`'s reply to `request`; throws the transport's error or a TimeoutError. */
export function * request (to: string, channel: Channel, req: KvRequest): Flow<KvReply> {
  return (yield { kind: 'request', to, channel, request: req }) as KvReply
}

/** Waits until everything this replica has logged so far is durable. */
export function * persist (): Flow<void> {
  yield { kind: 'persist' }
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

export class Runtime {
  /** Requests sent and not yet answered, in the order sent (so by deadline: every request gets the same timeout). */
  private readonly outstanding = new Map<number, Outstanding>()
  private readonly persisting = new Map<number, Resume>()
  private out: Effect[] = []
  private nextRid = 1
  private nextToken = 1
  /** The time passed in with the current call. */
  nowMs = 0
  /** Replies that matched no outstanding request (late after a timeout, or duplicated by the network). */
  lateReplies = 0

  constructor (private readonly timeoutMs: number) {}

  /** Requests waiting for replies. */
  get inFlight (): number { return this.outstanding.size }

  /** When the oldest outstanding request times out (Infinity if none). */
  nextDeadline (): number {
    for (const o of this.outstanding.values()) return o.deadline
    return Infinity
  }

  emit (effect: Effect): void { this.out.push(effect) }

  /** The effects produced since the last call, for the host to perform. */
  take (): Effect[] {
    const effects = this.out
    this.out = []
    return effects
  }

  /** Starts a flow; `done` is called with its result or its error (thrown errors never escape). */
  spawn<T> (flow: Flow<T>, done: (ok: boolean, value: T | Error) => void): void {
    let running = false
    let next: [boolean, unknown] | null = [true, undefined]
    const resume: Resume = (ok, value) => {
      next = [ok, value]
      if (!running) step()
    }
    const step = (): void => {
      running = true
      while (next !== null) {
        const [ok, value] = next
        next = null
        let r: IteratorResult<Wait, T>
        try {
          r = ok ? flow.next(value) : flow.throw(value)
        } catch (error) {
          running = false
          done(false, error instanceof Error ? error : new Error(errorMessage(error)))
          return
        }
        if (r.done === true) {
          running = false
          done(true, r.value)
          return
        }
        this.wait(r.value, resume) // may resume at once (a quorum of flows that need not wait)
      }
      running = false
    }
    step()
  }

  private wait (w: Wait, resume: Resume): void {
    switch (w.kind) {
      case 'request': {
        const rid = this.nextRid++
        this.outstanding.set(rid, { to: w.to, deadline: this.nowMs + this.timeoutMs, resume })
        this.out.push({ type: 'send', to: w.to, channel: w.channel, rid, request: w.request })
        return
      }
      case 'persist': {
        const token = this.nextToken++
        this.persisting.set(token, resume)
        this.out.push({ type: 'persist', token })
        return
      }
      case 'quorum': this.quorum(w, resume)
    }
  }

  private quorum (w: Extract<Wait, { kind: 'quorum' }>, resume: Resume): void {
    const total = w.flows.length
    let acked = 0
    let failed = 0
    let decided = false
    const reasons: string[] = []
    const decide = (ok: boolean, value: unknown): void => {
      if (decided) return
      decided = true
      resume(ok, value)
    }
    const ended = (): void => {
      if (acked + failed < total) return
      // Fewer flows than required: the verdict waits for all, so the error reports the real count.
      if (!decided) decide(acked >= w.required, acked >= w.required ? acked : w.fail(acked, reasons))
      w.settled?.()
    }
    if (total === 0) { ended(); return }
    for (const flow of w.flows) {
      this.spawn(flow, (ok, value) => {
        if (ok) {
          if (++acked === w.required) decide(true, acked)
        } else {
          reasons.push(errorMessage(value))
          if (++failed === total - w.required + 1 && total >= w.required) decide(false, w.fail(acked, reasons))
        }
        ended()
      })
    }
  }

  /** A peer answered request `rid` (ok) or the transport gave up on it (error). */
  answer (rid: number, ok: boolean, value: KvReply | Error): void {
    const o = this.outstanding.get(rid)
    if (o === undefined) { this.lateReplies++; return }
    this.outstanding.delete(rid)
    o.resume(ok, value)
  }

  persisted (token: number, error: Error | undefined): void {
    const resume = this.persisting.get(token)
    if (resume === undefined) return
    this.persisting.delete(token)
    if (error === undefined) resume(true, undefined)
    else resume(false, error)
  }

  /** Fails every request whose deadline passed (a clock that went back only makes them late). */
  expire (): number {
    let expired = 0
    for (const [rid, o] of this.outstanding) {
      if (o.deadline > this.nowMs) break
      this.outstanding.delete(rid)
      expired++
      o.resume(false, new TimeoutError(o.to, this.timeoutMs))
    }
    return expired
  }
}
