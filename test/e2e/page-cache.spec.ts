/**
 * Opening another tab does not fetch the dashboard's script again: once the service worker holds the build's
 * /assets/ (their names carry a hash of their content), it answers a new tab's requests for them from its
 * cache, and only the page itself (index.html, a few KB) goes to the server. A tab that churns (reloads,
 * closes and reopens) then costs no 900 KB transfer and no new copy in the cache, and Chromium can reuse the
 * code it compiled from the script.
 */
import { expect, test } from '../helpers/e2e.js'
import { peerGroup } from '../helpers/peers.js'
import { openTab } from '../helpers/tab-mesh.js'

const group = peerGroup('meshkv-e2e-cache-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws'])
test.afterAll(group.stopAll)

test('a second tab takes the hashed assets from the service worker, not the server', async ({ browser }) => {
  const boot = await group.start('boot', ['--bootstrap'])
  const context = await browser.newContext()
  try {
    const errors: string[] = []
    const first = await openTab(context, boot.http, line => { errors.push(line) })
    const assets = await first.page.evaluate(() => [...document.querySelectorAll('script[src], link[rel=stylesheet]')].map(e => new URL(e.getAttribute('src') ?? e.getAttribute('href') ?? '', location.href).pathname))
    expect(assets.some(a => a.startsWith('/assets/') && a.endsWith('.js')), `the page loads its script from /assets/: ${assets.join(', ')}`).toBe(true)
    // The worker controls the origin's pages and has kept every asset (its install precaches them).
    await first.page.waitForFunction(async paths => navigator.serviceWorker.controller !== null && (await Promise.all(paths.map(async p => (await caches.match(p)) !== undefined))).every(Boolean), assets, { timeout: 30_000 })

    // What the server answered while the second tab opened: the page, and none of the assets.
    const filesServed = async (): Promise<{ served: number; assets: number }> => ((await (await fetch(`${boot.http}/stats`)).json()) as { http: { files: { served: number; assets: number } } }).http.files
    const before = await filesServed()
    // The page's own asset requests (Playwright does not reliably say whether the worker or the browser's
    // HTTP cache answered them; either way the server must not have).
    const served: string[] = []
    context.on('response', response => {
      const path = new URL(response.url()).pathname
      if (response.request().serviceWorker() === null && path.startsWith('/assets/')) served.push(path)
    })
    const second = await openTab(context, boot.http, line => { errors.push(line) })
    expect(second.id).not.toBe(first.id)
    const after = await filesServed()
    expect(after.served, 'the page itself still comes from the server (network first)').toBeGreaterThan(before.served)
    expect(after.assets - before.assets, 'assets the server sent for the second tab').toBe(0)
    expect(served.sort()).toEqual(assets.filter(a => a.startsWith('/assets/')).sort())
    expect(errors).toEqual([])
  } finally {
    await context.close()
  }
})
