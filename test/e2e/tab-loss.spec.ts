/**
 * Tabs vanish, acknowledged writes stay: two Node peers (durable, one location: this host) and four replica
 * tabs of one browser context (volatile, one location: the browser profile). Placement gives every key a
 * durable replica and a write is acknowledged only with a durable ack, so losing every tab at once loses no
 * acknowledged write:
 * - the whole browser context closes with the tabs' pagehide leave disabled (no announcement, no handoff: as
 *   if the browser crashed), and every acknowledged key reads back through both Node peers with R=1 and R=2;
 * - the tabs close one by one with their normal leave, then the context: the same;
 * - eight writers run for 30 s while a tab is closed and replaced or reloaded every 5 s, then the browser
 *   context closes as in a crash: the same.
 * The reads may retry for a bounded time while the Node peers notice the tabs are gone; how many failed on
 * the first pass is printed.
 */
import type { Browser } from '@playwright/test'
import { expect, test } from '../helpers/e2e.js'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'
import { type ReadCheck, type TabMesh, churnTabs, diagnose, disableLeave, percentile, placement, putAll, runWriters, startTabMesh, summarize, verifyReads } from '../helpers/tab-mesh.js'

const swimFlags = ['--probe-interval-ms', '500', '--probe-timeout-ms', '300', '--gossip-interval-ms', '100']
const TABS = 4
/** Bound on every peer and tab listing all members alive. */
const CONVERGE_MS = 90_000
/** Bound on the reads retrying (after a first pass over every key) while the Node peers notice the tabs are gone. */
const READ_RETRY_MS = 90_000

// Made in beforeAll, not at load: Playwright also loads this file in its main process, which never runs afterAll.
let group: ReturnType<typeof peerGroup>
test.beforeAll(() => { group = peerGroup('meshkv-e2e-tab-loss-', ['--listen', '/ip4/127.0.0.1/tcp/0/ws', ...swimFlags]) })
test.afterAll(async () => { await group?.stopAll() })

const log = (line: string): void => { console.log(`[tab-loss] ${line}`) }

type Mesh = TabMesh

/** A bootstrap, a Node peer joined to it, and TABS replica tabs in one new context, all listing all alive. */
async function startMesh (browser: Browser, name: string): Promise<Mesh> {
  const t0 = performance.now()
  const mesh = await startTabMesh(browser, group, name, TABS, CONVERGE_MS, line => { console.error(line) })
  expect(new Set(mesh.everyone).size).toBe(TABS + 2)
  log(`${name}: ${mesh.everyone.length} members alive everywhere ${Math.round(performance.now() - t0)} ms after start`)
  return mesh
}

/** Reads every acknowledged key back through both Node peers with R=1 and R=2, and fails with a diagnosis if any never does. */
async function expectNoLoss (name: string, peers: PeerProcess[], acked: Map<string, string>): Promise<ReadCheck> {
  const r0 = performance.now()
  const check = await verifyReads(peers, acked, [1, 2], { concurrency: 8, retryForMs: READ_RETRY_MS, onPass: (pass, failing) => { log(`${name}: read pass ${pass}: ${failing} failing, ${Math.round(performance.now() - r0)} ms after the reads began`) } })
  log(`${name}: ${acked.size} acknowledged keys, ${check.reads} reads (2 Node peers x r=1,2): first pass ${check.firstPass.length} failed (${summarize(check.firstPass)}) ` +
    `in ${Math.round(check.firstPassMs)} ms (read p50 ${Math.round(check.firstPassLatency.p50)} ms, p99 ${Math.round(check.firstPassLatency.p99)} ms, max ${Math.round(check.firstPassLatency.max)} ms); ` +
    `${check.remaining.length} still failing after ${check.passes} passes, ${Math.round(check.ms)} ms`)
  if (check.firstPass.length > 0) log(`${name}: e.g. ${check.firstPass[0]!.key} through ${check.firstPass[0]!.peer.slice(-8)} r=${check.firstPass[0]!.r}: ${check.firstPass[0]!.detail}`)
  // A not-found (or wrong) answer for an acknowledged key, even one that reads back later, is what "a replica
  // that lacks a key cannot hide it" rules out: a failure. (503s while the tabs are not yet declared dead are
  // unavailability, and retried.)
  if (check.wrongAnswers.length > 0) log(`${name}: WARNING: ${check.wrongAnswers.length} first-pass reads answered 404 or a wrong value for acknowledged keys: ${check.wrongAnswers.slice(0, 5).map(f => `${f.key} via ${f.peer.slice(-8)} r=${f.r}: ${f.status} ${f.detail.slice(0, 80)}`).join('; ')}\n${await diagnose(peers, check.wrongAnswers)}`)
  if (check.remaining.length > 0) log(`${name}: diagnosis\n${await diagnose(peers, check.remaining)}`)
  expect(check.remaining, `acknowledged writes that never read back: ${summarize(check.remaining)}`).toEqual([])
  expect(check.wrongAnswers.map(f => `${f.key} via ${f.peer} r=${f.r}: ${f.status}`), 'reads that answered 404 or a wrong value for an acknowledged key').toEqual([])
  return check
}

