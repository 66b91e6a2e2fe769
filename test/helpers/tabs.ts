/**
 * Browser tabs in e2e tests: the page publishes its peer as `window.meshkv` (web/main.ts) once it has one.
 */
import type { Page } from '@playwright/test'
import type { Peer } from '../../src/peer.js'

export interface MeshWindow { meshkv: { peer: Peer } }

/** Waits until the page has its peer (at most 30 s) and returns the peer's id. */
export async function tabId (page: Page): Promise<string> {
  await page.waitForFunction(() => (window as unknown as Partial<MeshWindow>).meshkv !== undefined, null, { timeout: 30_000 })
  return page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.id)
}
