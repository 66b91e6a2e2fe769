/**
 * `GET /metrics` of real `node node/peer.js` processes (three peers, N=3), read as Prometheus reads it: the
 * text parses with a Prometheus text-format parser from npm, every family is `meshkv_*`, and the counters
 * and histograms move by exactly what a client did through one peer — and not on the peers it did not talk
 * to. The members gauge shows the three peers alive on each of them.
 */
import parsePrometheusTextFormat, { type PrometheusFamily, type PrometheusSample } from 'parse-prometheus-text-format'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const group = peerGroup('meshkv-metrics-', [])
let a: PeerProcess
let b: PeerProcess
let c: PeerProcess
beforeAll(async () => {
  a = await group.start('a', ['--bootstrap'])
  b = await group.start('b', ['--join', a.tcp])
  c = await group.start('c', ['--join', a.tcp])
  await waitUntil(async () => {
    for (const p of [a, b, c]) if ((await members(p)).filter(m => m.state === 'alive').length !== 3) return false
    return true
  }, 30_000, 'three peers alive')
}, 120_000)
afterAll(async () => { await group.stopAll() })

interface Scrape {
  contentType: string
  text: string
  /** The families as parsed. */
  families: Map<string, PrometheusFamily>
  /** Every series by sample name (`x_bucket`, `x_count` and `x_sum` of a histogram apart), labels intact. */
  samples: Map<string, PrometheusFamily>
}

async function scrape (p: PeerProcess): Promise<Scrape> {
  const res = await fetch(`${p.http}/metrics`, { signal: AbortSignal.timeout(10_000) })
  expect(res.status).toBe(200)
  const text = await res.text()
  // Throws on any line that is not valid text format.
  const families = new Map(parsePrometheusTextFormat(text).map(f => [f.name, f]))
  // parse-prometheus-text-format 1.1.1 folds all of a histogram's series into one, keeping only the `le`
  // label (its flattenMetrics), and drops a labelled series' count. So values are read from a second parse
  // with histograms declared untyped: each run of `_bucket`, `_sum` or `_count` lines is then a family of its
  // own, every sample with its labels (runs of one name are gathered here).
  const untyped = text.replace(/^# TYPE (\S+) histogram$/gm, '# TYPE $1 untyped')
  const samples = new Map<string, PrometheusFamily>()
  for (const f of parsePrometheusTextFormat(untyped)) {
    const seen = samples.get(f.name)
    if (seen === undefined) samples.set(f.name, { ...f, metrics: [...f.metrics] })
    else seen.metrics.push(...f.metrics)
  }
  return { contentType: res.headers.get('content-type') ?? '', text, families, samples }
}

function matches (sample: PrometheusSample, labels: Record<string, string>): boolean {
  return Object.entries(labels).every(([k, v]) => sample.labels?.[k] === v)
}

/** The one sample of a counter or gauge with these labels (0 if the series does not exist yet). */
function value (s: Scrape, name: string, labels: Record<string, string> = {}): number {
  const family = s.samples.get(name)
  if (family === undefined) throw new Error(`no samples named ${name}`)
  const found = family.metrics.filter(m => matches(m, labels))
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1)
  return found.length === 0 ? 0 : Number(found[0]!.value)
}

/** A histogram series' count and cumulative bucket counts (zeros if the series does not exist yet). */
function histogram (s: Scrape, name: string, labels: Record<string, string> = {}): { count: number; bucket: (le: string) => number } {
  expect(s.families.get(name)?.type, name).toBe('HISTOGRAM')
  return { count: value(s, `${name}_count`, labels), bucket: le => value(s, `${name}_bucket`, { ...labels, le }) }
}

async function http (p: PeerProcess, method: string, path: string, body?: string): Promise<number> {
  const res = await fetch(`${p.http}${path}`, { method, ...(body === undefined ? {} : { body }), signal: AbortSignal.timeout(20_000) })
  await res.arrayBuffer()
  return res.status
}

