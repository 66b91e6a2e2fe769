/**
 * Headless Chromium for the browser benchmarks, launched as playwright.config.ts launches it for the tests:
 * Debian's /usr/bin/chromium unless MESHKV_CHROMIUM says otherwise ('' = Playwright's own). And the CPU time
 * of a process tree from /proc (Linux), for measuring what the browser costs.
 */
import * as fs from 'node:fs'
import { type Browser, chromium } from '@playwright/test'

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

function executablePath (): string | undefined {
  const override = process.env.MESHKV_CHROMIUM
  if (override !== undefined) return override === '' ? undefined : override
  return fs.existsSync('/usr/bin/chromium') ? '/usr/bin/chromium' : undefined
}

export async function launchChromium (): Promise<{ browser: Browser; description: string }> {
  const path = executablePath()
  const browser = await chromium.launch({ headless: true, args: CHROMIUM_ARGS, ...(path === undefined ? {} : { executablePath: path }) })
  return { browser, description: `chromium ${browser.version()}${path === undefined ? '' : ` (${path})`}` }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const TICKS_PER_S = 100

function stat (pid: number): { ppid: number; ticks: number } | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name is in parentheses and may hold spaces: fields are counted after its closing one.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) }
  } catch {
    return null
  }
}

/** CPU seconds (user + system) used so far by `root` and every process below it that is still running. */
export function treeCpuSeconds (root: number): number {
  const byParent = new Map<number, number[]>()
  const ticks = new Map<number, number>()
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const s = stat(pid)
    if (s === null) continue
    ticks.set(pid, s.ticks)
    const list = byParent.get(s.ppid) ?? []
    list.push(pid)
    byParent.set(s.ppid, list)
  }
  let total = 0
  const todo = [root]
  while (todo.length > 0) {
    const pid = todo.pop()!
    total += ticks.get(pid) ?? 0
    todo.push(...(byParent.get(pid) ?? []))
  }
  return total / TICKS_PER_S
}

/** CPU seconds used so far by every Chromium process started by this process. */
export function browserCpuSeconds (): number {
  let total = 0
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const s = stat(pid)
    if (s?.ppid !== process.pid) continue
    let comm = ''
    try { comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8') } catch { continue }
    if (comm.includes('chrom')) total += treeCpuSeconds(pid)
  }
  return total
}
