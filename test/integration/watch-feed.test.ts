/**
 * The change feed carries only what someone watches (src/services/watch.ts), with real processes: while
 * the only watcher in the mesh watches `heartbeat/` (as every dashboard does), a write to another key is not
 * published at all, and a heartbeat event still reaches the watcher; once a peer watches other keys too,
 * every write is published again and reaches it.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil, watchEvents } from '../helpers/peers.js'

const group = peerGroup('meshkv-watch-feed-', ['--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60'])
afterAll(group.stopAll)

interface WatchStats { published: number; subscribers: number; publishing: 'all' | 'heartbeats' | 'none' }

async function watchStats (p: PeerProcess): Promise<WatchStats> {
  const res = await fetch(`${p.http}/stats`, { signal: AbortSignal.timeout(10_000) })
  return (await res.json() as { watch: WatchStats }).watch
}

async function put (p: PeerProcess, path: string): Promise<void> {
  const res = await fetch(`${p.http}${path}`, { method: 'PUT', body: 'v', signal: AbortSignal.timeout(10_000) })
  expect(res.status).toBeLessThan(300)
}

describe('watch feed', () => {
  it('publishes only heartbeat events while every watcher watches heartbeats, and every event once one watches more', async () => {
    const a = await group.start('a', ['--bootstrap'])
    const b = await group.start('b', ['--join', a.tcp])
    await waitUntil(async () => {
      for (const p of [a, b]) if ((await members(p)).filter(m => m.state === 'alive').length !== 2) return false
      return true
    }, 30_000, 'two peers alive')
    const beats = watchEvents(b, 'heartbeat/')
    try {
      await waitUntil(async () => (await watchStats(a)).publishing === 'heartbeats', 30_000, 'a sees b watching heartbeats only')
      const before = (await watchStats(a)).published
      await put(a, '/kv/plain-1')
      await put(a, '/heartbeat/svc-1?ttl=60000')
      await waitUntil(async () => beats.events.some(e => e.type === 'put' && e.key === 'heartbeat/svc-1'), 30_000, 'the heartbeat event at b')
      // The plain write was not published: only the service's first beat was.
      expect((await watchStats(a)).published - before).toBe(1)

      const all = watchEvents(b, 'plain-')
      try {
        await waitUntil(async () => (await watchStats(a)).publishing === 'all', 30_000, 'a sees b watching other keys')
        await put(a, '/kv/plain-2')
        await waitUntil(async () => all.events.some(e => e.type === 'put' && e.key === 'plain-2'), 30_000, 'the plain write reaches the watcher at b')
        expect(beats.events.map(e => e.key)).toEqual(['heartbeat/svc-1'])
      } finally {
        all.close()
      }
    } finally {
      beats.close()
    }
  })
})
