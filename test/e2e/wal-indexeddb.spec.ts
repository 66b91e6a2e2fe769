/**
 * The WAL contract's large-log cases on IndexedDB in a real Chromium (fake-indexeddb in Node proves the
 * adapter's logic, not the browser's IndexedDB): a segment of 200,000 records and 400,000 records across
 * segments, with and without a snapshot, each reopened with every key intact (before the fix, the first
 * died with "Maximum call stack size exceeded", as in Node); and a log stored as over 200,000 small chunks,
 * as a segment written by that many small group commits is, read back in batches.
 *
 * The page is test/e2e/pages/wal-lab.html, built here with Vite and served from 127.0.0.1.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Page } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { build } from 'vite'
import type { LargeLogSizes } from '../contracts/large-log.js'

const pages = fileURLToPath(new URL('./pages', import.meta.url))
const BROWSER_SIZES: LargeLogSizes = { segmentRecords: 200_000, totalRecords: 400_000, rounds: 4, segmentBytesMax: 2 * 1024 * 1024 }
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' }

interface LabWindow {
  walLab: {
    cases: number
    runCase: (index: number, sizes: LargeLogSizes) => Promise<{ name: string; ms: number }>
    manyChunks: (keys: number, chunkBytes: number) => Promise<{ chunks: number; keys: number; reopenMs: number }>
  }
}

let outDir = ''
let server: http.Server | null = null
let origin = ''

test.beforeAll(async () => {
  outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-wal-lab-'))
  await build({ configFile: false, root: pages, logLevel: 'warn', build: { outDir, emptyOutDir: true, rollupOptions: { input: path.join(pages, 'wal-lab.html') } } })
  server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'wal-lab.html'
    const file = path.join(outDir, rel)
    if (!file.startsWith(outDir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' })
    fs.createReadStream(file).pipe(res)
  })
  await new Promise<void>(resolve => { server!.listen(0, '127.0.0.1', resolve) })
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

test.afterAll(async () => {
  await new Promise<void>(resolve => { if (server === null) resolve(); else server.close(() => { resolve() }) })
  fs.rmSync(outDir, { recursive: true, force: true })
})

async function lab (page: Page): Promise<number> {
  page.on('pageerror', error => { console.error('page error:', error) })
  await page.goto(`${origin}/wal-lab.html`)
  await page.waitForFunction(() => (window as unknown as Partial<LabWindow>).walLab !== undefined, null, { timeout: 30_000 })
  return page.evaluate(() => (window as unknown as LabWindow).walLab.cases)
}

test('IndexedDB in Chromium: the large-log contract cases reopen with every key intact', async ({ page }) => {
  test.setTimeout(600_000)
  const cases = await lab(page)
  expect(cases).toBe(4)
  for (let i = 0; i < cases; i++) {
    const result = await page.evaluate(({ i, sizes }) => (window as unknown as LabWindow).walLab.runCase(i, sizes), { i, sizes: BROWSER_SIZES })
    console.log(`wal-indexeddb: ${result.name}: ${Math.round(result.ms)} ms`)
  }
})

test('IndexedDB in Chromium: a log stored as over 200,000 small chunks reopens whole', async ({ page }) => {
  test.setTimeout(600_000)
  await lab(page)
  const keys = 200_000
  const result = await page.evaluate(({ keys }) => (window as unknown as LabWindow).walLab.manyChunks(keys, 24), { keys })
  expect(result.chunks).toBeGreaterThan(200_000)
  expect(result.keys).toBe(keys)
  console.log(`wal-indexeddb: ${keys} keys from ${result.chunks} chunks reopened in ${Math.round(result.reopenMs)} ms`)
})
