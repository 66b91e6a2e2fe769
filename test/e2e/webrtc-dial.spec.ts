/**
 * The @libp2p/webrtc 6.0.33 init-channel race (DESIGN.md §6): unpatched, a large share of tab-to-tab dials
 * time out because the dialer waits for an `open` event that already happened. patches/@libp2p+webrtc+6.0.33.patch
 * (applied by patch-package on install) fixes it; this test makes 20 fresh tab-to-tab dials and requires
 * every one to succeed, so it fails without the patch. It also checks that the relayed signalling
 * connection is closed once the direct one is up.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, startPeer } from '../helpers/peers.js'
import { openDialOnlyTab } from '../helpers/tabs.js'

let root: string
let boot: PeerProcess

test.beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-dial-'))
  boot = await startPeer(['--bootstrap', '--data-dir', path.join(root, 'boot'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
})

test.afterAll(async () => {
  if (boot !== undefined && boot.proc.exitCode === null) boot.proc.kill('SIGKILL')
  await boot?.exited
  fs.rmSync(root, { recursive: true, force: true })
})

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the page's libp2p node, driven from the test
interface MeshWindow { meshkv: { peer: { id: string; libp2p: any }; multiaddr: (s: string) => unknown } }


test('20 fresh tab-to-tab WebRTC dials all succeed, and leave no relayed connection behind', async ({ browser }) => {
  // 21 tabs start one after another, each on a machine busier with the ones before: about 35 s here when
  // idle, but one CI run on a loaded machine ran out of the default 180 s; the bound is generous instead.
  test.setTimeout(480_000)
  const context = await browser.newContext()
  const dialer = await context.newPage()
  await openDialOnlyTab(dialer, boot.http)
  const results: Array<{ ok: boolean; ms: number; error?: string; limitedLeft?: number }> = []
  // Targets stay open until the end: a closed tab's identity slot would be reused by the next tab, and
  // the dialer would find the old connection to that peer id still open instead of dialling afresh.
  const targets: Page[] = []
  for (let i = 0; i < 20; i++) {
    const page = await context.newPage()
    targets.push(page)
    const target = await openDialOnlyTab(page, boot.http)
    results.push(await dialer.evaluate(async (addr) => {
      const { peer, multiaddr } = (window as unknown as MeshWindow).meshkv
      const remote = addr.split('/p2p/').at(-1)!
      const start = performance.now()
      try {
        await peer.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
        const ms = performance.now() - start
        // The relayed signalling connection is closed once the direct one is up (bounded wait).
        let limitedLeft = 0
        for (let k = 0; k < 50; k++) {
          limitedLeft = peer.libp2p.getConnections().filter((c: { remotePeer: { toString: () => string }, limits?: unknown }) => c.remotePeer.toString() === remote && c.limits !== undefined).length
          if (limitedLeft === 0) break
          await new Promise(resolve => setTimeout(resolve, 100))
        }
        return { ok: true, ms, limitedLeft }
      } catch (error) {
        return { ok: false, ms: performance.now() - start, error: String(error) }
      }
    }, target))
  }
  const failed = results.filter(r => !r.ok)
  const times = results.filter(r => r.ok).map(r => r.ms).sort((x, y) => x - y)
  console.log(`tab-to-tab dials: ${results.length - failed.length}/${results.length} ok; median ${times[times.length >> 1]?.toFixed(0) ?? '-'} ms`)
  expect(failed, JSON.stringify(failed)).toEqual([])
  expect(results.every(r => r.limitedLeft === 0)).toBe(true)
  expect(times[0]!, 'every dial made a new connection').toBeGreaterThan(1)
  await context.close()
})
