/**
 * Browser tabs in e2e tests: the page publishes its peer as `window.meshkv` (web/main.ts) once it has one.
 */
import type { Browser, BrowserContext, Page } from '@playwright/test'
import type { MeshPeer as Peer } from '../../src/peer.js'

export interface MeshWindow { meshkv: { peer: Peer } }

/** Waits until the page has its peer (at most 30 s) and returns the peer's id. */
export async function tabId (page: Page): Promise<string> {
  await page.waitForFunction(() => (window as unknown as Partial<MeshWindow>).meshkv !== undefined, null, { timeout: 30_000 })
  return page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.id)
}

/**
 * Opens the page of the peer at `http` as a tab that holds a relay reservation but stays out of membership
 * (`?join=false`), and returns its relayed WebRTC address (waits at most 60 s for its peer, then 30 s for
 * that address). The tab stays off the tab link (`?tab-link=off`), as a tab of another browser: these tabs
 * are for tests of WebRTC itself, and tabs of one browser found on WebRTC are otherwise moved onto the link.
 */
export async function openDialOnlyTab (page: Page, http: string): Promise<string> {
  await page.goto(`${http}/?join=false&tab-link=off`)
  await page.waitForFunction(() => (window as unknown as Partial<MeshWindow>).meshkv !== undefined, null, { timeout: 60_000 })
  return page.evaluate(async () => {
    const { peer } = (window as unknown as MeshWindow).meshkv
    for (let i = 0; i < 300; i++) {
      const addr = peer.libp2p.getMultiaddrs().map(String).find((m: string) => m.includes('/p2p-circuit/webrtc'))
      if (addr !== undefined) return addr
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new Error('no /p2p-circuit/webrtc address within 30 s')
  })
}

/**
 * A page in a new browser context that records every URL it requests and every console line it prints:
 * for tests that prove a secret (a mesh key, an HTTP token) never appears in either.
 */
export async function recordedPage (browser: Browser): Promise<{ context: BrowserContext; page: Page; urls: string[]; consoleLines: string[] }> {
  const context = await browser.newContext()
  const page = await context.newPage()
  const urls: string[] = []
  const consoleLines: string[] = []
  page.on('request', r => { urls.push(r.url()) })
  page.on('console', m => { consoleLines.push(m.text()) })
  return { context, page, urls, consoleLines }
}
