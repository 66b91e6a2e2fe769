/**
 * KvNode's admission control: client operations and heartbeats in flight are bounded (KvConfig.admitOpsMax,
 * admitBeatsMax); past a bound a new one fails at once with OverloadedError, is counted and observed, and
 * room comes back as operations settle.
 */
import { describe, expect, it } from 'vitest'
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { ManualClock, silentLogger } from '../../src/core/env.js'
import { OverloadedError } from '../../src/core/errors.js'
import { defaultKvConfig } from '../../src/core/kv/config.js'
import { type ClientOp, KvNode, type OpObserver } from '../../src/core/kv/node.js'
import type { KvReply } from '../../src/core/kv/messages.js'
import { Ring } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

/**
 * Peer 'a' of a two-member mesh with W=2, admitting `opsMax` operations and `beatsMax` heartbeats: every
 * write waits for 'b', which answers only when the test calls the functions in `pending`.
 */
async function heldNode (opsMax: number, beatsMax: number, observeOp?: OpObserver, members = ['a', 'b']): Promise<{ node: KvNode; pending: Array<() => void>; clock: ManualClock; engine: StorageEngine }> {
  const clock = new ManualClock(1_000_000)
  const engine = await StorageEngine.open({ replicaId: 'a', clock })
  const pending: Array<() => void> = []
  const config = { ...defaultKvConfig(), n: 2, r: 1, w: 2, minDurable: 0, durableAcks: 0, admitOpsMax: opsMax, admitBeatsMax: beatsMax }
  const ring = Ring.build(members.map(id => ({ id, vnodes: 8 })), await loadRingHash(), { minDurable: 0 })
  const node = new KvNode(ring, {
    engine,
    config,
    hash64: await loadHash64(),
    log: silentLogger,
    clock,
    transport: { request: async () => await new Promise<KvReply>((resolve) => { pending.push(() => { resolve({ type: 'ack' } as unknown as KvReply) }) }) },
    ...(observeOp === undefined ? {} : { observeOp })
  })
  node.setMembership(ring, () => true)
  return { node, pending, clock, engine }
}

