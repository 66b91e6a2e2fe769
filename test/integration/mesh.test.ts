/**
 * The mesh with real processes: a bootstrap and four `node node/peer.js` peers over TCP on 127.0.0.1. All
 * list five alive members; a SIGKILLed one is listed dead by every survivor within the bound the SWIM
 * configuration implies; restarted from its data directory it rejoins on its own, alive with a higher
 * incarnation; one that gets SIGTERM leaves and is listed as left, not dead. A peer without the mesh key
 * is refused by a private mesh.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type SwimConfig, defaultSwimConfig, detectionBoundMs } from '../../src/core/membership/config.js'
import { type PeerProcess, members, startPeer, stateIn, waitUntil } from '../helpers/peers.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-mesh-'))
const started: PeerProcess[] = []
afterAll(async () => {
  for (const p of started) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL')
  await Promise.all(started.map(p => p.exited))
  fs.rmSync(root, { recursive: true, force: true })
})

const swim: SwimConfig = { ...defaultSwimConfig(), probeIntervalMs: 300, probeTimeoutMs: 150, gossipIntervalMs: 60, pushPullIntervalMs: 5000 }
const swimFlags = ['--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60', '--push-pull-interval-ms', '5000']

async function peer (name: string, extra: string[], env: NodeJS.ProcessEnv = {}): Promise<PeerProcess> {
  const p = await startPeer(['--data-dir', path.join(root, name), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', ...swimFlags, ...extra], env)
  started.push(p)
  return p
}

describe('mesh of node processes', () => {
  it('detects a SIGKILL, readmits the restarted peer with a higher incarnation, and records a SIGTERM as a leave', async () => {
    const boot = await peer('boot', ['--bootstrap'])
    const others = await Promise.all(['p1', 'p2', 'p3', 'p4'].map(n => peer(n, ['--join', boot.tcp])))
    const all = [boot, ...others]
    await waitUntil(async () => {
      for (const p of all) {
        const list = await members(p)
        if (list.length !== 5 || !list.every(m => m.state === 'alive' && m.kind === 'node')) return false
      }
      return true
    }, 30_000, 'all five list five alive members')
    // Bad HTTP input gets a 400 and does not hurt the peer.
    for (const bad of ['/%zz', '//']) {
      const res = await fetch(`${boot.http}${bad}`)
      expect(res.status).toBeGreaterThanOrEqual(400)
    }
    expect((await fetch(`${boot.http}/health`)).status).toBe(200)
    // Discovery announcements over gossipsub reach the other peers too.
    await waitUntil(async () => {
      const info = await (await fetch(`${boot.http}/api/info`)).json() as { discovery: { received: number } }
      return info.discovery.received > 0
    }, 30_000, 'the bootstrap receives discovery announcements')

    // SIGKILL p2: every survivor lists it dead within the configured bound (+1 s for polling and load).
    const victim = others[1]!
    victim.proc.kill('SIGKILL')
    await victim.exited
    const bound = detectionBoundMs(swim, 5)
    const survivors = all.filter(p => p !== victim)
    const took = await waitUntil(async () => {
      for (const p of survivors) if ((await stateIn(p, victim.id))?.state !== 'dead') return false
      return true
    }, bound + 15_000, 'survivors list the killed peer dead')
    expect(took, `detection took ${Math.round(took)} ms; the configuration implies at most ${bound} ms`).toBeLessThanOrEqual(bound + 1000)
    const deadIncarnation = (await stateIn(boot, victim.id))!.incarnation

    // Restart it from its data directory, with no --join: it rejoins the peers it knew.
    const back = await startPeer(['--data-dir', path.join(root, 'p2'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', ...swimFlags])
    started.push(back)
    expect(back.id).toBe(victim.id)
    await waitUntil(async () => {
      for (const p of [...survivors, back]) {
        const m = await stateIn(p, victim.id)
        if (m?.state !== 'alive' || m.incarnation <= deadIncarnation) return false
      }
      return true
    }, 30_000, 'the restarted peer is alive again everywhere, with a higher incarnation')

    // SIGTERM p3: it leaves gracefully and is listed as left, never dead.
    const leaver = others[2]!
    leaver.proc.kill('SIGTERM')
    const exit = await leaver.exited
    expect(exit.code).toBe(0)
    const remaining = [boot, others[0]!, back, others[3]!]
    await waitUntil(async () => {
      for (const p of remaining) if ((await stateIn(p, leaver.id))?.state !== 'left') return false
      return true
    }, 10_000, 'the leaver is listed as left')
    // Stay long enough for a failure detector to have declared it dead had it not left.
    const settle = performance.now() + bound
    while (performance.now() < settle) {
      for (const p of remaining) expect((await stateIn(p, leaver.id))?.state).toBe('left')
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  }, 240_000)

  it('refuses a peer that does not know the mesh key', async () => {
    const key = { MESHKV_MESH_KEY: 'correct horse battery staple' }
    const boot = await peer('private-boot', ['--bootstrap'], key)
    const member = await peer('private-member', ['--join', boot.tcp], key)
    await waitUntil(async () => (await members(boot)).filter(m => m.state === 'alive').length === 2, 30_000, 'keyed peer joins')
    const intruder = await peer('intruder', ['--join', boot.tcp], { MESHKV_MESH_KEY: 'wrong key' })
    const keyless = await peer('keyless', ['--join', boot.tcp], { MESHKV_MESH_KEY: '' })
    await waitUntil(async () => {
      const res = await fetch(`${boot.http}/api/info`)
      const info = await res.json() as { swim: { refusedPeers: number } }
      return info.swim.refusedPeers >= 2
    }, 30_000, 'the bootstrap refuses both')
    for (const p of [boot, member]) {
      const ids = (await members(p)).map(m => m.id)
      expect(ids).not.toContain(intruder.id)
      expect(ids).not.toContain(keyless.id)
    }
    expect(boot.output.join('\n')).not.toContain('correct horse')
  }, 120_000)
})
