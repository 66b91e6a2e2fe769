/**
 * Private meshes in the browser: a mesh started with a key admits a tab only if it proves the key (the same
 * HMAC handshake as Node peers).
 * - A tab given the right key in the URL fragment joins, the fragment leaves the address bar, and the key
 *   is nowhere but sessionStorage: not in any request URL, console line, localStorage or IndexedDB, nor in
 *   the Node peers' output.
 * - A tab with a wrong key is refused, says why on the page, and the refusal is counted in /api/info.
 * - A tab with no key is told the mesh is private.
 */
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { members, peerGroup, waitUntil } from '../helpers/peers.js'
import { type MeshWindow, recordedPage, tabId } from '../helpers/tabs.js'

const KEY = 'meshkv-e2e-private-7f3a9c51d2'
const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100']

let group: ReturnType<typeof peerGroup>
test.beforeAll(() => { group = peerGroup('meshkv-e2e-private-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', '--mesh-key', KEY, ...swimFlags]) })
test.afterAll(async () => { await group?.stopAll() })

/** Everything this origin keeps outside sessionStorage, as text: localStorage and every IndexedDB record. */
async function storedText (page: Page): Promise<string> {
  return page.evaluate(async () => {
    const parts: string[] = [JSON.stringify({ ...localStorage })]
    const text = (v: unknown): string => {
      if (v instanceof Uint8Array) return new TextDecoder().decode(v)
      if (v instanceof ArrayBuffer) return new TextDecoder().decode(new Uint8Array(v))
      if (Array.isArray(v)) return v.map(text).join(' ')
      if (v !== null && typeof v === 'object') return Object.values(v).map(text).join(' ')
      return String(v)
    }
    for (const info of await indexedDB.databases()) {
      const db = await new Promise<IDBDatabase>((resolve, reject) => { const r = indexedDB.open(info.name!); r.onsuccess = () => { resolve(r.result) }; r.onerror = () => { reject(r.error) } })
      for (const store of [...db.objectStoreNames]) {
        const all = await new Promise<unknown[]>((resolve, reject) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => { resolve(r.result) }; r.onerror = () => { reject(r.error) } })
        parts.push(...all.map(text))
      }
      db.close()
    }
    return parts.join('\n')
  })
}

/** Peers the Node peer at `http` refused in the mesh-key handshake, from its /api/info. */
async function refusedBy (http: string): Promise<number> {
  const info = await (await fetch(`${http}/api/info`)).json() as { swim: { refusedPeers: number } }
  return info.swim.refusedPeers
}

test('a tab joins a private mesh with the key from the fragment, a wrong key is refused, no key is told the mesh is private', async ({ browser }) => {
  const boot = await group.start('boot', ['--bootstrap'])
  const node = await group.start('node', ['--join', boot.tcp])
  expect(boot.output.join('\n')).toContain('mesh: private')

  // The right key, in the fragment.
  const { context, page, urls, consoleLines } = await recordedPage(browser)
  await page.goto(`${boot.http}/#key=${encodeURIComponent(KEY)}`)
  const id = await tabId(page)
  await waitUntil(async () => (await members(node)).some(m => m.id === id && m.state === 'alive'), 60_000, 'the keyed tab is alive at the second Node peer')
  await waitUntil(async () => (await page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.members().filter(m => m.state === 'alive').length)) === 3, 60_000, 'the keyed tab lists all three members alive')
  expect(page.url()).not.toContain(KEY)
  expect(await page.evaluate(() => sessionStorage.getItem('meshkv-mesh-key'))).toBe(KEY)
  // A write through the tab works in the private mesh.
  await page.evaluate(async () => { await (window as unknown as MeshWindow).meshkv.peer.put('private-1', 'hello', { signal: AbortSignal.timeout(20_000) }) })
  const res = await fetch(`${node.http}/kv/private-1`)
  expect(await res.text()).toBe('hello')
  expect(urls.length).toBeGreaterThan(0)
  expect(urls.filter(u => u.includes(KEY))).toEqual([])
  expect(consoleLines.filter(l => l.includes(KEY))).toEqual([])
  expect(await storedText(page)).not.toContain(KEY)

  // A wrong key: refused, said on the page, counted by the peer.
  const refusedBefore = await refusedBy(boot.http)
  const wrong = await (await browser.newContext()).newPage()
  await wrong.goto(`${boot.http}/#key=not-the-key`)
  const wrongId = await tabId(wrong)
  await expect(wrong.locator('#error')).toContainText('mesh key is wrong', { timeout: 60_000 })
  await expect(wrong.locator('#mesh-key-form')).toBeVisible()
  await waitUntil(async () => await refusedBy(boot.http) > refusedBefore, 30_000, 'the bootstrap counts the refusal in /api/info')
  expect((await members(boot)).some(m => m.id === wrongId)).toBe(false)

  // No key at all: the page says the mesh is private and asks for it.
  const nokey = await (await browser.newContext()).newPage()
  await nokey.goto(boot.http)
  await expect(nokey.locator('#mesh-key-message')).toContainText('private', { timeout: 30_000 })
  await expect(nokey.locator('#mesh-key-form')).toBeVisible()

  for (const p of [boot, node]) expect(p.output.filter(l => l.includes(KEY))).toEqual([])
  await context.close()
})