describe('admission control', () => {
  it('refuses heartbeats and operations past their bounds at once, and admits again as they settle', async () => {
    const observed: Array<[ClientOp, string | null]> = []
    const { node, pending } = await heldNode(6, 3, (op, _ms, error) => { observed.push([op, error === null ? null : error.name]) })
    const beat = (i: number): Promise<unknown> => node.putHeartbeat(`heartbeat/s${i}`, new Uint8Array([i]), { lww: true, ttlMs: 60_000 }).catch((e: unknown) => e)
    // Services with a record here, beaten just now (a new service's first beat would take the urgent lane).
    for (let i = 0; i < 4; i++) {
      // This transport's answers satisfy no quorum: the write ends in an error, and is held here.
      const first = node.putHeartbeat(`heartbeat/s${i}`, new Uint8Array([100 + i]), { lww: true, ttlMs: 60_000 }).catch(() => {})
      for (const release of pending.splice(0)) release()
      await first
    }
    observed.length = 0
    const beats = [beat(0), beat(1), beat(2)]
    expect(node.admission).toMatchObject({ inFlight: 3, beatsInFlight: 3, refused: 0 })
    // A fourth beat is refused at once, without waiting for anything.
    const refused = await beat(3)
    expect(refused).toBeInstanceOf(OverloadedError)
    expect(refused).toMatchObject({ code: 'ERR_OVERLOADED', limit: 3 })
    // Without a stack trace (an overloaded peer refuses tens of thousands a second), and the limit restored.
    const stackLimit = (Error as { stackTraceLimit?: number }).stackTraceLimit
    expect((refused as Error).stack).not.toMatch(/\n\s+at /)
    expect(new OverloadedError('a test', 1)).toMatchObject({ name: 'OverloadedError', code: 'ERR_OVERLOADED', message: 'a test: more than 1 outstanding requests', what: 'a test', limit: 1 })
    expect((Error as { stackTraceLimit?: number }).stackTraceLimit).toBe(stackLimit)
    expect(new Error('other').stack).toMatch(/\n\s+at /)
    expect(observed).toContainEqual(['heartbeat', 'OverloadedError'])
    // Other operations still have room, up to admitOpsMax in all.
    const puts = [0, 1, 2].map(i => node.put(`k${i}`, new Uint8Array([i])).catch((e: unknown) => e))
    expect(node.admission.inFlight).toBe(6)
    expect(await node.put('k9', new Uint8Array([9])).catch((e: unknown) => e)).toMatchObject({ code: 'ERR_OVERLOADED', limit: 6 })
    expect(node.admission.refused).toBe(2)
    for (const release of pending.splice(0)) release()
    await Promise.all([...beats, ...puts])
    expect(node.admission).toMatchObject({ inFlight: 0, beatsInFlight: 0, refused: 2 })
    // Room again.
    const again = beat(4)
    for (const release of pending.splice(0)) release()
    expect(await again).not.toBeInstanceOf(OverloadedError)
  })

  it('an operation whose caller gave up (its signal aborted) holds its slot until the peer has finished it', async () => {
    let finished!: () => void
    const ended = new Promise<void>(resolve => { finished = resolve })
    // The aborted put's own end, as the peer observes it (a refused put is observed too, with OverloadedError).
    const { node, pending } = await heldNode(1, 1, (op, _ms, error) => { if (op === 'put' && !(error instanceof OverloadedError)) finished() })
    const controller = new AbortController()
    const put = node.put('k', new Uint8Array([1]), { signal: controller.signal }).catch((e: unknown) => e)
    controller.abort(new Error('the caller gave up'))
    expect(await put).toMatchObject({ name: 'AbortError' })
    // The write still runs (a put is not cancellable): its slot is not free until it ends.
    expect(node.admission.inFlight).toBe(1)
    expect(await node.put('k2', new Uint8Array([2])).catch((e: unknown) => e)).toBeInstanceOf(OverloadedError)
    // A refused put says nothing of the beats: the detector stays healthy.
    expect(node.detector.state).toBe('healthy')
    for (const release of pending.splice(0)) release()
    await ended
    expect(node.admission.inFlight).toBe(0)
  })

  it('past the beats\' bound, a beat whose service is a TTL past its last beat goes in a lane of its own, and a refused beat makes the detector degraded', async () => {
    const { node, pending, clock } = await heldNode(100, 1)
    // Each beat a record of its own, so each is a write (a repeated record would be a refresh, refresh.ts,
    // whose failure here — this transport answers nothing a peer would — writes the beat in a second request).
    let n = 0
    const beat = (id: string): Promise<unknown> => node.putHeartbeat(`heartbeat/${id}`, new Uint8Array([n++]), { lww: true, ttlMs: 3000 }).catch((e: unknown) => e)
    // Three services with a record each.
    for (const id of ['old', 'old2', 'fresh']) {
      const first = beat(id)
      for (const release of pending.splice(0)) release()
      await first
    }
    expect(node.detector.state).toBe('healthy')
    clock.advance(2000)
    const fresh = beat('fresh')
    for (const release of pending.splice(0)) release()
    await fresh
    clock.advance(1000)
    // The lane is full (a new service's first beat fills it): a beat of a service beaten 1 s ago is refused.
    const filler = beat('new')
    expect(await beat('fresh')).toBeInstanceOf(OverloadedError)
    expect(node.detector).toMatchObject({ state: 'degraded', reason: expect.stringMatching(/refusing beats/) })
    // 'old' last beat 3 s ago, a whole TTL: its beat is taken past the bound, in the urgent lane.
    const urgent = beat('old')
    expect(node.admission).toMatchObject({ beatsInFlight: 2, urgentInFlight: 1, urgentAdmitted: 1 })
    // That lane is bounded too (as many as the beats' bound): another urgent beat waits its turn.
    expect(await beat('old2')).toBeInstanceOf(OverloadedError)
    for (const release of pending.splice(0)) release()
    expect(await urgent).not.toBeInstanceOf(OverloadedError)
    await filler
    expect(node.admission).toMatchObject({ beatsInFlight: 0, urgentInFlight: 0, urgentAdmitted: 1, refused: 2 })
    // Room again in both lanes.
    const again = beat('old2')
    expect(node.admission).toMatchObject({ beatsInFlight: 1, urgentInFlight: 0 })
    for (const release of pending.splice(0)) release()
    expect(await again).not.toBeInstanceOf(OverloadedError)
  })

  it('a beat refused for overload renews its key here when this peer holds it alive with the very record and TTL, and nothing else', async () => {
    const { node, pending, clock, engine } = await heldNode(100, 1)
    const record = new Uint8Array([1, 2, 3])
    // The first beat is a write, held here (this transport's answers satisfy no quorum: it ends in an error).
    const first = node.putHeartbeat('heartbeat/svc', record, { lww: true, ttlMs: 3000 }).catch(() => {})
    for (const release of pending.splice(0)) release()
    await first
    const written = engine.state('heartbeat/svc')
    expect(engine.refreshedWall('heartbeat/svc')).toBe(0)
    clock.advance(2500)
    // The beats' lane is full (a new service's first beat waits for 'b').
    const filler = node.putHeartbeat('heartbeat/other', new Uint8Array([9]), { lww: true, ttlMs: 3000 })
    const refuse = async (key: string, value: Uint8Array, ttlMs = 3000): Promise<unknown> => await node.putHeartbeat(key, value, { lww: true, ttlMs }).catch((e: unknown) => e)
    // The same record again: refused all the same (no acknowledgement), but the key took it as a refresh here.
    expect(await refuse('heartbeat/svc', new Uint8Array([1, 2, 3]))).toBeInstanceOf(OverloadedError)
    expect(node.admission).toMatchObject({ refused: 1, refusedRefreshed: 1 })
    // Noted apart from the refreshes that got through: the listing's last beat and the urgent lane read those.
    expect(engine.lastAliveWall('heartbeat/svc')).toBeGreaterThanOrEqual(1_002_500)
    expect(engine.refreshedWall('heartbeat/svc')).toBe(0)
    // Nothing was written or sent for it: the same state, and no request beyond the filler's.
    expect(engine.state('heartbeat/svc')).toBe(written)
    expect(pending.length).toBe(1)
    // Another record, another TTL: refused and noted nowhere.
    expect(await refuse('heartbeat/svc', new Uint8Array([7]))).toBeInstanceOf(OverloadedError)
    expect(await refuse('heartbeat/svc', record, 6000)).toBeInstanceOf(OverloadedError)
    expect(node.admission).toMatchObject({ refused: 3, refusedRefreshed: 1 })
    // A TTL after the last beat that got through, the service's beat takes the urgent lane although this
    // peer noted refused ones since: only this peer knows of those, the other replicas need a beat.
    clock.advance(600)
    const urgent = node.putHeartbeat('heartbeat/svc', record, { lww: true, ttlMs: 3000 }).catch((e: unknown) => e)
    expect(node.admission).toMatchObject({ urgentInFlight: 1, urgentAdmitted: 1, refused: 3 })
    // Both lanes full: a new service's beat is refused too, and noted nowhere (there is nothing to renew).
    expect(await refuse('heartbeat/ghost', record)).toBeInstanceOf(OverloadedError)
    expect(node.admission).toMatchObject({ refused: 4, refusedRefreshed: 1 })
    expect(engine.state('heartbeat/ghost')).toBeUndefined()
    for (const release of pending.splice(0)) release()
    expect(await urgent).not.toBeInstanceOf(OverloadedError)
    await filler.catch(() => {})
  })

  it('past the beats\' bound, a new service\'s first beat goes in the urgent lane where this peer is one of its replicas, and is refused where it is not', async () => {
    // 'a' in a mesh of three with N=2: a replica of some keys, not of others.
    const { node, pending } = await heldNode(100, 1, undefined, ['a', 'b', 'c'])
    const held = (node as unknown as { machine: { state: { primariesOf: (key: string) => readonly string[] } } }).machine.state
    const keys = Array.from({ length: 64 }, (_, i) => `heartbeat/new-${i}`)
    const mine = keys.filter(k => held.primariesOf(k).includes('a'))
    const others = keys.filter(k => !held.primariesOf(k).includes('a'))
    expect(mine.length).toBeGreaterThan(1)
    expect(others.length).toBeGreaterThan(0)
    const beat = (key: string): Promise<unknown> => node.putHeartbeat(key, new Uint8Array([1]), { lww: true, ttlMs: 3000 }).catch((e: unknown) => e)
    // The beats' lane full with one service's first beat.
    const filler = beat(mine[0]!)
    expect(node.admission).toMatchObject({ beatsInFlight: 1, urgentInFlight: 0 })
    // A new service whose key this peer is not a replica of (it coordinates or forwards the beat): no record
    // here says nothing of it, so it is refused although the urgent lane has room.
    expect(await beat(others[0]!)).toBeInstanceOf(OverloadedError)
    expect(node.admission).toMatchObject({ urgentAdmitted: 0, refused: 1 })
    // Another new service this peer is a replica of: it would stay unknown while refused, so it gets in.
    const first = beat(mine[1]!)
    expect(node.admission).toMatchObject({ beatsInFlight: 2, urgentInFlight: 1, urgentAdmitted: 1, urgentNewAdmitted: 1, refused: 1 })
    // Each write may try a fallback after 'b' or 'c' answers: released until both ended (a bounded loop).
    let ended = false
    const both = Promise.all([filler, first]).then(() => { ended = true })
    for (let turn = 0; turn < 1000 && !ended; turn++) {
      for (const release of pending.splice(0)) release()
      await new Promise(resolve => setImmediate(resolve))
    }
    expect(ended).toBe(true)
    await both
    expect(node.admission).toMatchObject({ beatsInFlight: 0, urgentInFlight: 0 })
  })

  it('new services\' first beats take at most a quarter of the urgent lane, the rest stays for services about to expire', async () => {
    const { node, pending, clock } = await heldNode(100, 4)
    let n = 0
    const beat = (id: string): Promise<unknown> => node.putHeartbeat(`heartbeat/${id}`, new Uint8Array([n++]), { lww: true, ttlMs: 3000 }).catch((e: unknown) => e)
    // A service with a record, then a TTL of silence.
    const first = beat('old')
    for (const release of pending.splice(0)) release()
    await first
    clock.advance(3000)
    // The beats' lane full (4), with services' first beats.
    const held = ['f0', 'f1', 'f2', 'f3'].map(beat)
    // One new service gets into the urgent lane (a quarter of 4); the next is refused.
    const urgentNew = beat('n0')
    expect(node.admission).toMatchObject({ urgentInFlight: 1, urgentNewAdmitted: 1 })
    expect(await beat('n1')).toBeInstanceOf(OverloadedError)
    // The service about to expire still gets in.
    const late = beat('old')
    expect(node.admission).toMatchObject({ urgentInFlight: 2, urgentAdmitted: 2, urgentNewAdmitted: 1, refused: 1 })
    for (const release of pending.splice(0)) release()
    await Promise.all([...held, urgentNew, late])
    expect(node.admission).toMatchObject({ beatsInFlight: 0, urgentInFlight: 0 })
  })
})
