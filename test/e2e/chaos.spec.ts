/**
 * The dashboard's chaos panel (`--debug-api` only). Three Node peers run the debug API and a client-only tab
 * (it holds no keys, so every key's replicas are the three Node peers) opens the first one's page:
 * - the page partitions the third Node peer from the rest;
 * - each side takes a write of one key, both with the context of the value they saw before, so the writes
 *   are concurrent;
 * - the page heals the mesh, follows the key, and shows every replica converging to the same two siblings;
 *   "keep this" then resolves them, and every replica shows the one value kept.
 * And without `--debug-api` the panel is hidden and its routes do not exist.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, members, peerGroup, startPeer, waitUntil } from '../helpers/peers.js'
import { tabId } from '../helpers/tabs.js'

const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100', '--push-pull-interval-ms', '3000', '--sync-interval-ms', '1000']
const KEY = 'chaos-key'

let group: ReturnType<typeof peerGroup>
test.beforeAll(() => { group = peerGroup('meshkv-e2e-chaos-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', '--debug-api', ...swimFlags]) })
test.afterAll(async () => { await group?.stopAll() })

async function put (peer: PeerProcess, value: string, w: number, context: string): Promise<number> {
  const res = await fetch(`${peer.http}/kv/${KEY}?w=${w}`, { method: 'PUT', body: value, headers: context === '' ? {} : { 'x-meshkv-context': context }, signal: AbortSignal.timeout(30_000) })
  await res.text()
  return res.status
}

/** The Key panel's placement rows: each replica's id, version and values as the page shows them. */
async function placementRows (page: Page): Promise<Array<{ id: string; vv: string; values: string }>> {
  return page.locator('#placement tr').evaluateAll(rows => rows.map(r => ({
    id: r.getAttribute('data-id') ?? '',
    vv: r.querySelector('td.vv')?.textContent ?? '',
    values: r.querySelector('td.values')?.textContent ?? ''
  })))
}

async function waitTimeline (page: Page, text: RegExp): Promise<void> {
  await expect(page.locator('#timeline li[data-kind=chaos]').filter({ hasText: text }).first()).toBeVisible({ timeout: 60_000 })
}

test('the chaos panel partitions a Node peer, both sides take a write, and after healing every replica holds the same siblings, then one value', async ({ browser }) => {
  const a = await group.start('a', ['--bootstrap'])
  const b = await group.start('b', ['--join', a.tcp])
  const c = await group.start('c', ['--join', a.tcp])
  const page = await (await browser.newContext()).newPage()
  await page.goto(`${a.http}/?mode=client`)
  await tabId(page)
  await expect(page.locator('#chaos-panel')).toBeVisible()
  await waitUntil(async () => (await members(a)).filter(m => m.state === 'alive').length === 4, 60_000, 'a lists the three Node peers and the tab alive')

  expect(await put(a, 'before', 3, '')).toBe(204)
  const context = (await fetch(`${a.http}/kv/${KEY}?r=3`)).headers.get('x-meshkv-context') ?? ''
  expect(context).not.toBe('')

  // Partition c from the page.
  await page.locator('#chaos-member').selectOption(c.id)
  await page.locator('#chaos-partition').click()
  await waitTimeline(page, /partition .*: done/)
  await waitUntil(async () => (await members(a)).find(m => m.id === c.id)?.state !== 'alive', 60_000, 'a no longer lists c alive')
  await waitUntil(async () => (await members(c)).filter(m => m.id === a.id || m.id === b.id).every(m => m.state !== 'alive'), 60_000, 'c no longer lists a and b alive')
  // Both sides write the key with the context of the value they saw: concurrent writes.
  expect(await put(a, 'majority', 2, context)).toBe(204)
  expect(await put(c, 'minority', 1, context)).toBe(204)

  // Heal from the page, and follow the key: every replica converges to the same two siblings.
  await page.locator('#chaos-heal').click()
  await waitTimeline(page, /heal .*: done/)
  await page.locator('#key').fill(KEY)
  await page.locator('#chaos-follow').check()
  const replicas = [a.id, b.id, c.id].sort()
  await waitUntil(async () => {
    const rows = await placementRows(page)
    const held = rows.filter(r => replicas.includes(r.id))
    return held.length === 3 && held.every(r => r.values.includes('majority') && r.values.includes('minority') && !r.values.includes('before') && r.vv === held[0]!.vv)
  }, 90_000, 'the page shows all three replicas holding the same two siblings')
  console.log(`[chaos] converged: ${JSON.stringify(await placementRows(page))}`)

  // Resolve them from the page: every replica then holds the one value kept.
  await page.locator('#get').click()
  await expect(page.locator('#siblings .sibling')).toHaveCount(2, { timeout: 30_000 })
  const kept = (await page.locator('#siblings .sibling .value').first().textContent()) ?? ''
  await page.locator('#siblings .sibling .keep').first().click()
  await waitUntil(async () => {
    const held = (await placementRows(page)).filter(r => replicas.includes(r.id))
    return held.length === 3 && held.every(r => r.values === kept && r.vv === held[0]!.vv)
  }, 90_000, `the page shows all three replicas holding only ${JSON.stringify(kept)}`)
  for (const p of [a, b, c]) expect(await (await fetch(`${p.http}/kv/${KEY}?r=3`)).text()).toBe(kept)
})

test('without --debug-api the chaos panel is hidden and its routes do not exist', async ({ browser }) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-e2e-nochaos-'))
  const plain = await startPeer(['--bootstrap', '--data-dir', path.join(root, 'p'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
  try {
    const page = await (await browser.newContext()).newPage()
    await page.goto(`${plain.http}/?mode=client`)
    await tabId(page)
    await expect(page.locator('#chaos-panel')).toBeHidden()
    for (const route of ['/debug/heal', `/debug/partition?peer=${plain.id}`, `/debug/members/${plain.id}/kill`, `/debug/block?peer=${plain.id}`]) {
      const res = await fetch(`${plain.http}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' } })
      expect(res.status, route).toBeGreaterThanOrEqual(400)
    }
    expect(plain.proc.exitCode).toBeNull()
    const info = await (await fetch(`${plain.http}/api/info`)).json() as { debugApi: boolean }
    expect(info.debugApi).toBe(false)
  } finally {
    plain.proc.kill('SIGKILL')
    await plain.exited
    fs.rmSync(root, { recursive: true, force: true })
  }
})
