/**
 * The dashboard in a real Chromium: a bootstrap Node peer, one more Node peer and three tabs. Every tab's
 * ring lists all five members alive; a key put in tab 1 through the page reads in tab 3 through the page;
 * two tabs write one key concurrently and a third resolves the siblings in the page; keys and values full of
 * HTML are shown as text and run nothing; when the second Node peer is SIGKILLed every tab sees it turn
 * suspect, then dead. Screenshots of the ring and the key view go to the test output.
 */
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, peerGroup } from '../helpers/peers.js'
import { type MeshWindow as TabWindow, tabId } from '../helpers/tabs.js'

interface MeshWindow extends TabWindow { __xss?: number }

const group = peerGroup('meshkv-e2e-dash-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', '--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100'])
test.afterAll(group.stopAll)

/** The member table as id -> state. */
async function rows (page: Page): Promise<Record<string, string>> {
  return page.$$eval('#members tr', trs => Object.fromEntries(trs.map(tr => [tr.getAttribute('data-id')!, tr.getAttribute('data-state')!])))
}

async function putInPage (page: Page, key: string, value: string, withContext: boolean): Promise<void> {
  await page.fill('#key', key)
  await page.fill('#value', value)
  await page.setChecked('#use-context', withContext)
  await page.click('#put')
  await expect(page.locator('#key-status')).toContainText('written', { timeout: 30_000 })
}

async function getInPage (page: Page, key: string): Promise<string[]> {
  await page.fill('#key', key)
  await page.click('#get')
  await expect(page.locator('#key-status')).not.toHaveText(/reading/, { timeout: 30_000 })
  return page.$$eval('#siblings .sibling .value', nodes => nodes.map(n => n.textContent ?? '').sort())
}

