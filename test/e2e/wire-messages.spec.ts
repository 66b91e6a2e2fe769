/**
 * One transport message per libp2p message (patches/@libp2p+webrtc+6.0.33.patch and
 * patches/@libp2p+websockets+10.1.21.patch). Unpatched, @libp2p/webrtc sends a stream message's length
 * prefix and body as two data channel messages, and @libp2p/websockets sends each chunk of a write (noise's
 * length prefix and ciphertext) as its own WebSocket message: every message crossed Chromium's WebRTC and
 * network threads twice, most of what an idle tab spent. This test counts, in a tab, the data channel and
 * WebSocket sends of 50 request/reply round trips, to another tab over WebRTC and to a Node peer over
 * WebSockets; unpatched, each count is about double what it allows.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, startPeer } from '../helpers/peers.js'
import { openDialOnlyTab } from '../helpers/tabs.js'

const ROUND_TRIPS = 50
const ECHO = '/meshkv/echo/1.0.0'

let root: string
let boot: PeerProcess

test.beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-wire-'))
  boot = await startPeer(['--bootstrap', '--debug-api', '--data-dir', path.join(root, 'boot'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
})

test.afterAll(async () => {
  if (boot !== undefined && boot.proc.exitCode === null) boot.proc.kill('SIGKILL')
  await boot?.exited
  fs.rmSync(root, { recursive: true, force: true })
})

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the page's libp2p node, driven from the test
interface WireWindow { meshkv: { peer: { id: string; libp2p: any }; multiaddr: (s: string) => unknown }; wireSends: { dc: number; ws: number } }

/** Counts every RTCDataChannel and WebSocket send the page makes (installed before the page's scripts). */
const COUNT_SENDS = `(() => {
  window.wireSends = { dc: 0, ws: 0 }
  const dc = RTCDataChannel.prototype.send
  RTCDataChannel.prototype.send = function (data) { window.wireSends.dc++; return dc.call(this, data) }
  const ws = WebSocket.prototype.send
  WebSocket.prototype.send = function (data) { window.wireSends.ws++; return ws.call(this, data) }
})()`


/** In the page: opens a stream to `addr` on the echo protocol, makes `n` round trips of 100 bytes, and returns the sends each transport made meanwhile. */
async function roundTrips (page: Page, addr: string, n: number): Promise<{ dc: number; ws: number }> {
  return page.evaluate(async ({ addr, n, protocol }) => {
    const w = window as unknown as WireWindow
    const stream = await w.meshkv.peer.libp2p.dialProtocol(w.meshkv.multiaddr(addr), protocol, { signal: AbortSignal.timeout(20_000) })
    const replies: number[] = []
    let wake: (() => void) | null = null
    stream.addEventListener('message', (event: { data: { byteLength: number } }) => { replies.push(event.data.byteLength); wake?.() })
    // One round trip first, so that setup (the stream's opening) is not counted.
    const until = async (count: number): Promise<void> => {
      const deadline = Date.now() + 20_000
      while (replies.reduce((a, b) => a + b, 0) < count * 100) {
        if (Date.now() > deadline) throw new Error(`echo: ${replies.length} replies`)
        await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, 1000) })
      }
    }
    stream.send(new Uint8Array(100).fill(1))
    await until(1)
    const before = { ...w.wireSends }
    for (let i = 2; i <= n + 1; i++) {
      stream.send(new Uint8Array(100).fill(i % 256))
      await until(i)
    }
    const sent = { dc: w.wireSends.dc - before.dc, ws: w.wireSends.ws - before.ws }
    await stream.close()
    return sent
  }, { addr, n, protocol: ECHO })
}

test('a libp2p message is one data channel message, and one write one WebSocket message', async ({ browser }) => {
  const context = await browser.newContext()
  await context.addInitScript(COUNT_SENDS)
  const a = await context.newPage()
  const b = await context.newPage()
  await openDialOnlyTab(a, boot.http)
  const bAddr = await openDialOnlyTab(b, boot.http)
  // Tab b echoes, like the Node peer's debug echo protocol.
  await b.evaluate(async protocol => {
    await (window as unknown as WireWindow).meshkv.peer.libp2p.handle(protocol, (stream: { send: (d: unknown) => boolean; addEventListener: (e: string, f: (ev: { data: unknown }) => void) => void }) => {
      stream.addEventListener('message', event => { stream.send(event.data) })
    })
  }, ECHO)

  const toTab = await roundTrips(a, bAddr, ROUND_TRIPS)
  const wsAddr = boot.output.map(l => l.replace(/^listening: /, '')).find(l => l.startsWith('/ip4/') && l.includes('/ws/'))!
  const toNode = await roundTrips(a, wsAddr, ROUND_TRIPS)
  console.log(`[wire] ${ROUND_TRIPS} round trips: ${toTab.dc} data channel sends to a tab (unpatched about ${2 * ROUND_TRIPS}), ${toNode.ws} WebSocket sends to a Node peer`)
  // One data channel message per request (the patch), two unpatched; the margin is for the other traffic of
  // the tabs meanwhile (identify, pings).
  expect(toTab.dc).toBeLessThanOrEqual(Math.round(1.3 * ROUND_TRIPS))
  // Per request: one yamux data frame, plus at most one window update for the reply it receives; each is one
  // WebSocket message patched, two unpatched.
  expect(toNode.ws).toBeLessThanOrEqual(Math.round(2.6 * ROUND_TRIPS))
  await context.close()
})
