/**
 * What a peer reports of itself to dashboards (the `info` request, the dashboard's activity view): keys
 * held, log size, the replication counters, and the latency of the client operations it coordinated or
 * forwarded over a bounded window. Kept outside the core: these are figures for people, not part of the
 * replication protocol, which only carries them as opaque JSON.
 */
import type { StorageEngine } from '../core/storage/engine.js'
import { parseJson } from '../core/kv/messages.js'
import { type KvNode, type KvStats, type OpObserver, replyError } from '../core/kv/node.js'

export interface PeerInfo {
  readonly id: string
  readonly keys: number
  readonly walBytes: number
  readonly stats: KvStats
  /** Client operations (put, get, delete) this peer coordinated or forwarded: count and latency in ms over
   * the last LATENCY_SAMPLES of them. */
  readonly ops: number
  readonly latency: { readonly samples: number; readonly p50: number; readonly p99: number }
}

/** Client operations whose latency the figures keep. */
export const LATENCY_SAMPLES = 1024

/** Every counter of KvStats, once: the type checker refuses this table when a counter is added to KvStats and not here. */
const STAT_FIELDS: { readonly [K in keyof KvStats]: true } = { puts: true, gets: true, deletes: true, forwarded: true, quorumFailures: true, readRepairs: true, hintsPending: true, expiryChecksWaiting: true, handedOff: true, dropped: true, syncRounds: true, syncRepairs: true, reaped: true, badRequests: true, hedged: true, expiryPostponedDegraded: true, refreshes: true }
const STAT_NAMES = Object.keys(STAT_FIELDS) as ReadonlyArray<keyof KvStats>

/** The latencies of the last LATENCY_SAMPLES client operations, in a ring buffer. */
export class OpLatencies {
  private readonly samples = new Float64Array(LATENCY_SAMPLES)
  private count = 0

  /** An OpObserver (kv/node.ts): keeps the latency. */
  readonly record: OpObserver = (_op, latencyMs) => { this.samples[this.count++ % LATENCY_SAMPLES] = latencyMs }

  /** An OpObserver that keeps the latency, then tells `next`. */
  recordAnd (next: OpObserver): OpObserver {
    return (op, latencyMs, error, siblings) => {
      this.samples[this.count++ % LATENCY_SAMPLES] = latencyMs
      next(op, latencyMs, error, siblings)
    }
  }

  /** This peer's figures, from its replication counters and its engine. */
  info (kv: { readonly id: string; readonly stats: KvStats }, engine: StorageEngine): PeerInfo {
    const n = Math.min(this.count, LATENCY_SAMPLES)
    const sorted = Array.from(this.samples.subarray(0, n)).sort((a, b) => a - b)
    const at = (q: number): number => n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(q * n))]!
    return { id: kv.id, keys: engine.size, walBytes: engine.walBytes(), stats: kv.stats, ops: this.count, latency: { samples: n, p50: at(0.5), p99: at(0.99) } }
  }
}

/** Another member's figures (or this peer's, from `self`). Malformed replies become DecodeError. */
export async function peerInfo (kv: Pick<KvNode, 'id' | 'ask'>, self: () => PeerInfo, id: string, signal?: AbortSignal): Promise<PeerInfo> {
  if (id === kv.id) return self()
  const reply = await kv.ask(id, { type: 'info' }, signal)
  if (reply.type !== 'info') throw replyError(id, reply, 'get')
  return parseInfo(id, reply.json)
}

/** A remote info reply, checked field by field: numbers that are not finite become 0. */
export function parseInfo (id: string, json: string): PeerInfo {
  const raw = parseJson(json, 'info reply')
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>
  const num = (v: unknown): number => typeof v === 'number' && Number.isFinite(v) ? v : 0
  const stats = (typeof o.stats === 'object' && o.stats !== null ? o.stats : {}) as Record<string, unknown>
  const latency = (typeof o.latency === 'object' && o.latency !== null ? o.latency : {}) as Record<string, unknown>
  const kvStats = Object.fromEntries(STAT_NAMES.map(k => [k, num(stats[k])])) as unknown as KvStats
  return { id, keys: num(o.keys), walBytes: num(o.walBytes), stats: kvStats, ops: num(o.ops), latency: { samples: num(latency.samples), p50: num(latency.p50), p99: num(latency.p99) } }
}
