/**
 * The tab link (src/adapters/tab-link.ts), in a real Chromium: tabs of one browser connect through the
 * browser itself, not WebRTC, and two of them connected over WebRTC anyway are moved onto the link; a tab of
 * another browser still gets WebRTC; a tab that goes away (reload or
 * close) has its links reset by the browser's lock release, before SWIM would notice, and a reloaded tab is
 * linked again.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, startPeer, waitUntil } from '../helpers/peers.js'
import { disableLeave } from '../helpers/tab-mesh.js'
import { type MeshWindow, tabId } from '../helpers/tabs.js'
import type { TabLinkStats } from '../../src/adapters/tab-link.js'

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

async function linkStats (page: Page): Promise<TabLinkStats> {
  return page.evaluate(() => (window as unknown as { meshkv: { tabLink: () => TabLinkStats } }).meshkv.tabLink())
}

/** What `page` knows of `id` (for a failure's message): its connections, addresses, member state, tab link counts. */
async function linkState (page: Page, id: string): Promise<string> {
  return page.evaluate(async target => {
    const { peer, tabLink } = (window as unknown as { meshkv: MeshWindow['meshkv'] & { tabLink: () => unknown } }).meshkv
    const conns = peer.libp2p.getConnections().filter(c => c.remotePeer.toString() === target)
      .map(c => `${c.direction} ${c.remoteAddr.toString()}${c.limits === undefined ? '' : ' (limited)'}`)
    const known = (await peer.libp2p.peerStore.all()).find(p => p.id.toString() === target)
    const member = peer.members().find(m => m.id === target)
    return JSON.stringify({ self: peer.id, conns, addrs: known?.addresses.map(a => a.multiaddr.toString()) ?? null, member: member?.state ?? null, tabLink: tabLink() })
  }, id).catch((error: unknown) => `(no state: ${String(error)})`)
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
    .catch(async (error: unknown) => { throw new Error(`${String(error)}; ${await linkState(a, idB)}; ${await linkState(b, idA)}`) })
  expect(await connectionsTo(a, idB)).toEqual(['link'])
  expect(await connectionsTo(b, idA)).toEqual(['link'])
  // Its address is not announced to other peers: SWIM metadata carries only the relayed WebRTC ones.
  const meta = await a.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.members().map(m => String(m.meta.addrs ?? '')).join(' '))
  expect(meta).not.toContain('/memory/')

  // Tabs of this browser connected over WebRTC anyway (as when a link dial timed out while the other tab was
  // busy starting): the tab with the smaller peer id dials the link, and both close their WebRTC connections.
  // Both tabs drop the link and dial each other over WebRTC at once, so any other dial between them joins one
  // of those (libp2p joins dials to one peer) and nothing but the move itself can bring the link back.
  const [small, large, idSmall, idLarge] = idA < idB ? [a, b, idA, idB] : [b, a, idB, idA]
  const statsBefore = { small: await linkStats(small), large: await linkStats(large) }
  const overWebRtc = async (page: Page, target: string): Promise<void> => page.evaluate(async target => {
    const { peer, multiaddr } = (window as unknown as { meshkv: MeshWindow['meshkv'] & { multiaddr: (a: string) => Parameters<MeshWindow['meshkv']['peer']['libp2p']['dial']>[0] } }).meshkv
    let addr: string | undefined
    for (let i = 0; i < 300 && addr === undefined; i++) { // its relayed address, once it holds a reservation (30 s at most)
      addr = (await peer.libp2p.peerStore.all()).find(p => p.id.toString() === target)?.addresses.map(a => a.multiaddr.toString()).find(x => x.endsWith('/p2p-circuit/webrtc'))
      if (addr === undefined) await new Promise(resolve => setTimeout(resolve, 100))
    }
    if (addr === undefined) throw new Error('no WebRTC address for the other tab')
    // The dial is queued first (a dial by peer id from now on joins it), then the link is dropped at once.
    const dialing = peer.libp2p.dial(multiaddr(`${addr}/p2p/${target}`), { force: true })
    for (const c of peer.libp2p.getConnections().filter(c => c.remotePeer.toString() === target && c.remoteAddr.toString().startsWith('/memory/'))) c.abort(new Error('test: off the link'))
    await dialing.catch(() => {}) // the other tab may close it as it opens, once the link is back
  }, target)
  await Promise.all([overWebRtc(large, idSmall), overWebRtc(small, idLarge)])
  await waitUntil(async () => (await linkStats(small)).upgraded > statsBefore.small.upgraded && (await connectionsTo(small, idLarge)).join() === 'link' && (await connectionsTo(large, idSmall)).join() === 'link', 30_000, 'the tabs are back on the tab link alone, moved by the tab with the smaller id')
    .catch(async (error: unknown) => { throw new Error(`${String(error)}; ${await linkState(small, idLarge)}; ${await linkState(large, idSmall)}`) })
  expect((await linkStats(large)).upgraded).toBe(statsBefore.large.upgraded) // the larger id never dials it
  expect((await linkStats(small)).otherClosed + (await linkStats(large)).otherClosed).toBeGreaterThan(statsBefore.small.otherClosed + statsBefore.large.otherClosed)

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
  const stats = async (): Promise<TabLinkStats> => linkStats(a)
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
