/**
 * Shared by test/e2e/tab-loss.spec.ts and bench/churn.ts: replica tabs in one browser context, writes through
 * the Node peers' HTTP API with a record of which were acknowledged, and the check that every acknowledged
 * write reads back through every Node peer. Every wait and every loop here is bounded.
 */
import type { Browser, BrowserContext, Page } from '@playwright/test'
import { type MemberJson, type PeerProcess, members, type peerGroup } from './peers.js'
import { type MeshWindow, tabId } from './tabs.js'

export interface Tab { page: Page; id: string }

/** Opens a page on `url` in `context` and waits until it has its peer. */
export async function openTab (context: BrowserContext, url: string, onError: (message: string) => void = () => {}): Promise<Tab> {
  const page = await context.newPage()
  page.on('pageerror', error => { onError(`page error: ${error.message}\n${error.stack ?? ''}`) })
  await page.goto(url, { timeout: 30_000 })
  return { page, id: await tabId(page) }
}

export interface TabMesh {
  boot: PeerProcess
  node: PeerProcess
  peers: PeerProcess[]
  context: BrowserContext
  tabs: Tab[]
  /** Every member's id: the two Node peers and the tabs. */
  everyone: string[]
  /** Closes the browser context (the tabs vanish; idempotent). */
  closeContext: () => Promise<void>
  /** Closes the context and SIGKILLs both Node peers (idempotent). */
  close: () => Promise<void>
}

/**
 * A bootstrap, a second Node peer joined to it, and `count` replica tabs on the bootstrap's page in a new
 * context of `browser`, once every peer and tab lists everyone alive (at most `convergeMs`). The benchmarks'
 * meshes and tab-loss.spec.ts's; on a failure to start, what was started is stopped.
 */
export async function startTabMesh (browser: Browser, group: ReturnType<typeof peerGroup>, name: string, count: number, convergeMs: number, onError: (message: string) => void): Promise<TabMesh> {
  const peers: PeerProcess[] = []
  let context: BrowserContext | null = null
  const closeContext = async (): Promise<void> => {
    const c = context
    context = null
    await c?.close().catch(() => {})
  }
  const close = async (): Promise<void> => {
    await closeContext()
    for (const p of peers) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL')
    await Promise.all(peers.map(p => p.exited))
  }
  try {
    const boot = await group.start(`${name}-boot`, ['--bootstrap'])
    peers.push(boot)
    const node = await group.start(`${name}-node`, ['--join', boot.tcp])
    peers.push(node)
    const opened = await browser.newContext()
    context = opened
    const tabs: Tab[] = []
    for (let i = 0; i < count; i++) tabs.push(await openTab(opened, boot.http, onError))
    const everyone = [boot.id, node.id, ...tabs.map(t => t.id)]
    await waitAllAlive(tabs.map(t => t.page), peers, everyone, convergeMs)
    return { boot, node, peers, context: opened, tabs, everyone, closeContext, close }
  } catch (error) {
    await close()
    throw error
  }
}

/** The ids this tab lists alive (itself included). */
export async function aliveInTab (page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as MeshWindow).meshkv.peer.members().filter(m => m.state === 'alive').map(m => m.id))
}

export async function aliveInPeer (peer: PeerProcess): Promise<string[]> {
  return (await members(peer)).filter(m => m.state === 'alive').map(m => m.id)
}

const sameSet = (a: string[], b: string[]): boolean => a.length === b.length && [...a].sort().join() === [...b].sort().join()

/**
 * Waits (polling, at most `timeoutMs` in all) until every tab and every Node peer lists exactly `everyone`
 * alive, so all of them compute the same ring.
 */
