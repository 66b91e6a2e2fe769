/**
 * The tab link (src/adapters/tab-link.ts), in a real Chromium: tabs of one browser connect through the
 * browser itself, not WebRTC; a tab of another browser still gets WebRTC; a tab that goes away (reload or
 * close) has its links reset by the browser's lock release, before SWIM would notice, and a reloaded tab is
 * linked again.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { type Page, expect, test } from '@playwright/test'
import { type PeerProcess, startPeer, waitUntil } from '../helpers/peers.js'
import { disableLeave } from '../helpers/tab-mesh.js'
import { type MeshWindow, tabId } from '../helpers/tabs.js'

let root: string
let boot: PeerProcess

test.beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-e2e-link-'))
  boot = await startPeer(['--bootstrap', '--data-dir', path.join(root, 'boot'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
})

test.afterAll(async () => {
  if (boot !== undefined && boot.proc.exitCode === null) boot.proc.kill('SIGKILL')
  await boot?.exited
  fs.rmSync(root, { recursive: true, force: true })
})

/** The kinds of `page`'s open connections to `id`: 'link' (the tab link), 'webrtc', or another address. */
async function connectionsTo (page: Page, id: string): Promise<string[]> {
  return page.evaluate(target => (window as unknown as MeshWindow).meshkv.peer.libp2p.getConnections()
    .filter(c => c.remotePeer.toString() === target && c.limits === undefined)
    .map(c => { const a = c.remoteAddr.toString(); return a.startsWith('/memory/meshkv-tabs.') ? 'link' : a.includes('/webrtc') ? 'webrtc' : a }), id)
}

test('tabs of one browser connect over the tab link, tabs of another over WebRTC; a tab that goes away is unlinked at once', async ({ browser }) => {
  const context = await browser.newContext()
  const a = await context.newPage()
  const b = await context.newPage()
  for (const page of [a, b]) page.on('pageerror', error => { console.error('page error:', error) })
  await a.goto(boot.http)
  await b.goto(boot.http)
  const idA = await tabId(a)
  const idB = await tabId(b)

  // One browser: the tab link, and no WebRTC connection between them.
  await waitUntil(async () => (await connectionsTo(a, idB)).includes('link'), 60_000, 'tab a has a tab link to tab b')
  expect(await connectionsTo(a, idB)).toEqual(['link'])
  expect(await connectionsTo(b, idA)).toEqual(['link'])
  // Its address is not announced to other peers: SWIM metadata carries only the relayed WebRTC ones.
  const meta = await a.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.members().map(m => String(m.meta.addrs ?? '')).join(' '))
  expect(meta).not.toContain('/memory/')

  // Another browser (a context has its own storage, locks and channels): WebRTC.
  const other = await browser.newContext()
  const c = await other.newPage()
  await c.goto(boot.http)
  const idC = await tabId(c)
  await waitUntil(async () => (await connectionsTo(c, idA)).length > 0, 60_000, 'the other browser\'s tab connects to tab a')
  expect(await connectionsTo(c, idA)).not.toContain('link')
  expect((await connectionsTo(c, idA)).every(k => k === 'webrtc')).toBe(true)
  expect(await connectionsTo(a, idC)).not.toContain('link')

  // A reload: a's link to the old page is reset when its lock goes, and the new page is linked again.
  const linkIds = async (): Promise<string[]> => a.evaluate(target => (window as unknown as MeshWindow).meshkv.peer.libp2p.getConnections()
    .filter(x => x.remotePeer.toString() === target).map(x => x.id), idB)
  const before = await linkIds()
  await b.reload()
  expect(await tabId(b)).toBe(idB)
  await waitUntil(async () => { const now = await linkIds(); return now.length > 0 && now.every(x => !before.includes(x)) && (await connectionsTo(a, idB)).every(k => k === 'link') }, 30_000, 'tab a is linked to the reloaded tab b, and no longer to the old page')
  expect(await connectionsTo(a, idB)).toEqual(['link'])
  const stats = async (): Promise<{ present: number, resetGone: number, dropped: number }> => a.evaluate(() => (window as unknown as { meshkv: { tabLink: () => { present: number, resetGone: number, dropped: number } } }).meshkv.tabLink())
  expect((await stats()).resetGone).toBeGreaterThan(0) // the old page's links, reset when its lock went
  expect((await stats()).present).toBe(1)

  // A malformed control message from a page of the origin is dropped and counted, nothing else.
  const droppedBefore = (await stats()).dropped
  await b.evaluate(() => { new BroadcastChannel(`meshkv-tab-link/${localStorage.getItem('meshkv-profile') ?? ''}`).postMessage({ t: 'dial', link: 5 }) })
  await waitUntil(async () => (await stats()).dropped > droppedBefore, 10_000, 'tab a counts the malformed control message')
  expect(await connectionsTo(a, idB)).toEqual(['link'])

  // A tab closed without its leave (as in a crash: no pagehide handler runs the leave): unlinked within
  // seconds, long before SWIM's suspicion of it would end (its dead declaration takes tens of seconds).
  expect(await disableLeave(b)).toBe(true)
  await b.close()
  await waitUntil(async () => (await connectionsTo(a, idB)).length === 0, 10_000, 'tab a has no connection left to the closed tab b')
  await other.close()
  await context.close()
})
