/**
 * Admission control on a real peer: a burst of heartbeats past `kv.admit-beats-max` gets 503 ERR_OVERLOADED
 * with Retry-After at once (never a silent queue), every other beat is stored, and the refusals are counted
 * in /stats and /metrics.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { peerGroup } from '../helpers/peers.js'

const group = peerGroup('meshkv-admission-', ['--n', '1', '--r', '1', '--w', '1'])
afterAll(async () => { await group.stopAll() })

describe('admission control', () => {
  it('refuses beats past kv.admit-beats-max with 503 and Retry-After, and counts them', async () => {
    const config = path.join(group.root, 'meshkv.toml')
    fs.writeFileSync(config, '[kv]\nadmit-beats-max = 1\n')
    const peer = await group.start('a', ['--bootstrap', '--config', config])
    // 200 beats at once, each on its own connection, so they arrive together.
    const agent = new http.Agent({ keepAlive: false, maxSockets: 200 })
    const base = new URL(peer.http)
    const beat = (i: number): Promise<{ status: number; retryAfter: string | undefined; code: string | undefined }> => new Promise((resolve, reject) => {
      const req = http.request({ host: base.hostname, port: base.port, method: 'PUT', path: `/heartbeat/svc-${i}?ttl=60000`, agent, timeout: 30_000 }, res => {
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('end', () => {
          const text = Buffer.concat(parts).toString()
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], code: text === '' ? undefined : (JSON.parse(text) as { code?: string }).code })
        })
      })
      req.on('timeout', () => { req.destroy(new Error('no answer within 30 s')) })
      req.on('error', reject)
      req.end()
    })
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => beat(i)))
    agent.destroy()
    const refused = results.filter(r => r.status === 503)
    const stored = results.filter(r => r.status === 204)
    expect(refused.length + stored.length).toBe(200)
    expect(refused.length).toBeGreaterThan(0)
    expect(stored.length).toBeGreaterThan(0)
    for (const r of refused) expect(r).toMatchObject({ retryAfter: '1', code: 'ERR_OVERLOADED' })
    const stats = await (await fetch(`${peer.http}/stats`)).json() as { admission: { refused: number; inFlight: number } }
    expect(stats.admission).toMatchObject({ refused: refused.length, inFlight: 0 })
    const metrics = await (await fetch(`${peer.http}/metrics`)).text()
    expect(metrics).toContain(`meshkv_overload_refusals_total{protocol="client"} ${refused.length}`)
    // Every beat answered 204 is a live service.
    const services = await (await fetch(`${peer.http}/services?local=1`)).json() as { alive: number }
    expect(services.alive).toBe(stored.length)
  }, 60_000)
})
