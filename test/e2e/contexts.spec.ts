/**
 * The e2e `test` (test/helpers/e2e.ts) closes every browser context a test leaves open, so that no tab of
 * one spec runs on into the next. The two tests run in order in one worker: the first leaves a context
 * with a page open, the second finds none.
 */
import { expect, test } from '../helpers/e2e.js'

test.describe.configure({ mode: 'serial' })

let left: string[] = []

test('a test that leaves a browser context open', async ({ browser }) => {
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.setContent('<title>left open</title>')
  left = context.pages().map(p => p.url())
  expect(browser.contexts()).toContain(context)
})

test('the next test finds no context left open', async ({ browser }) => {
  expect(left).toEqual(['about:blank'])
  expect(browser.contexts()).toEqual([])
})
