/**
 * The metrics' pure parts: the outcome label of each error, members per state, counters and gauges copied
 * from counts kept elsewhere, PeerMetrics' observers feeding the registry — and the hooks that feed them:
 * KvNode's OpObserver (one member, N=1, a manual clock) and the WAL's record, byte and compaction counts.
 */
import { describe, expect, it } from 'vitest'
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { MemoryWal } from '../../src/adapters/wal-memory.js'
import { CLIENT_OPS, PeerMetrics, counterFrom, gaugeFrom, membersByState, outcomeOf } from '../../src/cli/metrics.js'
import { ManualClock, SeededRng, silentLogger } from '../../src/core/env.js'
import { AbortError, ClosedError, ConfigError, InvalidKeyError, NoDurableReplicaError, OverloadedError, QuorumError, RemoteError, SiblingLimitError, TimeoutError, UnreachableError, ValueTooLargeError } from '../../src/core/errors.js'
import { defaultKvConfig } from '../../src/core/kv/config.js'
import { type ClientOp, KvNode } from '../../src/core/kv/node.js'
import { Ring } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'
import { Registry } from 'prom-client'

describe('metrics: outcome labels', () => {
  it('names each error by its code, a relayed one by the code it carries, anything else error', () => {
    expect(outcomeOf(null)).toBe('ok')
    expect(outcomeOf(new QuorumError('put', 1, 2, 3, []))).toBe('quorum')
    expect(outcomeOf(new NoDurableReplicaError('put', 0, 1, 0, []))).toBe('no_durable_replica')
    expect(outcomeOf(new TimeoutError('p', 10))).toBe('timeout')
    expect(outcomeOf(new UnreachableError('p', 'gone'))).toBe('unreachable')
    expect(outcomeOf(new OverloadedError('x', 1))).toBe('overloaded')
    expect(outcomeOf(new ClosedError('engine'))).toBe('unavailable')
    expect(outcomeOf(new InvalidKeyError('bad'))).toBe('invalid')
    expect(outcomeOf(new ConfigError('w', 'bad'))).toBe('invalid')
    expect(outcomeOf(new ValueTooLargeError(2, 1))).toBe('invalid')
    expect(outcomeOf(new SiblingLimitError('k', 101, 100))).toBe('sibling_limit')
    expect(outcomeOf(new AbortError())).toBe('aborted')
    expect(outcomeOf(new RemoteError('p', 'ERR_QUORUM', 'no'))).toBe('quorum')
    expect(outcomeOf(new RemoteError('p', 'ERR_SOMETHING_NEW', 'no'))).toBe('error')
    expect(outcomeOf(new TypeError('x'))).toBe('error')
  })

  it('counts members per state, every state present', () => {
    expect(membersByState([])).toEqual({ alive: 0, suspect: 0, dead: 0, left: 0 })
    expect(membersByState([{ state: 'alive' }, { state: 'alive' }, { state: 'suspect' }, { state: 'left' }])).toEqual({ alive: 2, suspect: 1, dead: 0, left: 1 })
  })
})

