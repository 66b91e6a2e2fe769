/**
 * Acknowledged writes survive crashes, with real processes: three `node node/peer.js` peers, a client with
 * 64 writes in flight through one of them (the coordinator), and
 * - ten times, at a random moment, a replica (not the coordinator) is SIGKILLed and restarted from its data
 *   directory while the writes go on; afterwards every acknowledged write reads back with quorum;
 * - the coordinator itself is SIGKILLed within milliseconds of acknowledging a batch; every write it
 *   acknowledged reads back from the two survivors.
 * Each write goes to its own key, so "readable" means exactly the acknowledged value.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const swimFlags = ['--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60', '--push-pull-interval-ms', '2000']
const group = peerGroup('meshkv-kvcrash-', swimFlags)
afterAll(group.stopAll)
const peer = group.start

async function allAlive (peers: PeerProcess[], count: number): Promise<boolean> {
  for (const p of peers) {
    const list = await members(p)
    if (list.filter(m => m.state === 'alive').length !== count) return false
  }
  return true
}

/** Writes `key-<n>` = `value-<n>` through `via` with `inFlight` requests outstanding until stopped. */
class Writer {
  readonly acked = new Map<string, string>()
  failed = 0
  private next = 0
  private stopped = false
  private readonly workers: Array<Promise<void>>
  onAck: ((key: string) => void) | null = null

  constructor (private readonly via: () => string, prefix: string, inFlight: number) {
    this.workers = Array.from({ length: inFlight }, async () => {
      while (!this.stopped) {
        const n = this.next++
        const key = `${prefix}-${n}`
        const value = `value-${n}-${'x'.repeat(80)}`
        try {
          const res = await fetch(`${this.via()}/kv/${key}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(20_000) })
          await res.arrayBuffer()
          if (res.status === 204) {
            this.acked.set(key, value)
            this.onAck?.(key)
          } else {
            this.failed++
          }
        } catch {
          this.failed++
          // The coordinator is gone (the coordinator-crash case): stop rather than spin.
          if (this.stopped) return
          await new Promise(resolve => setTimeout(resolve, 20))
        }
      }
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    await Promise.all(this.workers)
  }
}

/** Reads every acknowledged key through `via` with quorum R=2; returns the keys that do not read back. */
async function lost (via: string, acked: Map<string, string>): Promise<string[]> {
  const missing: string[] = []
  const keys = [...acked.keys()]
  for (let i = 0; i < keys.length; i += 64) {
    await Promise.all(keys.slice(i, i + 64).map(async key => {
      const res = await fetch(`${via}/kv/${key}`, { signal: AbortSignal.timeout(20_000) })
      const body = await res.text()
      if (res.status !== 200 || body !== acked.get(key)) missing.push(`${key}: ${res.status} ${body.slice(0, 80)}`)
    }))
  }
  return missing
}

describe('kv crash safety with real processes', () => {
  it('loses no acknowledged write while a replica is SIGKILLed and restarted ten times', async () => {
    const boot = await peer('a', ['--bootstrap'])
    const replicas = [await peer('b', ['--join', boot.tcp]), await peer('c', ['--join', boot.tcp])]
    await waitUntil(async () => await allAlive([boot, ...replicas], 3), 30_000, 'three peers alive')
    const writer = new Writer(() => boot.http, 'crash', 64)
    for (let round = 0; round < 10; round++) {
      const before = writer.acked.size
      // A random moment: after some more acknowledged writes.
      const target = before + 50 + Math.floor(Math.random() * 400)
      await waitUntil(async () => writer.acked.size >= target, 60_000, `round ${round}: writes progress`)
      const i = round % 2
      const victim = replicas[i]!
      victim.proc.kill('SIGKILL')
      await victim.exited
      // Writes continue with one replica down (W=2 of the two left), then it comes back from its directory.
      const during = writer.acked.size
      await waitUntil(async () => writer.acked.size >= during + 50, 60_000, `round ${round}: writes continue with a replica down`)
      replicas[i] = await peer(i === 0 ? 'b' : 'c', [])
      await waitUntil(async () => await allAlive([boot, ...replicas], 3), 60_000, `round ${round}: the restarted replica is alive again`)
    }
    await writer.stop()
    expect(writer.acked.size).toBeGreaterThan(1000)
    const missing = await lost(boot.http, writer.acked)
    expect(missing, `lost ${missing.length} of ${writer.acked.size} acknowledged writes`).toEqual([])
    // Every peer serves them, not only the coordinator.
    for (const r of replicas) expect(await lost(r.http, new Map([...writer.acked].slice(0, 500)))).toEqual([])
    console.info(`kv crash: ${writer.acked.size} acknowledged writes over 10 replica crashes, ${writer.failed} refused, 0 lost`)
  }, 600_000)

  it('keeps every write the coordinator acknowledged just before it was SIGKILLed', async () => {
    const a = await peer('ca', ['--bootstrap', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
    const b = await peer('cb', ['--join', a.tcp])
    const c = await peer('cc', ['--join', a.tcp])
    await waitUntil(async () => await allAlive([a, b, c], 3), 30_000, 'three peers alive')
    const writer = new Writer(() => a.http, 'coord', 64)
    const target = 300 + Math.floor(Math.random() * 500)
    let killedAt = -1
    await new Promise<void>(resolve => {
      writer.onAck = () => {
        if (writer.acked.size < target || killedAt >= 0) return
        // Within the same turn as the acknowledgement.
        a.proc.kill('SIGKILL')
        killedAt = writer.acked.size
        resolve()
      }
    })
    await a.exited
    await writer.stop()
    expect(killedAt).toBeGreaterThan(0)
    const missing = await lost(b.http, writer.acked)
    expect(missing, `lost ${missing.length} of ${writer.acked.size}`).toEqual([])
    expect(await lost(c.http, writer.acked)).toEqual([])
  }, 300_000)
})
