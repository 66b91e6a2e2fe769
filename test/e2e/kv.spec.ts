/**
 * The key-value store across Node peers and browser tabs, in a real Chromium: a value written through a Node
 * peer's HTTP API reads back in a tab and the other way round (one value, concurrent siblings, a missing key),
 * and a tab is a full replica on IndexedDB: reloaded, it recovers its keys from its log before it rejoins, and
 * once the second Node peer is SIGKILLed the bootstrap's quorum reads (R=2 of N=3) succeed only because the
 * reloaded tab answers.
 */
import type { Browser, BrowserContext, Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, members, peerGroup, stateIn, waitUntil } from '../helpers/peers.js'
import { type MeshWindow, tabId } from '../helpers/tabs.js'

const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100']


/** What the reloaded page's engine held at the moment the page published `window.meshkv`, before joining. */
interface AtOpen { size: number; others: number; values: Record<string, string | null> }

const group = peerGroup('meshkv-e2e-kv-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', ...swimFlags])
test.afterAll(group.stopAll)

/** A bootstrap and a second Node peer joined to it, in fresh data directories. */
async function startMesh (name: string): Promise<{ boot: PeerProcess; node: PeerProcess }> {
  const boot = await group.start(`${name}-boot`, ['--bootstrap'])
  const node = await group.start(`${name}-node`, ['--join', boot.tcp])
  return { boot, node }
}

/** Two Node peers and one tab that joined through the bootstrap. */
async function meshWithTab (browser: Browser, name: string): Promise<{ boot: PeerProcess; node: PeerProcess; context: BrowserContext; page: Page; id: string }> {
  const { boot, node } = await startMesh(name)
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', error => { console.error('page error:', error) })
  await page.goto(boot.http)
  return { boot, node, context, page, id: await tabId(page) }
}

/** Waits until the tab and every Node peer list exactly `everyone` alive, so all agree on the ring. */
async function waitConverged (page: Page, peers: PeerProcess[], everyone: string[]): Promise<void> {
  const sorted = [...everyone].sort()
  await expect.poll(async () => page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.members().filter(m => m.state === 'alive').map(m => m.id).sort()),
    { timeout: 60_000 }).toEqual(sorted)
  for (const p of peers) {
    await waitUntil(async () => (await members(p)).filter(m => m.state === 'alive').map(m => m.id).sort().join() === sorted.join(), 60_000, `${p.id} lists the tab and the Node peers alive`)
  }
}

/** A quorum read in the tab (default R), values decoded as UTF-8 inside the page. */
async function tabGet (page: Page, key: string): Promise<{ values: string[]; deleted: boolean; replies: number; context: string }> {
  return page.evaluate(async (key) => {
    const r = await (window as unknown as MeshWindow).meshkv.peer.get(key)
    return { values: r.values.map(v => new TextDecoder().decode(v)).sort(), deleted: r.deleted, replies: r.replies, context: r.context }
  }, key)
}

async function tabPut (page: Page, key: string, value: string, options: { context?: string; w?: number } = {}): Promise<void> {
  await page.evaluate(async ({ key, value, options }) => { await (window as unknown as MeshWindow).meshkv.peer.put(key, value, options) }, { key, value, options })
}

async function httpPut (peer: PeerProcess, key: string, body: string, query = '', headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${peer.http}/kv/${encodeURIComponent(key)}${query}`, { method: 'PUT', body, headers, signal: AbortSignal.timeout(20_000) })
  await res.arrayBuffer()
  return res.status
}

async function httpGet (peer: PeerProcess, key: string): Promise<{ status: number; body: Uint8Array; context: string | null }> {
  const res = await fetch(`${peer.http}/kv/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(20_000) })
  return { status: res.status, body: new Uint8Array(await res.arrayBuffer()), context: res.headers.get('x-meshkv-context') }
}

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

test('kv: a value put through a Node peer reads in a tab and one put in a tab reads through Node peers (200, 300 siblings, 404)', async ({ browser }) => {
  const { boot, node, context, page, id } = await meshWithTab(browser, 'values')
  await waitConverged(page, [boot, node], [boot.id, node.id, id])

  // Node -> tab: W=2 acknowledged the write, so the tab's R=2 read (its own replica plus one more) sees it.
  expect(await httpPut(node, 'from-node', 'héllo from a Node peer ✓')).toBe(204)
  const fromNode = await tabGet(page, 'from-node')
  expect(fromNode.values).toEqual(['héllo from a Node peer ✓'])
  expect(fromNode.deleted).toBe(false)
  expect(fromNode.replies).toBeGreaterThanOrEqual(2)
  expect(fromNode.context).not.toBe('')

  // Tab -> Node: a string (UTF-8) and raw bytes, read through both Node peers.
  await tabPut(page, 'from-tab', 'grüße from a tab ✓')
  await page.evaluate(async () => { await (window as unknown as MeshWindow).meshkv.peer.put('from-tab-bytes', new Uint8Array([0, 1, 2, 0xfe, 0xff])) })
  for (const p of [boot, node]) {
    const got = await httpGet(p, 'from-tab')
    expect(got.status).toBe(200)
    expect(text(got.body)).toBe('grüße from a tab ✓')
    expect(got.context).not.toBeNull()
    const bytes = await httpGet(p, 'from-tab-bytes')
    expect(bytes.status).toBe(200)
    expect([...bytes.body]).toEqual([0, 1, 2, 0xfe, 0xff])
  }

  // A key nobody wrote: 404 over HTTP, no values in the tab.
  expect((await httpGet(node, 'never-written')).status).toBe(404)
  expect(await tabGet(page, 'never-written')).toMatchObject({ values: [], deleted: false })

  // Two writes without a context are concurrent: both survive as siblings, over HTTP (300) and in the tab.
  expect(await httpPut(node, 'both', 'written through a Node peer')).toBe(204)
  await tabPut(page, 'both', 'written in a tab')
  const res = await fetch(`${boot.http}/kv/both`, { signal: AbortSignal.timeout(20_000) })
  expect(res.status).toBe(300)
  const json = await res.json() as { siblings: Array<{ value: string | null }>; context: string }
  expect(json.siblings.map(s => s.value).sort()).toEqual(['written in a tab', 'written through a Node peer'])
  const inTab = await tabGet(page, 'both')
  expect(inTab.values).toEqual(['written in a tab', 'written through a Node peer'])

  // The tab resolves them: a put with the read's context supersedes both siblings.
  await tabPut(page, 'both', 'resolved in a tab', { context: inTab.context })
  for (const p of [boot, node]) {
    const got = await httpGet(p, 'both')
    expect(got.status).toBe(200)
    expect(text(got.body)).toBe('resolved in a tab')
  }
  // And a Node peer resolves back: its put with the HTTP read's context replaces the tab's value.
  const read = await httpGet(boot, 'both')
  expect(await httpPut(boot, 'both', 'resolved through HTTP', '', { 'x-meshkv-context': read.context! })).toBe(204)
  expect((await tabGet(page, 'both')).values).toEqual(['resolved through HTTP'])
  await context.close()
})