describe('GET /metrics (real processes)', () => {
  it('serves Prometheus text format that a parser reads cleanly, every family meshkv_* with its unit last', async () => {
    const s = await scrape(a)
    expect(s.contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    // Nothing skipped: one parsed family per TYPE line.
    const typeLines = s.text.split('\n').filter(line => line.startsWith('# TYPE '))
    expect(s.families.size).toBe(typeLines.length)
    expect(s.families.size).toBeGreaterThan(40)
    for (const [name, family] of s.families) {
      expect(name, name).toMatch(/^meshkv_[a-z0-9_]+$/)
      expect(family.help, name).not.toBe('')
      if (family.type === 'COUNTER') expect(name, name).toMatch(/_total$/)
      // prom-client's own gauge meshkv_nodejs_active_resources_total is the one exception.
      else if (!name.startsWith('meshkv_nodejs_')) expect(name, name).not.toMatch(/_total$/)
    }
    // The families the README lists, each of the right type (a sample; process metrics from prom-client).
    const types: Record<string, PrometheusFamily['type']> = {
      meshkv_requests_total: 'COUNTER',
      meshkv_request_duration_seconds: 'HISTOGRAM',
      meshkv_get_siblings: 'HISTOGRAM',
      meshkv_read_repairs_total: 'COUNTER',
      meshkv_hints_pending: 'GAUGE',
      meshkv_expiry_checks_waiting: 'GAUGE',
      meshkv_handoff_delivered_total: 'COUNTER',
      meshkv_anti_entropy_repairs_total: 'COUNTER',
      meshkv_members: 'GAUGE',
      meshkv_swim_suspicions_total: 'COUNTER',
      meshkv_swim_refutations_total: 'COUNTER',
      meshkv_wal_bytes: 'GAUGE',
      meshkv_wal_records_total: 'COUNTER',
      meshkv_wal_fsync_duration_seconds: 'HISTOGRAM',
      meshkv_wal_compactions_total: 'COUNTER',
      meshkv_bad_messages_total: 'COUNTER',
      meshkv_overload_refusals_total: 'COUNTER',
      meshkv_relay_reservations: 'GAUGE',
      meshkv_watch_events_published_total: 'COUNTER',
      meshkv_watch_subscribers: 'GAUGE',
      meshkv_process_cpu_seconds_total: 'COUNTER',
      meshkv_nodejs_heap_size_used_bytes: 'GAUGE'
    }
    for (const [name, type] of Object.entries(types)) expect(s.families.get(name)?.type, name).toBe(type)
    expect(s.families.get('meshkv_bad_messages_total')!.metrics.map(m => m.labels?.protocol).sort()).toEqual(['discovery', 'kv', 'swim', 'sync', 'watch'])
    expect(value(s, 'meshkv_relay_reservations_max')).toBe(128)
  })

  it('shows the three members alive on every peer', async () => {
    // Waited for: on a loaded machine a member may be suspected for a moment.
    for (const p of [a, b, c]) {
      await waitUntil(async () => {
        const s = await scrape(p)
        return value(s, 'meshkv_members', { state: 'alive' }) === 3 && ['suspect', 'dead', 'left'].every(state => value(s, 'meshkv_members', { state }) === 0)
      }, 30_000, `${p.id}: meshkv_members 3 alive, no other state`)
    }
    const s = await scrape(a)
    expect(s.families.get('meshkv_members')!.metrics.map(m => m.labels?.state).sort()).toEqual(['alive', 'dead', 'left', 'suspect'])
  })

  it('moves the request counters and histograms by exactly what a client did through that peer', async () => {
    const [beforeA, beforeB] = await Promise.all([scrape(a), scrape(b)])
    for (let i = 0; i < 5; i++) expect(await http(a, 'PUT', `/kv/m-${i}`, `value ${i}`)).toBe(204)
    for (let i = 0; i < 5; i++) expect(await http(a, 'GET', `/kv/m-${i}`)).toBe(200)
    expect(await http(a, 'GET', '/kv/never-written')).toBe(404)
    // Two writes without a context: concurrent siblings, read back as two values.
    expect(await http(a, 'PUT', '/kv/sib', 'one')).toBe(204)
    expect(await http(a, 'PUT', '/kv/sib', 'two')).toBe(204)
    expect(await http(a, 'GET', '/kv/sib')).toBe(300)
    expect(await http(a, 'DELETE', '/kv/m-0')).toBe(204)
    expect(await http(a, 'PUT', '/heartbeat/svc-1?ttl=60000')).toBe(204)
    expect(await http(a, 'PUT', '/heartbeat/svc-2?ttl=60000')).toBe(204)
    const [afterA, afterB] = await Promise.all([scrape(a), scrape(b)])

    const did = { put: 7, get: 7, delete: 1, heartbeat: 2 }
    for (const [op, n] of Object.entries(did)) {
      const ok = { op, outcome: 'ok' }
      expect(value(afterA, 'meshkv_requests_total', ok) - value(beforeA, 'meshkv_requests_total', ok), op).toBe(n)
      expect(histogram(afterA, 'meshkv_request_duration_seconds', ok).count - histogram(beforeA, 'meshkv_request_duration_seconds', ok).count, op).toBe(n)
      // Each one well within the 30 s bucket.
      expect(histogram(afterA, 'meshkv_request_duration_seconds', ok).bucket('30') - histogram(beforeA, 'meshkv_request_duration_seconds', ok).bucket('30'), op).toBe(n)
      // Nothing failed, and the peer the client did not talk to counted none of these.
      const all = (s: Scrape): number => s.families.get('meshkv_requests_total')!.metrics.filter(m => m.labels?.op === op).reduce((sum, m) => sum + Number(m.value), 0)
      expect(all(afterA) - all(beforeA), op).toBe(n)
      expect(all(afterB) - all(beforeB), `${op} on b`).toBe(0)
    }
    // Siblings per read: the five single values and the two siblings; the missing key is not a read that
    // found anything.
    const sib = (s: Scrape): ReturnType<typeof histogram> => histogram(s, 'meshkv_get_siblings')
    expect(sib(afterA).count - sib(beforeA).count).toBe(6)
    expect(sib(afterA).bucket('1') - sib(beforeA).bucket('1')).toBe(5)
    expect(sib(afterA).bucket('2') - sib(beforeA).bucket('2')).toBe(6)
    // The coordinator logged each write and synced its log (sync durability, the default).
    expect(value(afterA, 'meshkv_wal_records_total') - value(beforeA, 'meshkv_wal_records_total')).toBeGreaterThanOrEqual(10)
    expect(value(afterA, 'meshkv_wal_appended_bytes_total')).toBeGreaterThan(value(beforeA, 'meshkv_wal_appended_bytes_total'))
    expect(value(afterA, 'meshkv_wal_bytes')).toBeGreaterThan(value(beforeA, 'meshkv_wal_bytes'))
    expect(histogram(afterA, 'meshkv_wal_fsync_duration_seconds').count).toBeGreaterThan(histogram(beforeA, 'meshkv_wal_fsync_duration_seconds').count)
    expect(value(afterA, 'meshkv_wal_syncs_total')).toBeGreaterThan(value(beforeA, 'meshkv_wal_syncs_total'))
    // The replicas' requests went out over the kv protocol.
    expect(value(afterA, 'meshkv_rpc_requests_total', { protocol: 'kv' })).toBeGreaterThan(value(beforeA, 'meshkv_rpc_requests_total', { protocol: 'kv' }))
    expect(value(afterA, 'meshkv_keys')).toBeGreaterThanOrEqual(8)
  })
})