describe('metrics: registry', () => {
  it('copies counts kept elsewhere at scrape time, with and without a label', async () => {
    const registry = new Registry()
    const stats = { a: 0, b: 5 }
    counterFrom(registry, 'meshkv_test_a_total', 'a', () => stats.a)
    counterFrom(registry, 'meshkv_test_by_total', 'by', () => ({ x: stats.a, y: stats.b }), 'which')
    gaugeFrom(registry, 'meshkv_test_g', 'g', () => stats.b)
    stats.a = 3
    let text = await registry.metrics()
    expect(text).toContain('meshkv_test_a_total 3')
    expect(text).toContain('meshkv_test_by_total{which="x"} 3')
    expect(text).toContain('meshkv_test_by_total{which="y"} 5')
    expect(text).toContain('meshkv_test_g 5')
    stats.a = 7
    stats.b = 2
    text = await registry.metrics()
    expect(text).toContain('meshkv_test_a_total 7')
    expect(text).toContain('meshkv_test_g 2')
  })

  it('counts and times each operation by op and outcome, and siblings of reads that found values', async () => {
    const m = new PeerMetrics({ defaultMetrics: false })
    m.observeOp('get', 2, null, 1)
    m.observeOp('get', 20, null, 3)
    m.observeOp('get', 1, null, undefined)
    m.observeOp('put', 4000, new QuorumError('put', 1, 2, 3, []), undefined)
    m.observeSyncMs(0.3)
    const { contentType, body } = await m.render()
    expect(contentType).toMatch(/^text\/plain/)
    expect(body).toContain('meshkv_requests_total{op="get",outcome="ok"} 3')
    expect(body).toContain('meshkv_requests_total{op="put",outcome="quorum"} 1')
    // Every op's ok series exists before any happened.
    for (const op of CLIENT_OPS) expect(body).toContain(`meshkv_request_duration_seconds_count{op="${op}",outcome="ok"}`)
    expect(body).toContain('meshkv_request_duration_seconds_bucket{le="0.0025",op="get",outcome="ok"} 2')
    expect(body).toContain('meshkv_request_duration_seconds_bucket{le="0.025",op="get",outcome="ok"} 3')
    expect(body).toContain('meshkv_request_duration_seconds_bucket{le="2.5",op="put",outcome="quorum"} 0')
    expect(body).toContain('meshkv_request_duration_seconds_bucket{le="5",op="put",outcome="quorum"} 1')
    expect(body).toContain('meshkv_get_siblings_count 2')
    expect(body).toContain('meshkv_get_siblings_bucket{le="1"} 1')
    expect(body).toContain('meshkv_get_siblings_bucket{le="3"} 2')
    expect(body).toContain('meshkv_wal_fsync_duration_seconds_bucket{le="0.0005"} 1')
    expect(body).toContain('meshkv_wal_fsync_duration_seconds_bucket{le="0.00025"} 0')
  })
})

describe('metrics: the hooks', () => {
  it('KvNode tells its OpObserver each operation, its latency by the monotonic clock, its error and the siblings read', async () => {
    const clock = new ManualClock(1_000_000)
    let monotonic = 0
    const observed: Array<[ClientOp, number, string | null, number | undefined]> = []
    const engine = await StorageEngine.open({ replicaId: 'solo', clock })
    const config = { ...defaultKvConfig(), n: 1, r: 1, w: 1, minDurable: 0, durableAcks: 0 }
    const ring = Ring.build([{ id: 'solo', vnodes: 8 }], await loadRingHash(), { minDurable: 0 })
    const node = new KvNode(ring, {
      engine,
      config,
      hash64: await loadHash64(),
      log: silentLogger,
      clock: { nowMs: () => clock.nowMs(), monotonicMs: () => (monotonic += 1.5) },
      transport: { request: async () => { throw new Error('no other peers') } },
      observeOp: (op, latencyMs, error, siblings) => { observed.push([op, latencyMs, error === null ? null : outcomeOf(error), siblings]) }
    })
    await node.put('k', new Uint8Array([1]))
    await node.put('k', new Uint8Array([2]))
    await node.get('k')
    await node.get('missing')
    await node.delete('gone')
    await node.putHeartbeat('heartbeat/x', new Uint8Array([3]), { lww: true, ttlMs: 60_000 })
    await expect(node.get('')).rejects.toBeInstanceOf(InvalidKeyError)
    // Settled in a later microtask than the caller's await.
    await new Promise(resolve => setImmediate(resolve))
    expect(observed).toEqual([
      ['put', 1.5, null, undefined],
      ['put', 1.5, null, undefined],
      ['get', 1.5, null, 2],
      ['get', 1.5, null, undefined],
      ['delete', 1.5, null, undefined],
      ['heartbeat', 1.5, null, undefined],
      ['get', 1.5, 'invalid', undefined]
    ])
    await engine.close()
  })

  it('the WAL counts records, bytes appended and compactions, cheaply readable from the engine', async () => {
    const clock = new ManualClock(1_000_000)
    const engine = await StorageEngine.open({ replicaId: 'solo', clock, wal: new MemoryWal(), rng: new SeededRng(7), log: silentLogger })
    const before = engine.walStats()
    for (let i = 0; i < 10; i++) engine.writeLocal(`k${i}`, new Uint8Array(100), {})
    await engine.durable()
    const after = engine.walStats()
    expect(after.records - before.records).toBeGreaterThanOrEqual(10)
    expect(after.bytesAppended - before.bytesAppended).toBeGreaterThan(1000)
    expect(after.syncs).toBeGreaterThan(before.syncs)
    expect(after.bytes).toBeGreaterThan(before.bytes)
    await engine.compact()
    expect(engine.walStats().compactions).toBe(before.compactions + 1)
    expect(engine.walStats().compactionsFailed).toBe(0)
    await engine.close()
  })
})
