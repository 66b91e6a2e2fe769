/**
 * Playwright's `test` for the e2e specs, with one addition: every browser context a test opened is closed
 * when the test ends, whether it passed or failed. The `browser` fixture lives as long as the worker, so
 * a context a test forgot (or never reached the end of) kept its tabs running: each a meshkv peer still
 * gossiping and redialling relays that the test had already stopped, on the CPU the next specs measure
 * against their bounds. Specs import `test` and `expect` from here instead of `@playwright/test`.
 */
import { type BrowserContext, test as base } from '@playwright/test'

export { expect } from '@playwright/test'

/** How long closing a forgotten context may take before the test's teardown gives up on it. */
const CLOSE_TIMEOUT_MS = 30_000

export const test = base.extend<{ closeContexts: void }>({
  closeContexts: [async ({ browser }, use) => {
    const before = new Set<BrowserContext>(browser.contexts())
    await use()
    const opened = browser.contexts().filter(c => !before.has(c))
    await Promise.all(opened.map(async c => {
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        c.close().catch(() => { /* already closing or closed with the browser */ }),
        new Promise(resolve => { timer = setTimeout(resolve, CLOSE_TIMEOUT_MS) })
      ])
      clearTimeout(timer)
    }))
  }, { auto: true }]
})
