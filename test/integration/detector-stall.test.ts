/**
 * The failure detector when a replica itself stalls (issue 16): three real peers, 500 services beating
 * through two of them, and the third's event loop blocked for 3 s (POST /debug/stall). No live service
 * expires, the stalled replica reports its detector degraded with the reason once it runs again, and
 * services that really stop are still detected afterwards.
 */
import * as http from 'node:http'
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const SERVICES = 500
const STOPPED = 10
const TTL_MS = 4000
const group = peerGroup('meshkv-detector-', ['--debug-api'])
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
afterAll(async () => { agent.destroy(); await group.stopAll() })

function request (peer: PeerProcess, method: string, path: string): Promise<{ status: number; body: string }> {
  const base = new URL(peer.http)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, agent, timeout: 30_000, headers: method === 'POST' ? { 'content-type': 'application/json' } : {} }, res => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }) })
    })
    req.on('timeout', () => { req.destroy(new Error(`${method} ${path}: no answer within 30 s`)) })
    req.on('error', reject)
    req.end()
  })
}

/**
 * Every `expired` event the mesh's watch feed carries, read from one peer's SSE stream until `signal`;
 * resolves once the stream is open.
 */
async function watchExpired (peer: PeerProcess, signal: AbortSignal): Promise<string[]> {
  const expired: string[] = []
  const res = await fetch(`${peer.http}/watch?prefix=heartbeat/`, { signal })
  void (async () => {
    try {
      let text = ''
      for await (const chunk of res.body!) {
        text += Buffer.from(chunk).toString()
        let at: number
        while ((at = text.indexOf('\n\n')) >= 0) {
          const event = text.slice(0, at)
          text = text.slice(at + 2)
          const data = /^data: (.*)$/m.exec(event)?.[1]
          if (/^event: expired$/m.test(event) && data !== undefined) expired.push((JSON.parse(data) as { key: string }).key)
        }
      }
    } catch { /* aborted at the end of the test */ }
  })()
  return expired
}

describe('failure detector under a stalled replica', () => {
  it('expires no live service while one replica stalls 3 s, reports it degraded, and still detects stopped ones', async () => {
    const a = await group.start('a', ['--bootstrap'])
    const b = await group.start('b', ['--join', a.tcp])
    const c = await group.start('c', ['--join', a.tcp])
    await waitUntil(async () => (await members(a)).filter(m => m.state === 'alive').length === 3 && (await members(c)).filter(m => m.state === 'alive').length === 3, 60_000, 'three members alive')
    const stop = new AbortController()
    const expired = await watchExpired(b, stop.signal)
    let beating = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`)
    let refusedOrFailed = 0
    let rounds = 0
    // Beats through b and c only, once a second, until the test ends.
    const beater = (async () => {
      while (!stop.signal.aborted) {
        const started = performance.now()
        const round = beating
        await Promise.all(round.map((id, i) => request(i % 2 === 0 ? b : c, 'PUT', `/heartbeat/${id}?ttl=${TTL_MS}`).then(r => { if (r.status !== 204) refusedOrFailed++ }, () => { refusedOrFailed++ })))
        rounds++
        await new Promise(resolve => setTimeout(resolve, Math.max(0, 1000 - (performance.now() - started))))
      }
    })()
    try {
      await waitUntil(async () => (JSON.parse((await request(b, 'GET', '/services')).body) as { alive: number }).alive === SERVICES, 60_000, `${SERVICES} services alive`)
      expect(JSON.parse((await request(a, 'GET', '/services?local=1')).body)).toMatchObject({ detector: { state: 'healthy' } })

      // a's event loop is blocked for 3 s; its answer comes once it runs again.
      expect((await request(a, 'POST', '/debug/stall?ms=3000')).status).toBe(200)
      const during = JSON.parse((await request(a, 'GET', '/services?local=1')).body) as { detector: { state: string; reason: string } }
      expect(during.detector.state).toBe('degraded')
      expect(during.detector.reason).toMatch(/event-loop delay|sweep lag|log sync/)
      expect(await (await fetch(`${a.http}/metrics`)).text()).toMatch(/^meshkv_detector_degraded 1$/m)

      // Two TTLs' worth of beat rounds after the stall, with a healthy again, then some services stop.
      const roundsAtStall = rounds
      await waitUntil(async () => rounds - roundsAtStall >= 2 * TTL_MS / 1000 && (JSON.parse((await request(a, 'GET', '/services?local=1')).body) as { detector: { state: string } }).detector.state === 'healthy', 60_000, 'two TTLs of beats after the stall, and a healthy again')
      expect(expired).toEqual([])
      const stopped = beating.slice(0, STOPPED)
      beating = beating.slice(STOPPED)
      await waitUntil(async () => {
        const view = JSON.parse((await request(b, 'GET', '/services')).body) as { services: Array<{ id: string; state: string }> }
        return stopped.every(id => view.services.find(s => s.id === id)?.state === 'expired')
      }, 60_000, 'the stopped services detected')
      // Only the stopped ones ever expired, on any replica (their events follow within a batch or two).
      const keys = stopped.map(id => `heartbeat/${id}`).sort()
      await waitUntil(() => Promise.resolve(keys.every(k => expired.includes(k))), 30_000, 'the expired events of the stopped services')
      expect([...new Set(expired)].sort()).toEqual(keys)
      expect(refusedOrFailed).toBe(0)
    } finally {
      stop.abort()
      await beater
    }
  }, 240_000)
})
