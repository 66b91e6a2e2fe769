/**
 * No single relay: every Node peer runs a circuit relay, each tab holds reservations on two of them, and the
 * page survives the peer that served it.
 * - Two tabs open on the bootstrap's page; each holds reservations on both Node peers.
 * - The bootstrap is SIGKILLed and stays down.
 * - A new tab opened on the second Node peer's page gets a direct WebRTC connection to each old tab
 *   (within 30 s), and asks each for its figures over the KV protocol. It reads with R=2 and R=3 keys it
 *   holds next to an old tab and the Node peer, then with R=2 again while the Node peer refuses it (its
 *   debug API), so that only an old tab can give the second answer.
 * - An old tab reloads with the bootstrap still down: the service worker serves its page, and it rejoins
 *   through the relay it remembered.
 */
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { members, peerGroup, waitUntil } from '../helpers/peers.js'
import { type Tab, aliveInTab, openTab, putAll, waitAllAlive } from '../helpers/tab-mesh.js'
import { type MeshWindow, tabId } from '../helpers/tabs.js'

const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100']
/** What the issue asks: a direct connection from the new tab to each old tab within this. */
const DIRECT_WITHIN_MS = 30_000

let group: ReturnType<typeof peerGroup>
test.beforeAll(() => { group = peerGroup('meshkv-e2e-relays-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', ...swimFlags]) })
test.afterAll(async () => { await group?.stopAll() })

const log = (line: string): void => { console.log(`[relays] ${line}`) }

interface RelayWindow extends MeshWindow { meshkv: MeshWindow['meshkv'] & { relays: { status: () => { held: string[] } }; entry: string } }

async function heldRelays (page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as RelayWindow).meshkv.relays.status().held)
}

/** Whether `page`'s peer has a direct (not relayed) WebRTC connection to `id`. */
async function directTo (page: Page, id: string): Promise<boolean> {
  return page.evaluate(target => (window as unknown as MeshWindow).meshkv.peer.libp2p.getConnections()
    .some(c => c.remotePeer.toString() === target && c.limits === undefined && c.remoteAddr.toString().includes('/webrtc')), id)
}

