// The replication machine's flow runtime (src/core/replication/flow.ts): waits become effects, answers
// resume flows, timeouts happen only when the host ticks, quorums decide as soon as they can.
import { describe, expect, it } from 'vitest'
import { QuorumError, TimeoutError } from '../../src/core/errors.js'
import type { KvReply } from '../../src/core/kv/messages.js'
import { type Effect, type Flow, Runtime, all, callback, exchange, persist, quorum, request } from '../../src/core/replication/flow.js'

const OK: KvReply = { type: 'ok' }

function sends (effects: Effect[]): Array<Extract<Effect, { type: 'send' }>> {
  return effects.filter((e): e is Extract<Effect, { type: 'send' }> => e.type === 'send')
}

function started<T> (rt: Runtime, flow: Flow<T>): { result: () => { ok: boolean; value: unknown } | null } {
  let result: { ok: boolean; value: unknown } | null = null
  rt.spawn(flow, (ok, value) => { result = { ok, value } })
  return { result: () => result }
}

describe('replication flows', () => {
  it('a request becomes a send effect, and the reply resumes the flow', () => {
    const rt = new Runtime(1000)
    const run = started(rt, exchange('b', 'kv', { type: 'read', key: 'k' }))
    const [send] = sends(rt.take())
    expect(send).toMatchObject({ to: 'b', channel: 'kv', request: { type: 'read', key: 'k' } })
    expect(run.result()).toBeNull()
    rt.answer(send!.rid, true, OK)
    expect(run.result()).toEqual({ ok: true, value: OK })
    expect(rt.inFlight).toBe(0)
  })

  it('times out only when ticked past the deadline; a reply after that is counted as late', () => {
    const rt = new Runtime(1000)
    rt.nowMs = 5000
    const run = started(rt, exchange('b', 'kv', { type: 'info' }))
    const [send] = sends(rt.take())
    expect(rt.nextDeadline()).toBe(6000)
    rt.nowMs = 5999
    expect(rt.expire()).toBe(0)
    expect(run.result()).toBeNull()
    rt.nowMs = 6000
    expect(rt.expire()).toBe(1)
    expect(run.result()?.value).toBeInstanceOf(TimeoutError)
    rt.answer(send!.rid, true, OK)
    expect(rt.lateReplies).toBe(1)
  })

  it('persist waits for the host, and a failed log fails the flow', () => {
    const rt = new Runtime(1000)
    const ok = started(rt, (function * () { yield persist() })())
    const bad = started(rt, (function * () { yield persist() })())
    const tokens = rt.take().flatMap(e => (e.type === 'persist' ? [e.token] : []))
    expect(tokens).toHaveLength(2)
    rt.persisted(tokens[0]!, undefined)
    rt.persisted(tokens[1]!, new Error('disk gone'))
    expect(ok.result()).toEqual({ ok: true, value: undefined })
    expect(bad.result()).toMatchObject({ ok: false })
  })

  it('a quorum resumes at the W-th success and keeps the others running until settled', () => {
    const rt = new Runtime(1000)
    let settled = false
    const fail = (acked: number, reasons: string[]): Error => new QuorumError('put', acked, 2, 3, reasons)
    const run = started(rt, quorum(['a', 'b', 'c'].map(id => exchange(id, 'kv', { type: 'info' })), 2, fail, () => { settled = true }))
    const out = sends(rt.take())
    expect(out.map(s => s.to)).toEqual(['a', 'b', 'c'])
    rt.answer(out[0]!.rid, true, OK)
    expect(run.result()).toBeNull()
    rt.answer(out[1]!.rid, false, new Error('refused'))
    rt.answer(out[2]!.rid, true, OK)
    expect(run.result()).toEqual({ ok: true, value: 2 })
    expect(settled).toBe(true)
  })

  it('a quorum fails as soon as it cannot be met, with the acked count and every reason', () => {
    const rt = new Runtime(1000)
    const fail = (acked: number, reasons: string[]): Error => new QuorumError('put', acked, 2, 3, reasons)
    const run = started(rt, quorum(['a', 'b', 'c'].map(id => exchange(id, 'kv', { type: 'info' })), 2, fail))
    const out = sends(rt.take())
    rt.answer(out[0]!.rid, true, OK)
    rt.answer(out[1]!.rid, false, new Error('b down'))
    expect(run.result()).toBeNull()
    rt.answer(out[2]!.rid, false, new Error('c down'))
    const error = run.result()?.value
    expect(error).toBeInstanceOf(QuorumError)
    expect(error).toMatchObject({ acked: 1, required: 2, reasons: ['b down', 'c down'] })
  })

  it('fewer flows than required: the verdict waits for all of them and reports the real count', () => {
    const rt = new Runtime(1000)
    const fail = (acked: number, reasons: string[]): Error => new QuorumError('put', acked, 3, 2, reasons)
    const run = started(rt, quorum([(function * () {})(), exchange('a', 'kv', { type: 'info' })], 3, fail))
    const [send] = sends(rt.take())
    expect(run.result()).toBeNull()
    rt.answer(send!.rid, true, OK)
    expect(run.result()?.value).toMatchObject({ acked: 2, required: 3 })
  })

  it('all() counts successes and never throws; with no flows it ends at once', () => {
    const rt = new Runtime(1000)
    const run = started(rt, all(['a', 'b'].map(id => exchange(id, 'kv', { type: 'info' }))))
    const out = sends(rt.take())
    rt.answer(out[0]!.rid, false, new Error('x'))
    rt.answer(out[1]!.rid, true, OK)
    expect(run.result()).toEqual({ ok: true, value: 1 })
    expect(started(rt, all([])).result()).toEqual({ ok: true, value: 0 })
  })

  it('an error thrown inside a flow ends it with that error, never escapes', () => {
    const rt = new Runtime(1000)
    const run = started(rt, (function * (): Flow<void> { yield persist(); throw new RangeError('bad') })())
    const [p] = rt.take()
    rt.persisted((p as Extract<Effect, { type: 'persist' }>).token, undefined)
    expect(run.result()?.value).toBeInstanceOf(RangeError)
  })

  it('a cancelled flow gets the reason at once, starts no more waits, and ignores the reply it was waiting for', () => {
    const rt = new Runtime(1000)
    let sentAfter = 0
    const flow = (function * (): Flow<string> {
      try {
        yield request('a', 'kv', { type: 'info' })
      } catch {
        yield request('b', 'kv', { type: 'info' }) // a cancelled flow may catch, but cannot wait again
        sentAfter++
      }
      return 'done'
    })()
    let result: { ok: boolean; value: unknown } | null = null
    const cancel = rt.spawn(flow, (ok, value) => { result = { ok, value } })
    const [send] = sends(rt.take())
    cancel(new RangeError('stop'))
    expect(result).toMatchObject({ ok: false })
    expect((result as unknown as { value: unknown }).value).toBeInstanceOf(RangeError)
    expect(sends(rt.take())).toEqual([])
    expect(sentAfter).toBe(0)
    rt.answer(send!.rid, true, OK) // the reply it no longer waits for changes nothing
    expect((result as unknown as { value: unknown }).value).toBeInstanceOf(RangeError)
  })

  it('a resume after a flow finished does not finish it again', () => {
    const rt = new Runtime(1000)
    let completions = 0
    rt.spawn((function * (): Flow<void> { yield callback(done => { done(true, 1); done(true, 2) }) })(), () => { completions++ })
    expect(completions).toBe(1)
  })
})
