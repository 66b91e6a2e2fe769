/**
 * Browser tabs in the mesh, in a real Chromium: two tabs join through the bootstrap that served them,
 * every tab and Node peer lists everyone alive, tabs reach each other over direct WebRTC (the relay only
 * carried the signalling), and a reloaded tab keeps its identity. Tab b runs without the tab link
 * (`?tab-link=off`), as a tab of another browser would: tabs of one browser connect through the browser
 * (test/e2e/tab-link.spec.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, members, startPeer, waitUntil } from '../helpers/peers.js'
import { tabId } from '../helpers/tabs.js'

const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100']

let root: string
let boot: PeerProcess
let node: PeerProcess

test.beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-e2e-'))
  boot = await startPeer(['--bootstrap', '--data-dir', path.join(root, 'boot'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', ...swimFlags])
  node = await startPeer(['--join', boot.tcp, '--data-dir', path.join(root, 'node'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', ...swimFlags])
})

test.afterAll(async () => {
  for (const p of [boot, node]) if (p !== undefined && p.proc.exitCode === null) p.proc.kill('SIGKILL')
  await Promise.all([boot?.exited, node?.exited])
  fs.rmSync(root, { recursive: true, force: true })
})

async function aliveRows (page: Page): Promise<string[]> {
  return page.$$eval('#members tr[data-state="alive"]', rows => rows.map(r => r.getAttribute('data-id')!))
}

test('two tabs and two Node peers see each other alive; tabs talk over direct WebRTC; a reload keeps the identity', async ({ browser }) => {
  const context = await browser.newContext()
  const a = await context.newPage()
  const b = await context.newPage()
  for (const page of [a, b]) page.on('pageerror', error => { console.error('page error:', error) })
  await a.goto(boot.http)
  await b.goto(`${boot.http}/?tab-link=off`)
  const idA = await tabId(a)
  const idB = await tabId(b)
  expect(idA).not.toBe(idB)

  const everyone = [boot.id, node.id, idA, idB].sort()
  for (const page of [a, b]) await expect.poll(async () => (await aliveRows(page)).sort(), { timeout: 60_000 }).toEqual(everyone)
  for (const p of [boot, node]) {
    await waitUntil(async () => {
      const list = await members(p)
      return everyone.every(id => list.some(m => m.id === id && m.state === 'alive'))
    }, 60_000, 'node peers list the tabs alive')
    const kinds = Object.fromEntries((await members(p)).map(m => [m.id, m.kind]))
    expect(kinds[idA]).toBe('browser')
    expect(kinds[node.id]).toBe('node')
  }

  // The tabs' connection to each other is direct WebRTC, not relayed.
  await expect.poll(async () => a.evaluate((other) => {
    const { peer } = (window as unknown as { meshkv: { peer: { libp2p: { getConnections: () => Array<{ remotePeer: { toString: () => string }, remoteAddr: { toString: () => string }, limits?: unknown }> } } } }).meshkv
    return peer.libp2p.getConnections().filter(c => c.remotePeer.toString() === other).map(c => ({ addr: c.remoteAddr.toString(), limited: c.limits !== undefined }))
      .some(c => c.addr.includes('/webrtc') && !c.limited)
  }, idB), { timeout: 60_000 }).toBe(true)

  // A reloaded tab comes back as the same peer (its key lives in IndexedDB) with a higher incarnation.
  const before = (await members(boot)).find(m => m.id === idA)!.incarnation
  await a.reload()
  expect(await tabId(a)).toBe(idA)
  await waitUntil(async () => {
    const m = (await members(boot)).find(x => x.id === idA)
    return m !== undefined && m.state === 'alive' && m.incarnation > before
  }, 60_000, 'the reloaded tab is alive with a higher incarnation')
  await context.close()
})