test('tabs outlive the bootstrap: failover to another relay, a new tab reaches old ones, a reload rejoins', async ({ browser }) => {
  const errors: string[] = []
  const boot = await group.start('boot', ['--bootstrap'])
  // The debug API lets the test make this peer refuse the new tab, so that only old tabs can answer it.
  const node = await group.start('node', ['--join', boot.tcp, '--debug-api'])
  expect(boot.output.join('\n')).toContain('relay for 128 tabs')
  expect(node.output.join('\n')).toContain('relay for 128 tabs')
  const context = await browser.newContext()
  const old: Tab[] = []
  for (let i = 0; i < 2; i++) old.push(await openTab(context, boot.http, line => { errors.push(line) }))
  await waitAllAlive(old.map(t => t.page), [boot, node], [boot.id, node.id, ...old.map(t => t.id)], 60_000)
  // Both Node peers publish a relay, and each old tab holds reservations on both.
  const listed = await members(node) as Array<{ id: string; relay?: number }>
  log(`relays in /members: ${listed.filter(m => m.relay !== undefined).map(m => `${m.id.slice(-6)}=${m.relay}`).join(', ')}`)
  for (const tab of old) {
    await waitUntil(async () => { const held = await heldRelays(tab.page); return held.includes(boot.id) && held.includes(node.id) }, 30_000, `tab ${tab.id} holds reservations on both relays`)
    // The page is kept for a reload without its server.
    await tab.page.waitForFunction(async () => (await caches.match('/')) !== undefined, null, { timeout: 30_000 })
  }
  // The page remembered where to rejoin before its server goes away.
  expect(await old[0]!.page.evaluate(() => localStorage.getItem('meshkv-relays') ?? '')).toContain(node.id)

  boot.proc.kill('SIGKILL')
  await boot.exited
  const t0 = performance.now()
  const fresh = await openTab(context, node.http, line => { errors.push(line) })
  for (const tab of old) {
    await waitUntil(async () => await directTo(fresh.page, tab.id), DIRECT_WITHIN_MS, `the new tab has a direct WebRTC connection to old tab ${tab.id}`)
  }
  log(`new tab ${fresh.id.slice(-6)}: direct WebRTC to both old tabs ${Math.round(performance.now() - t0)} ms after the bootstrap died (bound ${DIRECT_WITHIN_MS} ms)`)
  // The old tabs moved on: each still holds (or took again) a reservation, now on the surviving relay.
  for (const tab of old) await waitUntil(async () => (await heldRelays(tab.page)).includes(node.id), 30_000, `old tab ${tab.id} holds a reservation on the surviving relay`)

  // KV requests from the new tab to each old tab: the figures RPC, then reads where they share keys.
  // The first request to a tab on a WebRTC connection just made could wait out the RPC's dial timeout (10 s):
  // in about one run in six its first stream never finished negotiating, on one of several connections that
  // simultaneous dials had made, and the dial's retry then went through at once (10,032 ms in all). The RPC
  // now tries the next connection after a second (rpc.ts firstStream); reaching the tab is what is tested
  // here, so the bound still covers a retry, and the time is logged.
  for (const tab of old) {
    const asked = performance.now()
    const keys = await fresh.page.evaluate(async id => (await (window as unknown as MeshWindow).meshkv.peer.info(id, { signal: AbortSignal.timeout(30_000) })).keys, tab.id)
    expect(typeof keys).toBe('number')
    log(`new tab's first request to old tab ${tab.id.slice(-6)} answered in ${Math.round(performance.now() - asked)} ms`)
  }
  await waitUntil(async () => (await aliveInTab(fresh.page)).length >= 4, 30_000, 'the new tab lists itself, the Node peer and both old tabs alive')
  const keys = Array.from({ length: 60 }, (_, i) => `relays-${i}`)
  const written = await putAll([node.http], keys, k => `v-${k}`, 2, 8)
  expect(written.acked.size, JSON.stringify(written.failures)).toBe(keys.length)
  const shared = await fresh.page.evaluate(async ({ ks, oldIds }) => {
    const peer = (window as unknown as MeshWindow).meshkv.peer
    const out: string[] = []
    for (const key of ks) {
      const p = await peer.placement(key)
      const up = p.replicas.filter(r => r.up && r.role === 'primary').map(r => r.id)
      if (up.includes(peer.id) && up.some(id => oldIds.includes(id))) out.push(key)
    }
    return out
  }, { ks: keys, oldIds: old.map(t => t.id) })
  // (The new tab is a location of its own: its page's origin differs from the old tabs', and so does the
  // browser-profile id it keeps in localStorage; every key has one replica per location here.)
  log(`${shared.length} of ${keys.length} keys have the new tab and an old tab among their primaries`)
  expect(shared.length).toBeGreaterThan(0)
  const read = async (key: string, r: number): Promise<{ values: string[]; replies: number }> => await fresh.page.evaluate(async ({ k, r }) => {
    const result = await (window as unknown as MeshWindow).meshkv.peer.get(k, { r, signal: AbortSignal.timeout(20_000) })
    return { values: result.values.map(v => new TextDecoder().decode(v)), replies: result.replies }
  }, { k: key, r })
  for (const key of shared.slice(0, 10)) {
    for (const r of [2, 3]) {
      const got = await read(key, r)
      expect(got.values, `${key} read with r=${r} from the new tab`).toEqual([`v-${key}`])
      expect(got.replies).toBeGreaterThanOrEqual(r)
    }
  }
  // With the Node peer refusing the new tab (its debug API), an R=2 read from the new tab can only be
  // answered by the new tab itself and old tabs.
  expect((await fetch(`${node.http}/debug/block?peer=${fresh.id}`, { method: 'POST', headers: { 'content-type': 'application/json' } })).status).toBe(200)
  for (const key of shared.slice(0, 5)) {
    const got = await read(key, 2)
    expect(got.values, `${key} read with r=2 from the new tab, the Node peer refusing it`).toEqual([`v-${key}`])
  }
  expect((await fetch(`${node.http}/debug/unblock?peer=${fresh.id}`, { method: 'POST', headers: { 'content-type': 'application/json' } })).status).toBe(200)
  log('r=2 reads from the new tab answered by old tabs while the Node peer refused it')

  // An old tab reloads with the bootstrap (its page's server) still down.
  const reloaded = old[0]!
  const before = (await members(node)).find(m => m.id === reloaded.id)!.incarnation
  await reloaded.page.reload({ timeout: 30_000 })
  expect(await tabId(reloaded.page)).toBe(reloaded.id)
  expect(await reloaded.page.evaluate(() => (window as unknown as RelayWindow).meshkv.entry)).toBe('remembered')
  await waitUntil(async () => {
    const m = (await members(node)).find(x => x.id === reloaded.id)
    return m !== undefined && m.state === 'alive' && m.incarnation > before
  }, 60_000, 'the reloaded tab rejoins (alive at the Node peer with a newer incarnation)')
  await waitUntil(async () => (await heldRelays(reloaded.page)).includes(node.id), 30_000, 'the reloaded tab holds a reservation on the surviving relay')
  await waitUntil(async () => (await aliveInTab(reloaded.page)).includes(fresh.id), 30_000, 'the reloaded tab lists the new tab alive')
  log(`reloaded tab rejoined through ${node.id.slice(-6)} with the bootstrap down`)
  await context.close()
  expect(errors.filter(e => !e.includes('aborted'))).toEqual([])
})
