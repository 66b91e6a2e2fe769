/**
 * meshkv as a failure detector, with real processes: three peers (TTL sweep every 200 ms), twenty services
 * beating every 300 ms with a 1 s TTL through one peer, a watcher (Server-Sent Events) on another.
 * - Five services stop: every peer lists them expired soon after their TTL — the engine's bound is two
 *   sweep periods (checked exactly with a manual clock in test/unit/engine.test.ts); here, with real timers
 *   on a loaded machine, the test allows 2 sweeps plus 1.5 s of scheduling slack — and the watcher gets an
 *   `expired` event for each. A late beat revives one, with a `revived` event.
 * - The other fifteen keep beating while a replica is SIGKILLed and restarted from its directory: none of
 *   them is ever expired, on any peer or in the event stream.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil, watchEvents } from '../helpers/peers.js'

const SWEEP_MS = 200
const TTL_MS = 1000
const BEAT_MS = 300
const group = peerGroup('meshkv-heartbeat-', ['--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60', '--push-pull-interval-ms', '2000', '--sweep-period-ms', String(SWEEP_MS)])
afterAll(group.stopAll)

interface Service { id: string; state: 'alive' | 'expired'; lastBeat: number; replica: string }

async function services (p: PeerProcess): Promise<Map<string, Service>> {
  const res = await fetch(`${p.http}/services?local=1`, { signal: AbortSignal.timeout(10_000) })
  const body = await res.json() as { services: Service[] }
  return new Map(body.services.map(s => [s.id, s]))
}

describe('heartbeat services (real processes)', () => {
  it('expires stopped services on every peer, tells a watcher elsewhere, and never expires a beating one across a replica crash', async () => {
    const a = await group.start('a', ['--bootstrap'])
    let b = await group.start('b', ['--join', a.tcp])
    const c = await group.start('c', ['--join', a.tcp])
    await waitUntil(async () => {
      for (const p of [a, b, c]) if ((await members(p)).filter(m => m.state === 'alive').length !== 3) return false
      return true
    }, 30_000, 'three peers alive')
    const watcher = watchEvents(c, 'heartbeat/')
    const ids = Array.from({ length: 20 }, (_, i) => `svc-${i}`)
    const beating = new Set(ids)
    const lastAck = new Map<string, number>()
    let stopped = false
    const beats = ids.map(async id => {
      while (!stopped) {
        if (beating.has(id)) {
          try {
            const res = await fetch(`${a.http}/heartbeat/${id}?ttl=${TTL_MS}`, { method: 'PUT', body: JSON.stringify({ id }), signal: AbortSignal.timeout(5000) })
            await res.arrayBuffer()
            if (res.status === 204) lastAck.set(id, Date.now())
          } catch { /* retried at the next beat */ }
        }
        await new Promise(resolve => setTimeout(resolve, BEAT_MS))
      }
    })
    try {
      await waitUntil(async () => (await services(c)).size === 20, 30_000, 'every peer holds the twenty services')

      // Five stop.
      const gone = ids.slice(0, 5)
      for (const id of gone) beating.delete(id)
      const stopAt = Date.now()
      const detectedAt = new Map<string, number>()
      await waitUntil(async () => {
        for (const p of [a, b, c]) {
          const list = await services(p)
          for (const id of gone) if (list.get(id)?.state === 'expired' && !detectedAt.has(`${p.id}/${id}`)) detectedAt.set(`${p.id}/${id}`, Date.now())
        }
        return detectedAt.size === 15
      }, 30_000, 'every peer lists the stopped services expired')
      const bound = 2 * SWEEP_MS + 1500
      for (const [where, at] of detectedAt) {
        const id = where.split('/')[1]!
        const due = Math.max(lastAck.get(id)!, stopAt - BEAT_MS) + TTL_MS
        expect(at - due, `${where} detected ${at - due} ms after its TTL`).toBeLessThanOrEqual(bound)
      }
      await waitUntil(async () => gone.every(id => watcher.events.some(e => e.type === 'expired' && e.key === `heartbeat/${id}`)), 10_000, 'the watcher on another peer gets every expiry')
      // One expired event per service, not one per replica.
      for (const id of gone) expect(watcher.events.filter(e => e.type === 'expired' && e.key === `heartbeat/${id}`)).toHaveLength(1)

      // A late beat revives one.
      beating.add('svc-0')
      await waitUntil(async () => watcher.events.some(e => e.type === 'revived' && e.key === 'heartbeat/svc-0'), 10_000, 'the revived event')
      await waitUntil(async () => (await services(b)).get('svc-0')?.state === 'alive', 10_000, 'svc-0 alive again everywhere')

      // A replica crashes and restarts while the rest keep beating: none of them expires.
      b.proc.kill('SIGKILL')
      await b.exited
      await waitUntil(async () => (await members(a)).find(m => m.id === b.id)?.state === 'dead', 30_000, 'b is detected dead')
      b = await group.start('b', [])
      const restartedAt = Date.now()
      await waitUntil(async () => {
        for (const p of [a, c]) if ((await members(p)).find(m => m.id === b.id)?.state !== 'alive') return false
        return true
      }, 30_000, 'b is alive again')
      const keep = ids.slice(5)
      // Until b holds beats from more than two TTLs after its restart: its sweeps ran over its stale,
      // recovered beats and over the gap while the others still thought it dead.
      await waitUntil(async () => {
        const list = await services(b)
        return keep.every(id => (list.get(id)?.lastBeat ?? 0) > restartedAt + 2 * TTL_MS)
      }, 30_000, 'b receives beats again')
      for (const p of [a, b, c]) {
        const list = await services(p)
        for (const id of keep) expect(list.get(id)?.state, `${id} on ${p.id}`).toBe('alive')
      }
      const falseExpiries = watcher.events.filter(e => e.type === 'expired' && keep.includes(e.key.slice('heartbeat/'.length)))
      expect(falseExpiries).toEqual([])
    } finally {
      stopped = true
      await Promise.all(beats)
      watcher.close()
    }
  }, 240_000)
})