/** Waits until neither Node peer lists any of `ids` alive, and returns the states they list them in. */
async function statesOnceGone (peers: PeerProcess[], ids: string[]): Promise<string[]> {
  await waitUntil(async () => {
    for (const p of peers) {
      const list = await members(p)
      if (list.some(m => ids.includes(m.id) && m.state === 'alive')) return false
    }
    return true
  }, 60_000, 'the Node peers list the closed tabs as no longer alive')
  const states: string[] = []
  for (const p of peers) for (const m of await members(p)) if (ids.includes(m.id)) states.push(m.state)
  return states
}

const valueOf = (key: string): string => `value of ${key} ✓`

test('tab loss: the whole browser context vanishes without a leave or handoff, and every acknowledged write reads back through both Node peers (R=1, R=2)', async ({ browser }) => {
  test.setTimeout(300_000)
  const t0 = performance.now()
  const { boot, node, context, tabs } = await startMesh(browser, 'crash')

  const keys = Array.from({ length: 500 }, (_, i) => `crash-${String(i).padStart(3, '0')}`)
  const w0 = performance.now()
  const { acked, failures } = await putAll([boot.http, node.http], keys, valueOf, 2, 8)
  log(`crash: ${acked.size}/500 writes acknowledged in ${Math.round(performance.now() - w0)} ms; failed by code: ${JSON.stringify(failures)}`)
  expect(acked.size).toBeGreaterThanOrEqual(490)

  // While the tabs are up, every key's three primaries span both locations and include a durable member,
  // and every acknowledged key is already held by a durable replica.
  const tabIds = new Set(tabs.map(t => t.id))
  let oneDurable = 0
  for (const key of [...acked.keys()].slice(0, 40)) {
    const pl = await placement(boot, key)
    const primaries = pl.replicas.filter(r => r.role === 'primary')
    expect(primaries.map(r => r.id).sort(), `placement of ${key}`).toEqual([...pl.primaries].sort())
    expect(primaries, `placement of ${key}`).toHaveLength(3)
    const durable = primaries.filter(r => r.durability === 'durable')
    expect(durable.length, `durable primaries of ${key}: ${JSON.stringify(pl.replicas)}`).toBeGreaterThanOrEqual(1)
    expect(durable.every(r => !tabIds.has(r.id)), `only Node peers are durable: ${JSON.stringify(pl.replicas)}`).toBe(true)
    expect(new Set(primaries.map(r => r.location)).size, `locations of ${key}: ${JSON.stringify(pl.replicas)}`).toBe(2)
    expect(durable.some(r => r.version !== null && r.version !== undefined), `a durable replica holds ${key}: ${JSON.stringify(pl.replicas)}`).toBe(true)
    if (durable.length === 1) oneDurable++
  }
  log(`crash: placement of 40 keys: each has 3 primaries over 2 locations and a durable replica holding it; ${oneDurable} of them have a single durable primary`)

  // The tabs vanish at once, as in a browser crash: no leave announcement, no handoff.
  for (const t of tabs) expect(await disableLeave(t.page)).toBe(true)
  await context.close()
  // Timed alongside the reads: when both Node peers stop listing the tabs alive.
  const c0 = performance.now()
  const gone = statesOnceGone([boot, node], [...tabIds]).then(states => ({ states, ms: performance.now() - c0 }), (error: unknown) => ({ states: [String(error)], ms: NaN }))
  await expectNoLoss('crash', [boot, node], acked)

  // The Node peers noticed the tabs as failed, not as having left (the leave was really disabled).
  const { states, ms } = await gone
  log(`crash: both Node peers stopped listing the tabs alive ${Math.round(ms)} ms after the close; their states: ${states.join(', ')}`)
  expect(states.every(s => s === 'dead' || s === 'suspect'), states.join(', ')).toBe(true)
  log(`crash: test body took ${Math.round(performance.now() - t0)} ms`)
})