test('the dashboard shows the mesh live and drives the store', async ({ browser }, testInfo) => {
  test.setTimeout(240_000)
  const boot = await group.start('boot', ['--bootstrap'])
  const node: PeerProcess = await group.start('node', ['--join', boot.tcp])
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const tabs = [await context.newPage(), await context.newPage(), await context.newPage()]
  for (const page of tabs) {
    page.on('pageerror', error => { console.error('page error:', error) })
    await page.goto(boot.http)
  }
  const ids = await Promise.all(tabs.map(tabId))
  const everyone = [boot.id, node.id, ...ids].sort()

  // 1. Every tab's ring lists the five members, all alive, with this tab marked.
  for (const [i, page] of tabs.entries()) {
    await expect.poll(async () => rows(page), { timeout: 90_000 }).toEqual(Object.fromEntries(everyone.map(id => [id, 'alive'])))
    await expect(page.locator(`#members tr.me[data-id="${ids[i]}"]`)).toHaveCount(1)
    await expect.poll(async () => page.locator('#ring path.arc').count(), { timeout: 30_000 }).toBeGreaterThan(5)
  }

  // Hovering a member shows its figures, including the round trip from this tab.
  const [t1, t2, t3] = tabs as [Page, Page, Page]
  await t1.hover(`#members tr[data-id="${node.id}"]`)
  await expect(t1.locator('#ring-tooltip')).toContainText(node.id)
  await expect(t1.locator('#ring-tooltip')).toContainText(/\d+ keys · WAL .* ms from this tab/, { timeout: 30_000 })
  await t1.mouse.move(0, 0)

  // 2. Put in tab 1, read in tab 3, both through the page.
  await putInPage(t1, 'greeting', 'hello from tab 1', false)
  expect(await getInPage(t3, 'greeting')).toEqual(['hello from tab 1'])
  await expect(t3.locator('#placement tr')).toHaveCount(3) // N=3 replicas listed with their versions

  // 3. Concurrent writes from two tabs make siblings; tab 3 keeps one, which resolves them.
  await putInPage(t1, 'doc', 'version A', false)
  await putInPage(t2, 'doc', 'version B', false)
  expect(await getInPage(t3, 'doc')).toEqual(['version A', 'version B'])
  await t3.locator('#key-panel').screenshot({ path: testInfo.outputPath('key-view-siblings.png') })
  await t3.screenshot({ path: testInfo.outputPath('dashboard.png'), fullPage: true })
  await t3.locator('.sibling', { hasText: 'version B' }).locator('button.keep').click()
  await expect(t3.locator('#key-status')).toContainText('with the context; now: one value', { timeout: 30_000 })
  expect(await getInPage(t1, 'doc')).toEqual(['version B'])

  // 4. HTML in keys and values is text: nothing runs, no element is created from it.
  const key = '<img src=x onerror="window.__xss=1">'
  const value = '<script>window.__xss=2</script><img src=x onerror="window.__xss=3"><b>bold?</b>'
  await putInPage(t1, key, value, false)
  expect(await getInPage(t2, key)).toEqual([value])
  for (const page of tabs) {
    expect(await page.evaluate(() => (window as unknown as MeshWindow).__xss)).toBeUndefined()
    expect(await page.locator('#siblings img, #siblings script, #siblings b, #placement img, #placement b').count()).toBe(0)
  }
  await expect(t2.locator('#placement td.values').first()).toContainText('<script>')

  await t1.locator('#ring-panel').screenshot({ path: testInfo.outputPath('ring.png') })

  // 5. A heartbeat service appears alive; when it stops beating it turns expired, and the event shows.
  // It beats until tab 1 shows it alive (however slow the machine), then stops.
  let beating = true
  const beats = (async () => {
    while (beating) {
      const beat = await fetch(`${boot.http}/heartbeat/dash-svc?ttl=1000`, { method: 'PUT', body: '{"zone":"a"}' })
      expect(beat.status).toBe(204)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  })()
  await expect(t1.locator('#services tr[data-id="dash-svc"][data-state="alive"]')).toHaveCount(1, { timeout: 30_000 })
  beating = false
  await beats
  await expect(t1.locator('#services tr[data-id="dash-svc"][data-state="expired"]')).toHaveCount(1, { timeout: 30_000 })
  await expect(t3.locator('#events li[data-type="expired"][data-key="heartbeat/dash-svc"]')).toHaveCount(1, { timeout: 30_000 })

  // 6. SIGKILL the second Node peer: every tab shows it suspect, then dead (timeline and ring).
  node.proc.kill('SIGKILL')
  await node.exited
  for (const page of tabs) {
    await expect(page.locator(`#timeline li[data-kind="dead"][data-id="${node.id}"]`)).toHaveCount(1, { timeout: 90_000 })
    const kinds = await page.$$eval(`#timeline li[data-id="${node.id}"]`, items => items.map(li => li.getAttribute('data-kind')))
    // Newest first: the death, then (earlier) the suspicion.
    expect(kinds.indexOf('suspect')).toBeGreaterThan(kinds.indexOf('dead'))
    await expect.poll(async () => (await rows(page))[node.id], { timeout: 30_000 }).toBe('dead')
  }
  await t1.locator('#ring-panel').screenshot({ path: testInfo.outputPath('ring-after-death.png') })
  await context.close()
})

test('a narrow window gets one column, and a client-only tab holds no keys', async ({ browser }) => {
  const boot = await group.start('narrow-boot', ['--bootstrap'])
  const context = await browser.newContext({ viewport: { width: 420, height: 900 } })
  const page = await context.newPage()
  await page.goto(`${boot.http}/?mode=client`)
  const id = await tabId(page)
  await expect.poll(async () => rows(page), { timeout: 60_000 }).toEqual(Object.fromEntries([boot.id, id].sort().map(x => [x, 'alive'])))
  // One column: the key panel sits below the ring panel.
  const ring = await page.locator('#ring-panel').boundingBox()
  const keys = await page.locator('#key-panel').boundingBox()
  expect(keys!.y).toBeGreaterThan(ring!.y + ring!.height - 1)
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(420)
  // Client-only: not in the ring; a write through it lands on the bootstrap (W=1: the only replica).
  expect(await page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.ring().members.map(m => m.id))).toEqual([boot.id])
  await page.evaluate(async () => { await (window as unknown as MeshWindow).meshkv.peer.put('from-client', 'x', { w: 1 }) })
  expect(await page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.engine.size)).toBe(0)
  const res = await fetch(`${boot.http}/kv/from-client?r=1`)
  expect(await res.text()).toBe('x')
  await context.close()
})
