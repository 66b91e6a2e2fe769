import * as fs from 'node:fs'
import { defineConfig } from '@playwright/test'

// Browser tests drive Debian's Chromium (`apt-get install chromium`), since `npx playwright install` cannot
// download browsers on machines without internet access. MESHKV_CHROMIUM overrides the executable; set it
// to an empty string to use Playwright's own Chromium where it is installed.
const override = process.env.MESHKV_CHROMIUM
const executablePath = override !== undefined ? (override === '' ? undefined : override) : (fs.existsSync('/usr/bin/chromium') ? '/usr/bin/chromium' : undefined)

export default defineConfig({
  testDir: 'test/e2e',
  timeout: 180_000,
  expect: { timeout: 30_000 },
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    headless: true,
    launchOptions: {
      ...(executablePath === undefined ? {} : { executablePath }),
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    }
  }
})