export async function waitAllAlive (tabs: Page[], peers: PeerProcess[], everyone: string[], timeoutMs: number): Promise<number> {
  const start = performance.now()
  let last = ''
  for (;;) {
    const views: string[] = []
    let ok = true
    for (const page of tabs) {
      try {
        const alive = await aliveInTab(page)
        if (!sameSet(alive, everyone)) { ok = false; views.push(`tab lists ${alive.length} alive`) }
      } catch (error) { ok = false; views.push(`tab: ${String(error)}`) }
    }
    for (const p of peers) {
      try {
        const alive = await aliveInPeer(p)
        if (!sameSet(alive, everyone)) { ok = false; views.push(`${p.id.slice(-6)} lists ${alive.length} alive`) }
      } catch (error) { ok = false; views.push(`${p.id.slice(-6)}: ${String(error)}`) }
    }
    if (ok) return performance.now() - start
    last = views.join('; ')
    if (performance.now() - start > timeoutMs) throw new Error(`not every peer and tab listed all ${everyone.length} members alive within ${timeoutMs} ms: ${last}`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

/**
 * Makes the tab's pagehide leave a no-op, so closing it leaves no announcement and hands nothing off: the tab
 * vanishes as if its browser had crashed. web/main.ts calls `peer.leave()` on the very object published as
 * `window.meshkv.peer`, so replacing the property there replaces what pagehide calls. Returns whether the
 * replacement took (read back from the page).
 */
export async function disableLeave (page: Page): Promise<boolean> {
  // No named function inside: bench/ runs under tsx, whose keepNames would wrap one in a __name() call that
  // does not exist in the page.
  return page.evaluate(() => {
    const w = window as unknown as MeshWindow & { meshkvNoLeave?: unknown }
    ;(w.meshkv.peer as { leave: unknown }).leave = async () => ({ delivered: 0, failed: 0 })
    w.meshkvNoLeave = w.meshkv.peer.leave
    return w.meshkv.peer.leave === w.meshkvNoLeave && typeof w.meshkvNoLeave === 'function'
  })
}

export interface PutOutcome { ok: boolean; status: number; code: string; ms: number }

/** PUT /kv/<key>?w=<w> through `http`; a failure's code is the JSON error code, or FETCH_<error name>. */
export async function httpPut (http: string, key: string, value: string, w: number, timeoutMs = 30_000): Promise<PutOutcome> {
  const start = performance.now()
  try {
    const res = await fetch(`${http}/kv/${encodeURIComponent(key)}?w=${w}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(timeoutMs) })
    const body = await res.text()
    const ms = performance.now() - start
    if (res.status === 204) return { ok: true, status: 204, code: '', ms }
    let code = `HTTP_${res.status}`
    try { code = String((JSON.parse(body) as { code?: string }).code ?? code) } catch { /* not JSON */ }
    return { ok: false, status: res.status, code, ms }
  } catch (error) {
    return { ok: false, status: 0, code: fetchCode(error), ms: performance.now() - start }
  }
}

/** A request that got no HTTP answer: FETCH_<error name>[_<cause code>], e.g. FETCH_TimeoutError, FETCH_TypeError_ECONNRESET. */
function fetchCode (error: unknown): string {
  if (!(error instanceof Error)) return 'FETCH_ERROR'
  const cause = (error as { cause?: { code?: unknown } }).cause
  return `FETCH_${error.name}${typeof cause?.code === 'string' ? `_${cause.code}` : ''}`
}

export interface WriteSummary {
  /** Acknowledged (204) keys and the value written. */
  acked: Map<string, string>
  /** Failed writes by error code. */
  failures: Record<string, number>
}

/** Writes `keys` with W=`w`, key i through `targets[i % targets.length]`, at most `concurrency` at once. */
export async function putAll (targets: string[], keys: string[], valueOf: (key: string) => string, w: number, concurrency: number): Promise<WriteSummary> {
  const acked = new Map<string, string>()
  const failures: Record<string, number> = {}
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < keys.length) {
      const i = next++
      const key = keys[i]!
      const value = valueOf(key)
      const out = await httpPut(targets[i % targets.length]!, key, value, w)
      if (out.ok) acked.set(key, value)
      else failures[out.code] = (failures[out.code] ?? 0) + 1
    }
  }))
  return { acked, failures }
}

export interface ReadFailure { key: string; peer: string; r: number; status: number; code: string; detail: string }

/** GET /kv/<key>?r=<r>: null when it answered 200 with `expected`, else what went wrong. */
async function checkRead (peer: PeerProcess, key: string, r: number, expected: string): Promise<ReadFailure | null> {
  try {
    const res = await fetch(`${peer.http}/kv/${encodeURIComponent(key)}?r=${r}`, { signal: AbortSignal.timeout(30_000) })
    const body = await res.text()
    if (res.status === 200 && body === expected) return null
    const code = res.status === 200 ? 'WRONG_VALUE' : (/"code":\s*"([A-Z_]+)"/.exec(body)?.[1] ?? `HTTP_${res.status}`)
    return { key, peer: peer.id, r, status: res.status, code, detail: res.status === 200 ? `wrong value ${JSON.stringify(body.slice(0, 80))}` : body.replace(/\s+/g, ' ').slice(0, 1500) }
  } catch (error) {
    return { key, peer: peer.id, r, status: 0, code: fetchCode(error), detail: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }
  }
}

export interface ReadCheck {
  /** Reads of the first pass (every key through every peer at every r). */
  reads: number
  firstPass: ReadFailure[]
  /**
   * First-pass reads that answered wrongly rather than failing: 404 (or 300/another value) for a key whose
   * write was acknowledged. A 503 says "cannot tell now"; these said "not there".
   */
  wrongAnswers: ReadFailure[]
  /** What still failed when the retries ran out (empty: everything read back). */
  remaining: ReadFailure[]
  passes: number
  ms: number
  /** How long the first pass took, and its reads' latencies (ms): p50, p99, max. */
  firstPassMs: number
  firstPassLatency: { p50: number; p99: number; max: number }
}

/**
 * Reads every key of `expected` through every peer with each r of `rs` (the first pass, however long it
 * takes), then re-reads only what failed, once a second, until nothing fails or `retryForMs` has passed
 * since the first pass ended.
 */
export async function verifyReads (peers: PeerProcess[], expected: Map<string, string>, rs: number[], options: { concurrency: number; retryForMs: number; onPass?: (pass: number, failing: number) => void }): Promise<ReadCheck> {
  const start = performance.now()
  let todo: Array<{ peer: PeerProcess; key: string; r: number }> = []
  for (const key of expected.keys()) for (const peer of peers) for (const r of rs) todo.push({ peer, key, r })
  const reads = todo.length
  let firstPass: ReadFailure[] | null = null
  let failing: ReadFailure[] = []
  let passes = 0
  let firstPassMs = 0
  const latencies: number[] = []
  for (;;) {
    passes++
    const failed: Array<{ item: typeof todo[number]; failure: ReadFailure }> = []
    let next = 0
    const items = todo
    await Promise.all(Array.from({ length: options.concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++]!
        const t0 = performance.now()
        const failure = await checkRead(item.peer, item.key, item.r, expected.get(item.key)!)
        if (passes === 1) latencies.push(performance.now() - t0)
        if (failure !== null) failed.push({ item, failure })
      }
    }))
    failing = failed.map(f => f.failure)
    if (firstPass === null) firstPassMs = performance.now() - start
    firstPass ??= failing
    options.onPass?.(passes, failing.length)
    if (failing.length === 0 || performance.now() - start - firstPassMs > options.retryForMs) break
    todo = failed.map(f => f.item)
    await new Promise(resolve => setTimeout(resolve, 1000))
  }
  const wrongAnswers = (firstPass ?? []).filter(f => f.status === 404 || f.status === 200 || f.status === 300)
  return { reads, firstPass, wrongAnswers, remaining: failing, passes, ms: performance.now() - start, firstPassMs, firstPassLatency: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: Math.max(0, ...latencies) } }
}

/** Failures grouped as `status/code-or-detail: count`, for a one-line report. */
export function summarize (failures: ReadFailure[]): string {
  const by: Record<string, number> = {}
  for (const f of failures) {
    const k = `r=${f.r} ${f.status} ${f.code}`
    by[k] = (by[k] ?? 0) + 1
  }
  return Object.entries(by).map(([k, n]) => `${k}: ${n}`).join('; ') || 'none'
}

export interface PlacementReplica { id: string; role: string; up: boolean; location: string; durability: string; reason: string; hintFor?: string; version?: unknown; error?: string }
export interface Placement { key: string; position: number; segment: number; primaries: string[]; replicas: PlacementReplica[] }

export async function placement (peer: PeerProcess, key: string): Promise<Placement> {
  const res = await fetch(`${peer.http}/kv/${encodeURIComponent(key)}/placement`, { signal: AbortSignal.timeout(30_000) })
  if (!res.ok) throw new Error(`GET /kv/${key}/placement: ${res.status} ${await res.text()}`)
  return await res.json() as Placement
}

/**
 * What to report about reads that never succeeded: each key's placement as every Node peer sees it (with the
 * version each replica holds), every peer's member list, and the last lines each peer printed.
 */
export async function diagnose (peers: PeerProcess[], failures: ReadFailure[], keysMax = 5, linesMax = 40): Promise<string> {
  const out: string[] = []
  const keys = [...new Set(failures.map(f => f.key))]
  out.push(`${failures.length} failing reads over ${keys.length} keys: ${summarize(failures)}`)
  for (const key of keys.slice(0, keysMax)) {
    for (const p of peers) {
      try {
        const pl = await placement(p, key)
        out.push(`placement of ${key} seen by ${p.id.slice(-8)}: ${pl.replicas.map(r => `${r.id.slice(-8)} ${r.role}${r.hintFor === undefined ? '' : ` for ${r.hintFor.slice(-8)}`} ${r.durability} up=${String(r.up)} ${JSON.stringify(r.version ?? r.error ?? null)}`).join(' | ')}`)
      } catch (error) { out.push(`placement of ${key} through ${p.id.slice(-8)}: ${String(error)}`) }
    }
  }
  for (const p of peers) {
    try {
      const list: Array<MemberJson & { location?: string; durability?: string }> = await members(p)
      out.push(`members seen by ${p.id.slice(-8)}: ${list.map(m => `${m.id.slice(-8)} ${m.kind} ${m.durability ?? '?'} ${m.state}#${m.incarnation}`).join(', ')}`)
    } catch (error) { out.push(`members of ${p.id.slice(-8)}: ${String(error)}`) }
    out.push(`last lines of ${p.id.slice(-8)}:`, ...p.output.slice(-linesMax).map(l => `  ${l}`))
  }
  return out.join('\n')
}

export interface WriterRun {
  acked: Map<string, string>
  failures: Record<string, number>
  attempted: number
  /** Latency of each acknowledged write, ms. */
  latencies: number[]
  elapsedMs: number
}

/**
 * `writers` closed-loop writers put new keys `<prefix><n>` (W=`w`) for `durationMs`, alternating over
 * `targets`; each stops by itself at the deadline (a write in flight then finishes within its own timeout).
 */
export async function runWriters (targets: string[], options: { writers: number; durationMs: number; prefix: string; w: number; valueOf: (key: string) => string; signal?: AbortSignal; onResult?: (out: PutOutcome) => void }): Promise<WriterRun> {
  const acked = new Map<string, string>()
  const failures: Record<string, number> = {}
  const latencies: number[] = []
  let n = 0
  const start = performance.now()
  const deadline = start + options.durationMs
  await Promise.all(Array.from({ length: options.writers }, async () => {
    while (performance.now() < deadline && options.signal?.aborted !== true) {
      const i = n++
      const key = `${options.prefix}${i}`
      const value = options.valueOf(key)
      const out = await httpPut(targets[i % targets.length]!, key, value, options.w)
      if (out.ok) { acked.set(key, value); latencies.push(out.ms) } else failures[out.code] = (failures[out.code] ?? 0) + 1
      options.onResult?.(out)
    }
  }))
  return { acked, failures, attempted: n, latencies, elapsedMs: performance.now() - start }
}

export function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!
}

/**
 * Tab churn for `durationMs`: every `periodMs` the next tab (round robin) is, alternately, closed (its
 * normal pagehide leave runs) and replaced by a new page on `url`, or reloaded. Actions run one after the
 * other: one that overruns its period delays the next rather than piling up. `tabs` is updated in place.
 */
export async function churnTabs (context: BrowserContext, url: string, tabs: Tab[], options: { periodMs: number; durationMs: number; log: (line: string) => void; signal?: AbortSignal }): Promise<{ replaced: number; reloaded: number; failed: number }> {
  const start = performance.now()
  let replaced = 0
  let reloaded = 0
  let failed = 0
  for (let k = 1; ; k++) {
    const due = start + k * options.periodMs
    if (due >= start + options.durationMs || options.signal?.aborted === true) break
    const wait = due - performance.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    const i = (k - 1) % tabs.length
    const tab = tabs[i]!
    const t0 = performance.now()
    try {
      if (k % 2 === 1) {
        await tab.page.close()
        tabs[i] = await openTab(context, url, options.log)
        replaced++
        options.log(`churn ${k}: closed ${tab.id.slice(-8)}, opened ${tabs[i]!.id.slice(-8)} (${Math.round(performance.now() - t0)} ms)`)
      } else {
        await tab.page.reload({ timeout: 30_000 })
        const id = await tabId(tab.page)
        tabs[i] = { page: tab.page, id }
        reloaded++
        options.log(`churn ${k}: reloaded ${tab.id.slice(-8)} -> ${id.slice(-8)} (${Math.round(performance.now() - t0)} ms)`)
      }
    } catch (error) {
      failed++
      options.log(`churn ${k}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`)
    }
  }
  return { replaced, reloaded, failed }
}
