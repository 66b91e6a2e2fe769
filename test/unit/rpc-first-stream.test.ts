/**
 * firstStream (src/services/rpc.ts): a link's stream is opened on whichever open direct connection to the
 * peer negotiates first, so one connection whose far side is gone (its streams never open) does not hold the
 * link up until the dial timeout. The connections here are doubles of the one method it calls; the real
 * thing is covered by test/e2e/relay-failover.spec.ts (a new tab's first requests to old tabs).
 */
import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { firstStream } from '../../src/services/rpc.js'

interface FakeStream { readonly name: string; aborted: Error | null; abort: (error: Error) => void }

/** A connection whose newStream settles when the test says so, and records the signal it was given. */
function connection (name: string, ignoreAbort = false): { connection: Connection; open: () => FakeStream; fail: (error: Error) => void; signal: () => AbortSignal } {
  let settle!: { resolve: (s: FakeStream) => void; reject: (e: Error) => void }
  let given: AbortSignal | undefined
  const fake = {
    newStream: async (_protocol: string, options: { signal: AbortSignal }) => {
      given = options.signal
      return await new Promise<FakeStream>((resolve, reject) => {
        settle = { resolve, reject }
        if (!ignoreAbort) options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
      })
    }
  }
  return {
    connection: fake as unknown as Connection,
    open: () => {
      const stream: FakeStream = { name, aborted: null, abort (error) { this.aborted = error } }
      settle.resolve(stream)
      return stream
    },
    fail: error => { settle.reject(error) },
    signal: () => given!
  }
}

describe('firstStream', () => {
  it('takes the stream of the connection that opens first and stops the others', async () => {
    const [dead, slow, live] = [connection('dead'), connection('slow'), connection('live')]
    const opening = firstStream([dead.connection, slow.connection, live.connection], '/p/1', AbortSignal.timeout(60_000))
    const stream = live.open()
    expect(await opening as unknown).toBe(stream)
    expect(stream.aborted).toBeNull()
    // The tries still under way are aborted, so a connection whose far side is gone costs nothing more.
    expect(dead.signal().aborted).toBe(true)
    expect(slow.signal().aborted).toBe(true)
  })

  it('aborts a stream that opens after another won', async () => {
    // b's try ignores the abort (as a muxer that checks its signal only at the start would) and opens late.
    const [a, b] = [connection('a'), connection('b', true)]
    const opening = firstStream([a.connection, b.connection], '/p/1', AbortSignal.timeout(60_000))
    const first = a.open()
    expect(await opening as unknown).toBe(first)
    const late = b.open()
    await new Promise(resolve => setImmediate(resolve))
    expect(late.aborted?.message).toMatch(/another connection to this peer opened the stream first/)
    expect(first.aborted).toBeNull()
  })

  it('fails with every connection\'s reason when none opens, and when the caller\'s signal ends it', async () => {
    const [a, b] = [connection('a'), connection('b')]
    const opening = firstStream([a.connection, b.connection], '/p/1', AbortSignal.timeout(60_000)).catch((e: unknown) => e)
    a.fail(new Error('data channel closed'))
    b.fail(new Error('muxer closed'))
    const error = await opening
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/no connection to the peer opened a stream \(2 tried\)/)
    expect((error as Error).message).toMatch(/data channel closed/)
    expect((error as Error).message).toMatch(/muxer closed/)
    // Nothing opens: the caller's deadline ends every try.
    const controller = new AbortController()
    const [c, d] = [connection('c'), connection('d')]
    const timedOut = firstStream([c.connection, d.connection], '/p/1', controller.signal).catch((e: unknown) => e)
    controller.abort(new Error('dial timed out'))
    expect(((await timedOut) as Error).message).toMatch(/dial timed out/)
    expect(c.signal().aborted && d.signal().aborted).toBe(true)
  })
})