test('kv: a reloaded tab recovers 20 keys from IndexedDB before rejoining, and with the second Node peer SIGKILLed its replica completes the bootstrap\'s R=2 reads', async ({ browser }) => {
  const { boot, node, context, page, id } = await meshWithTab(browser, 'reload')
  // Three ring members and N=3: every member holds every key.
  await waitConverged(page, [boot, node], [boot.id, node.id, id])

  const keys = Array.from({ length: 20 }, (_, i) => `reload-${String(i).padStart(2, '0')}`)
  const valueOf = (key: string): string => `value of ${key} ✓`
  const expected = Object.fromEntries(keys.map(k => [k, valueOf(k)]))
  // W=3: each write is acknowledged by all three replicas, and the tab acknowledges only once its IndexedDB
  // transaction has completed (durability 'sync'), so every key is on disk in the tab before the reload.
  const inTab = keys.slice(0, 10)
  const overHttp = keys.slice(10)
  await page.evaluate(async (keys) => {
    const { peer } = (window as unknown as MeshWindow).meshkv
    for (const key of keys) await peer.put(key, `value of ${key} ✓`, { w: 3 })
  }, inTab)
  for (const key of overHttp) expect(await httpPut(node, key, valueOf(key), '?w=3')).toBe(204)
  const localValues = async (): Promise<Record<string, string | null>> => page.evaluate((keys) => {
    const { engine } = (window as unknown as MeshWindow).meshkv.peer
    return Object.fromEntries(keys.map(k => {
      const value = engine.get(k)?.values[0]?.value
      return [k, value == null ? null : new TextDecoder().decode(value)]
    }))
  }, keys)
  await expect.poll(localValues, { timeout: 30_000 }).toEqual(expected)

  // Record what the engine holds the moment the reloaded page publishes `window.meshkv`: createPeer has opened
  // (and recovered) the store, and the page has not yet fetched the bootstrap address, let alone joined.
  await page.addInitScript((keys: string[]) => {
    let published: MeshWindow['meshkv'] | undefined
    Object.defineProperty(window, 'meshkv', {
      configurable: true,
      get: () => published,
      set: (value: MeshWindow['meshkv']) => {
        published = value
        const { peer } = value
        const atOpen: AtOpen = {
          size: peer.engine.size,
          others: peer.members().filter(m => m.id !== peer.id && m.state === 'alive').length,
          values: Object.fromEntries(keys.map(k => {
            const v = peer.engine.get(k)?.values[0]?.value
            return [k, v == null ? null : new TextDecoder().decode(v)]
          }))
        }
        ;(window as unknown as { meshkvAtOpen: AtOpen }).meshkvAtOpen = atOpen
      }
    })
  }, keys)
  const before = (await stateIn(boot, id))!.incarnation
  await page.reload()
  expect(await tabId(page)).toBe(id)
  const atOpen = await page.evaluate(() => (window as unknown as { meshkvAtOpen: AtOpen }).meshkvAtOpen)
  expect(atOpen.others).toBe(0)
  expect(atOpen.values).toEqual(expected)
  expect(atOpen.size).toBe(keys.length)
  await expect(page.locator('#self')).toContainText(`${keys.length} keys from IndexedDB`)

  // The reloaded tab (same id, higher incarnation) is back in the bootstrap's ring.
  await waitUntil(async () => {
    const m = await stateIn(boot, id)
    return m !== undefined && m.state === 'alive' && m.incarnation > before
  }, 60_000, 'the reloaded tab is alive in the bootstrap\'s view with a higher incarnation')

  // With the second Node peer gone, R=2 needs the bootstrap's own replica and the tab's: without the tab these
  // reads fail with 503 ERR_QUORUM. (A replica's reply counts toward R even when it lacks the key, as in
  // Dynamo, so it is the check at open above, not these reads, that proves the tab recovered its data.)
  node.proc.kill('SIGKILL')
  await node.exited
  const readAll = async (): Promise<Record<string, string>> => Object.fromEntries(await Promise.all(keys.map(async k => {
    const got = await httpGet(boot, k)
    return [k, got.status === 200 ? text(got.body) : `HTTP ${got.status}: ${text(got.body)}`] as const
  })))
  await expect.poll(readAll, { timeout: 60_000, intervals: [250, 500, 1000] }).toEqual(expected)
  await context.close()
})
