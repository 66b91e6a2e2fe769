/**
 * firstStream (src/services/rpc.ts): a link's stream is tried on one open connection to the peer after
 * another, newest first, each next one after a stagger (or at once when every try so far failed), and the
 * first stream that opens is kept. One connection whose far side is gone (its streams never open) then
 * does not hold the link up until the dial timeout, and a healthy peer sees no stream opened and dropped.
 * The connections here are doubles of the one method it calls; the real thing is covered by
 * test/e2e/relay-failover.spec.ts (a new tab's first requests to old tabs).
 */
import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { firstStream } from '../../src/services/rpc.js'

interface FakeStream { readonly name: string; aborted: Error | null; abort: (error: Error) => void }

interface Fake {
  readonly connection: Connection
  /** Resolves when firstStream asked this connection for a stream. */
  readonly asked: Promise<void>
  wasAsked: boolean
  open: () => FakeStream
  fail: (error: Error) => void
  signal: () => AbortSignal
}

/** A connection whose newStream settles when the test says so; with `ignoreAbort` its try ignores the signal. */
function fake (name: string, ignoreAbort = false): Fake {
  let settle: { resolve: (s: FakeStream) => void; reject: (e: Error) => void } | undefined
  let given: AbortSignal | undefined
  let markAsked!: () => void
  const f: Fake = {
    asked: new Promise<void>(resolve => { markAsked = resolve }),
    wasAsked: false,
    connection: {
      newStream: async (_protocol: string, options: { signal: AbortSignal }) => {
        given = options.signal
        f.wasAsked = true
        markAsked()
        return await new Promise<FakeStream>((resolve, reject) => {
          settle = { resolve, reject }
          if (!ignoreAbort) options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
        })
      }
    } as unknown as Connection,
    open: () => {
      const stream: FakeStream = { name, aborted: null, abort (error) { this.aborted = error } }
      settle!.resolve(stream)
      return stream
    },
    fail: error => { settle!.reject(error) },
    signal: () => given!
  }
  return f
}

const LONG = 60_000

describe('firstStream', () => {
  it('asks only the first connection while it answers', async () => {
    const [a, b] = [fake('a'), fake('b')]
    const opening = firstStream([a.connection, b.connection], '/p/1', AbortSignal.timeout(LONG), LONG)
    await a.asked
    const stream = a.open()
    expect(await opening as unknown).toBe(stream)
    expect(stream.aborted).toBeNull()
    // The peer saw one stream, not one per connection.
    expect(b.wasAsked).toBe(false)
  })

  it('tries the next connection once the first has not opened the stream within the stagger, keeps the one that opens, and stops the rest', async () => {
    const [dead, live, spare] = [fake('dead'), fake('live'), fake('spare')]
    const opening = firstStream([dead.connection, live.connection, spare.connection], '/p/1', AbortSignal.timeout(LONG), 20)
    await dead.asked
    await live.asked
    const stream = live.open()
    expect(await opening as unknown).toBe(stream)
    // The try on the dead connection is aborted; the third is never started (or aborted if it was).
    expect(dead.signal().aborted).toBe(true)
    if (spare.wasAsked) expect(spare.signal().aborted).toBe(true)
  })

  it('closes a stream that opens after another won', async () => {
    // a's try ignores the abort (as a muxer that checks its signal only at the start would) and opens late.
    const [a, b] = [fake('a', true), fake('b')]
    const opening = firstStream([a.connection, b.connection], '/p/1', AbortSignal.timeout(LONG), 1)
    await b.asked
    const first = b.open()
    expect(await opening as unknown).toBe(first)
    const late = a.open()
    await new Promise(resolve => setImmediate(resolve))
    expect(late.aborted?.message).toMatch(/another connection to this peer opened the stream first/)
    expect(first.aborted).toBeNull()
  })

  it('moves on at once when a try fails, and fails with every connection\'s reason when none opens', async () => {
    const [a, b] = [fake('a'), fake('b')]
    // A stagger far beyond the test's time: only a failure can start the second try.
    const opening = firstStream([a.connection, b.connection], '/p/1', AbortSignal.timeout(LONG), LONG).catch((e: unknown) => e)
    await a.asked
    a.fail(new Error('data channel closed'))
    await b.asked
    b.fail(new Error('muxer closed'))
    const error = await opening
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/no connection to the peer opened a stream \(2 tried\)/)
    expect((error as Error).message).toMatch(/data channel closed/)
    expect((error as Error).message).toMatch(/muxer closed/)
  })

  it('ends when the caller\'s signal does, even if a try ignores it, and refuses an empty list', async () => {
    const controller = new AbortController()
    const [a, b] = [fake('a', true), fake('b', true)]
    const timedOut = firstStream([a.connection, b.connection], '/p/1', controller.signal, LONG).catch((e: unknown) => e)
    await a.asked
    controller.abort(new Error('dial timed out'))
    expect(((await timedOut) as Error).message).toMatch(/dial timed out/)
    expect(b.wasAsked).toBe(false)
    expect(((await firstStream([], '/p/1', AbortSignal.timeout(LONG)).catch((e: unknown) => e)) as Error).message).toMatch(/no connection to the peer/)
  })
})