test('tab loss: the tabs close one by one with their normal leave, then the context, and every acknowledged write reads back through both Node peers (R=1, R=2)', async ({ browser }) => {
  test.setTimeout(300_000)
  const t0 = performance.now()
  const { boot, node, context, tabs } = await startMesh(browser, 'close')

  const keys = Array.from({ length: 500 }, (_, i) => `close-${String(i).padStart(3, '0')}`)
  const w0 = performance.now()
  const { acked, failures } = await putAll([boot.http, node.http], keys, valueOf, 2, 8)
  log(`close: ${acked.size}/500 writes acknowledged in ${Math.round(performance.now() - w0)} ms; failed by code: ${JSON.stringify(failures)}`)
  expect(acked.size).toBeGreaterThanOrEqual(490)

  for (const t of tabs) {
    const c0 = performance.now()
    await t.page.close()
    const states = await statesOnceGone([boot, node], [t.id])
    log(`close: tab ${t.id.slice(-8)} closed; the Node peers list it ${states.join(', ')} after ${Math.round(performance.now() - c0)} ms`)
  }
  await context.close()
  await expectNoLoss('close', [boot, node], acked)
  log(`close: test body took ${Math.round(performance.now() - t0)} ms`)
})

test('tab loss under churn: 8 writers for 30 s while a tab is closed and replaced or reloaded every 5 s, then the browser context vanishes; no acknowledged write is lost', async ({ browser }) => {
  test.setTimeout(300_000)
  const t0 = performance.now()
  const { boot, node, context, tabs } = await startMesh(browser, 'churn')

  const controller = new AbortController()
  const writing = runWriters([boot.http, node.http], { writers: 8, durationMs: 30_000, prefix: 'churn-', w: 2, valueOf, signal: controller.signal })
  const churning = churnTabs(context, boot.http, tabs, { periodMs: 5000, durationMs: 30_000, log })
  const [run, churn] = await Promise.all([writing, churning])
  log(`churn: ${run.acked.size} of ${run.attempted} writes acknowledged in ${Math.round(run.elapsedMs)} ms (${Math.round(run.acked.size / (run.elapsedMs / 1000))}/s, p50 ${Math.round(percentile(run.latencies, 0.5))} ms, p99 ${Math.round(percentile(run.latencies, 0.99))} ms); ` +
    `failed by code: ${JSON.stringify(run.failures)}; churn: ${churn.replaced} replaced, ${churn.reloaded} reloaded, ${churn.failed} failed`)
  expect(run.acked.size).toBeGreaterThan(100)
  expect(churn.failed).toBe(0)

  for (const t of tabs) if (!t.page.isClosed()) expect(await disableLeave(t.page)).toBe(true)
  await context.close()
  await expectNoLoss('churn', [boot, node], run.acked)
  log(`churn: test body took ${Math.round(performance.now() - t0)} ms`)
})
