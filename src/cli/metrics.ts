/**
 * A Node peer's Prometheus metrics (`GET /metrics`, text exposition by prom-client), one Registry per peer,
 * never prom-client's global one. Two kinds of figures:
 *
 * - Observed as they happen, through hooks that cost nothing when unset: every client operation's outcome
 *   and latency and a read's siblings (PeerOptions.observeOp, told by KvNode), and every WAL sync's
 *   duration (FileWalOptions.observeSyncMs). These feed histograms and the request counter here.
 * - Read at scrape time from the counters the peer keeps anyway (the same figures `GET /stats` shows:
 *   replication, storage, SWIM, RPC, the watch feed, the relay), by `collect()` callbacks: nothing is
 *   counted twice, and the hot paths pay nothing for them.
 *
 * Every family is `meshkv_*` with its unit last (`_seconds`, `_bytes`, `_total` for counters), plus
 * prom-client's default process metrics under the same prefix. README "Metrics" lists them all.
 *
 * Adding a collector (e.g. the HTTP API's refusal counters): create it with `registers: [metrics.registry]`.
 * For a count kept elsewhere, copy it at scrape time rather than counting twice:
 *
 *     counterFrom(metrics.registry, 'meshkv_http_refusals_total', 'HTTP requests refused, by reason',
 *       () => ({ origin: refusals.origin, host: refusals.host }), 'reason')
 *
 * or, for a count that only exists as events, a plain `new Counter({ ..., registers: [metrics.registry] })`
 * incremented where it happens.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ClientOp, OpObserver } from '../core/kv/node.js'
import type { MemberState } from '../core/membership/swim.js'
import type { MeshPeer as Peer } from '../peer.js'
import { WATCH_TOPIC } from '../services/watch.js'

export const METRIC_PREFIX = 'meshkv_'

/**
 * Buckets of `meshkv_request_duration_seconds`, in seconds: 0.5 ms (a put on one Node peer with async
 * durability) to 30 s (past the request deadline, 10 s by default, with a dial retry), roughly 1-2.5-5 per
 * decade, so the quantiles Riak's `node_get_fsm_time` / `node_put_fsm_time` report (median, 95th, 99th,
 * 100th) come out within a bucket's width by `histogram_quantile()`.
 */
export const REQUEST_SECONDS_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Buckets of `meshkv_wal_fsync_duration_seconds`: 0.1 ms (a page-cache-backed or battery-backed disk) to
 * 10 s (a stalled disk, which the operator must see). */
export const FSYNC_SECONDS_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]
/** Buckets of `meshkv_get_siblings` (Riak's node_get_fsm_siblings): 1 is the norm; the engine's sibling cap
 * is 100 by default (siblingsMax). */
export const SIBLINGS_BUCKETS: readonly number[] = [1, 2, 3, 4, 5, 10, 20, 50, 100]

export const CLIENT_OPS: readonly ClientOp[] = ['get', 'put', 'delete', 'heartbeat']
export const MEMBER_STATES: readonly MemberState[] = ['alive', 'suspect', 'dead', 'left']

/** How a client operation ended: the `outcome` label. */
export type Outcome = 'ok' | 'quorum' | 'no_durable_replica' | 'timeout' | 'unreachable' | 'overloaded' | 'unavailable' | 'invalid' | 'sibling_limit' | 'aborted' | 'error'
export const OUTCOMES: readonly Outcome[] = ['ok', 'quorum', 'no_durable_replica', 'timeout', 'unreachable', 'overloaded', 'unavailable', 'invalid', 'sibling_limit', 'aborted', 'error']

const OUTCOME_BY_CODE: Readonly<Record<string, Outcome>> = {
  ERR_QUORUM: 'quorum',
  ERR_NO_DURABLE_REPLICA: 'no_durable_replica',
  ERR_TIMEOUT: 'timeout',
  ERR_UNREACHABLE: 'unreachable',
  ERR_OVERLOADED: 'overloaded',
  ERR_LEAVING: 'unavailable',
  ERR_CLOSED: 'unavailable',
  ERR_INVALID_KEY: 'invalid',
  ERR_INVALID_CONTEXT: 'invalid',
  ERR_CONFIG: 'invalid',
  ERR_DECODE: 'invalid',
  ERR_VALUE_TOO_LARGE: 'invalid',
  ERR_RECORD_TOO_LARGE: 'invalid',
  ERR_SIBLING_LIMIT: 'sibling_limit',
  ERR_ABORTED: 'aborted'
}

/**
 * The outcome label of an operation's error (null: success), by the error's code; a replica's error relayed
 * by another peer (ERR_REMOTE) by the code it carries. A bounded set (OUTCOMES): anything else is `error`.
 */
export function outcomeOf (error: Error | null): Outcome {
  if (error === null) return 'ok'
  const e = error as { code?: unknown; remoteCode?: unknown }
  const code = e.code === 'ERR_REMOTE' ? e.remoteCode : e.code
  return (typeof code === 'string' ? OUTCOME_BY_CODE[code] : undefined) ?? 'error'
}

/** Members per state, every state present (0 if none), so each series exists from the first scrape. */
export function membersByState (members: ReadonlyArray<{ readonly state: MemberState }>): Record<MemberState, number> {
  const out: Record<MemberState, number> = { alive: 0, suspect: 0, dead: 0, left: 0 }
  for (const m of members) out[m.state]++
  return out
}

/** A counter copied at scrape time from a count kept elsewhere (one series, or one per value of `label`). */
export function counterFrom (registry: Registry, name: string, help: string, read: () => number | Readonly<Record<string, number>>, label?: string): Counter {
  return new Counter({
    name,
    help,
    labelNames: label === undefined ? [] : [label],
    registers: [registry],
    collect () {
      this.reset()
      const value = read()
      if (typeof value === 'number') this.inc(value)
      else for (const [v, n] of Object.entries(value)) this.inc({ [label!]: v }, n)
    }
  })
}

/** A gauge read at scrape time (one series, or one per value of `label`). */
export function gaugeFrom (registry: Registry, name: string, help: string, read: () => number | Readonly<Record<string, number>>, label?: string): Gauge {
  return new Gauge({
    name,
    help,
    labelNames: label === undefined ? [] : [label],
    registers: [registry],
    collect () {
      const value = read()
      if (typeof value === 'number') this.set(value)
      else for (const [v, n] of Object.entries(value)) this.set({ [label!]: v }, n)
    }
  })
}

interface OpSeries {
  readonly requests: Counter.Internal
  readonly duration: Histogram.Internal<'op' | 'outcome'>
}

/**
 * One peer's registry. Create it before the peer, hand `observeOp` to createPeer and `observeSyncMs` to the
 * FileWal, then `attach(peer)` once the peer exists; serve `registry.metrics()` with `registry.contentType`.
 */
export class PeerMetrics {
  readonly registry = new Registry()
  private readonly requests: Counter<'op' | 'outcome'>
  private readonly duration: Histogram<'op' | 'outcome'>
  private readonly siblings: Histogram
  private readonly fsync: Histogram
  /** Label children by op and outcome, made on first use: an observation looks them up, no allocation. */
  private readonly series = new Map<ClientOp, Map<Outcome, OpSeries>>()
  private attached = false

  constructor (options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX })
    this.requests = new Counter({
      name: 'meshkv_requests_total',
      help: 'Client operations (get, put, delete, heartbeat) through this peer\'s API, coordinated here or forwarded, by how they ended',
      labelNames: ['op', 'outcome'],
      registers: [this.registry]
    })
    this.duration = new Histogram({
      name: 'meshkv_request_duration_seconds',
      help: 'Latency of client operations through this peer, from the call to its result or error (Riak\'s node_get_fsm_time / node_put_fsm_time), by op and outcome',
      labelNames: ['op', 'outcome'],
      buckets: [...REQUEST_SECONDS_BUCKETS],
      registers: [this.registry]
    })
    this.siblings = new Histogram({
      name: 'meshkv_get_siblings',
      help: 'Live values (siblings) a successful get returned, for gets that found the key (Riak\'s node_get_fsm_siblings)',
      buckets: [...SIBLINGS_BUCKETS],
      registers: [this.registry]
    })
    this.fsync = new Histogram({
      name: 'meshkv_wal_fsync_duration_seconds',
      help: 'Duration of each write-ahead-log sync (fdatasync of the segment, with the fsyncs of sealed segments and the directory it waits for); one per group commit or background sync',
      buckets: [...FSYNC_SECONDS_BUCKETS],
      registers: [this.registry]
    })
    // Every op's successful series exists from the start (0), so rates work before the first failure.
    for (const op of CLIENT_OPS) this.child(op, 'ok')
  }

  private child (op: ClientOp, outcome: Outcome): OpSeries {
    let byOutcome = this.series.get(op)
    if (byOutcome === undefined) this.series.set(op, byOutcome = new Map())
    let s = byOutcome.get(outcome)
    if (s === undefined) {
      const labels = { op, outcome }
      s = { requests: this.requests.labels(labels), duration: this.duration.labels(labels) }
      s.requests.inc(0)
      this.duration.zero(labels)
      byOutcome.set(outcome, s)
    }
    return s
  }

  /** The OpObserver for PeerOptions.observeOp. */
  readonly observeOp: OpObserver = (op, latencyMs, error, siblings) => {
    const s = this.child(op, outcomeOf(error))
    s.requests.inc()
    s.duration.observe(latencyMs / 1000)
    if (siblings !== undefined) this.siblings.observe(siblings)
  }

  /** For FileWalOptions.observeSyncMs. */
  readonly observeSyncMs = (durationMs: number): void => { this.fsync.observe(durationMs / 1000) }

  /** The text exposition and its content type, for `GET /metrics`. */
  async render (): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }

  /**
   * Registers the figures read from the peer at scrape time. `relayReservationsMax`: the relay's limit, if
   * this peer runs one.
   */
  attach (peer: Peer, options: { relayReservationsMax?: number } = {}): void {
    if (this.attached) throw new Error('PeerMetrics.attach: already attached to a peer')
    this.attached = true
    const r = this.registry
    const kv = (): ReturnType<Peer['store']['stats']>['kv'] => peer.store.kv.stats
    const rpc = peer.store.kvRpc.stats
    const sync = peer.store.syncRpc.stats
    const swim = peer.membership.swim.stats
    const swimIo = peer.membership.stats
    const watch = peer.watcher.stats
    const engine = peer.engine

    // Replication (Dynamo §4.5-4.7).
    counterFrom(r, 'meshkv_forwarded_requests_total', 'Client operations this peer forwarded to a replica of the key to coordinate', () => kv().forwarded)
    counterFrom(r, 'meshkv_quorum_failures_total', 'Operations coordinated or forwarded here that did not reach their quorum (R, W or durable acks)', () => kv().quorumFailures)
    counterFrom(r, 'meshkv_hedged_requests_total', 'Replica requests also sent to a stand-in because a replica was slow or failed', () => kv().hedged)
    counterFrom(r, 'meshkv_heartbeat_refreshes_total', 'Heartbeats that only refreshed their service\'s record (no write), counted on every replica that took one', () => kv().refreshes)
    counterFrom(r, 'meshkv_read_repairs_total', 'Replicas sent the merged state after a read found them behind (read repair)', () => kv().readRepairs)
    gaugeFrom(r, 'meshkv_expiry_checks_waiting', 'Keys whose TTL credits ran out here, waiting for their expiry check (at most 1,024 checks run at once)', () => kv().expiryChecksWaiting)
    gaugeFrom(r, 'meshkv_hints_pending', 'Keys this peer holds for other primaries (sloppy-quorum hints, ranges that moved), waiting for handoff', () => kv().hintsPending)
    counterFrom(r, 'meshkv_handoff_delivered_total', 'Key copies this peer delivered to their primaries: hints, moved ranges and a leave\'s handoff', () => kv().handedOff)
    counterFrom(r, 'meshkv_handoff_dropped_total', 'Keys dropped here once every primary acknowledged them (after handoff)', () => kv().dropped)
    counterFrom(r, 'meshkv_anti_entropy_rounds_total', 'Anti-entropy (Merkle tree) exchanges this peer started', () => kv().syncRounds)
    counterFrom(r, 'meshkv_anti_entropy_repairs_total', 'Keys repaired (pushed or pulled) by anti-entropy', () => kv().syncRepairs)
    counterFrom(r, 'meshkv_tombstones_reaped_total', 'Tombstones removed once every primary held them and the grace period had passed', () => kv().reaped)
    counterFrom(r, 'meshkv_replica_errors_total', 'Requests from other peers this replica answered with an error (other than a quorum it could not reach)', () => kv().badRequests)

    // Storage.
    gaugeFrom(r, 'meshkv_client_ops_in_flight', 'Client operations (gets, puts, deletes, heartbeats) in flight at this peer, against kv.admit-ops-max', () => peer.store.kv.admission.inFlight)
    counterFrom(r, 'meshkv_beats_admitted_urgent_total', 'Beats taken past kv.admit-beats-max because their service was a TTL past its last beat here, had expired, or was new (no record at this replica)', () => peer.store.kv.admission.urgentAdmitted)
    counterFrom(r, 'meshkv_beats_admitted_urgent_new_total', 'Of the urgent beats, first beats of services new here (no record at this replica; at most a quarter of the urgent lane at once)', () => peer.store.kv.admission.urgentNewAdmitted)
    counterFrom(r, 'meshkv_beats_refused_refreshed_total', 'Beats refused for overload that still renewed their key here (this peer held it alive with the same record and TTL), so a service only this peer kept from beating is not expired', () => peer.store.kv.admission.refusedRefreshed)
    gaugeFrom(r, 'meshkv_detector_degraded', 'Whether this peer\'s failure detector is degraded (1): its own event loop, log syncs or sweeps are late, it refuses beats, or a sweep found a mass expiry (over 10% of the services\' keys it holds due at once), so its TTLs run slower', () => peer.store.kv.detector.state === 'degraded' ? 1 : 0)
    counterFrom(r, 'meshkv_detector_held_sweeps_total', 'TTL sweeps held back (no credit taken) while the detector was degraded', () => peer.store.kv.detector.heldSweeps)
    counterFrom(r, 'meshkv_expiries_postponed_degraded_total', 'Expiries put off because another replica of the key, or this peer\'s own detector (a service\'s key), was degraded or another did not answer (until 4 TTLs after the last beat), or every one that answered was degraded, or one could not be asked (this peer\'s link to it was full)', () => kv().expiryPostponedDegraded)
    gaugeFrom(r, 'meshkv_keys', 'Keys held by this replica (tombstones included)', () => engine.size)
    counterFrom(r, 'meshkv_keys_expired_total', 'Keys (heartbeats) this replica\'s TTL sweep expired', () => engine.expiredCount)
    gaugeFrom(r, 'meshkv_wal_bytes', 'Write-ahead log on disk: the last snapshot and the segments after it', () => engine.walStats().bytes)
    counterFrom(r, 'meshkv_wal_appended_bytes_total', 'Bytes appended to the write-ahead log (record and sync-marker frames) since the peer started', () => engine.walStats().bytesAppended)
    counterFrom(r, 'meshkv_wal_records_total', 'Records appended to the write-ahead log since the peer started', () => engine.walStats().records)
    counterFrom(r, 'meshkv_wal_syncs_total', 'Write-ahead log syncs (one per group commit)', () => engine.walStats().syncs)
    counterFrom(r, 'meshkv_wal_compactions_total', 'Compactions (snapshot written, older segments dropped) that finished', () => engine.walStats().compactions)
    gaugeFrom(r, 'meshkv_store_memory_bytes', 'Estimated memory of the store (keys, values and per-key overhead), counted against the budget', () => engine.memoryBytes)
    gaugeFrom(r, 'meshkv_store_memory_budget_bytes', 'The store\'s memory budget (--memory-max-mb; 0: none)', () => engine.config.memoryBytesMax)
    counterFrom(r, 'meshkv_store_full_refusals_total', 'Writes (507 ERR_STORE_FULL) and replica merges refused because the store was past its budget', () => engine.storeFullCount)
    counterFrom(r, 'meshkv_wal_compaction_failures_total', 'Compactions that failed (the log keeps growing until one succeeds)', () => engine.walStats().compactionsFailed)

    // Membership (SWIM + Lifeguard).
    gaugeFrom(r, 'meshkv_members', 'Members in this peer\'s view, by state (this peer included)', () => membersByState(peer.members()), 'state')
    counterFrom(r, 'meshkv_swim_probes_total', 'SWIM probes (pings) this peer sent', () => swim.probes)
    counterFrom(r, 'meshkv_swim_probes_failed_total', 'SWIM probes that got no ack, directly or through others', () => swim.probesFailed)
    counterFrom(r, 'meshkv_swim_indirect_probes_total', 'SWIM indirect probes (ping-req through k members) this peer started', () => swim.indirectProbes)
    counterFrom(r, 'meshkv_swim_suspicions_total', 'Members this peer marked suspect', () => swim.suspicions)
    counterFrom(r, 'meshkv_swim_refutations_total', 'Suspicions of itself this peer refuted with a higher incarnation', () => swim.refutations)
    counterFrom(r, 'meshkv_swim_deaths_total', 'Members this peer declared or learned dead', () => swim.deaths)
    gaugeFrom(r, 'meshkv_swim_awareness', 'Lifeguard local health (0 healthy; higher stretches this peer\'s probe timeouts)', () => swim.awareness)
    counterFrom(r, 'meshkv_swim_incompatible_total', 'Members refused because their mesh-wide settings (N, min-durable, durable-acks, protocol, ring hash) differ from this peer\'s; once per member and reason', () => swimIo.incompatible)
    counterFrom(r, 'meshkv_swim_messages_sent_total', 'SWIM messages sent', () => swimIo.sent)
    counterFrom(r, 'meshkv_swim_messages_received_total', 'SWIM messages received', () => swimIo.received)
    counterFrom(r, 'meshkv_swim_messages_dropped_total', 'SWIM messages dropped unsent (full queue, no stream)', () => swimIo.dropped)

    // Protocols: bad input and refusals.
    counterFrom(r, 'meshkv_bad_messages_total', 'Malformed messages received (the sender\'s stream is reset or the message dropped), by protocol', () => ({
      kv: rpc.badMessages, sync: sync.badMessages, swim: swimIo.badMessages, watch: watch.badMessages, discovery: peer.discovery.dropped
    }), 'protocol')
    counterFrom(r, 'meshkv_overload_refusals_total', 'Requests refused because too many were in flight or queued (ERR_OVERLOADED), by protocol; client: this peer\'s admission control of client operations and heartbeats', () => ({ kv: rpc.overloaded, sync: sync.overloaded, client: peer.store.kv.admission.refused }), 'protocol')
    counterFrom(r, 'meshkv_refused_peers_total', 'Peers refused at the private mesh\'s handshake (wrong or missing mesh key), by protocol', () => ({ kv: rpc.refusedPeers, sync: sync.refusedPeers, swim: swimIo.refusedPeers }), 'protocol')
    counterFrom(r, 'meshkv_rpc_requests_total', 'Requests this peer sent to other peers, by protocol', () => ({ kv: rpc.requests, sync: sync.requests }), 'protocol')
    counterFrom(r, 'meshkv_rpc_timeouts_total', 'Requests to other peers that got no reply in time, by protocol', () => ({ kv: rpc.timeouts, sync: sync.timeouts }), 'protocol')
    counterFrom(r, 'meshkv_rpc_stream_errors_total', 'Streams to other peers that failed (dial, reset, closed), by protocol', () => ({ kv: rpc.streamErrors, sync: sync.streamErrors, swim: swimIo.streamErrors }), 'protocol')

    // The circuit relay for browser tabs.
    const relay = (peer.libp2p.services as { relay?: { reservations: { size: number } } }).relay
    gaugeFrom(r, 'meshkv_relay_reservations', 'Circuit-relay reservations (browser tabs) this peer holds now', () => relay?.reservations.size ?? 0)
    gaugeFrom(r, 'meshkv_relay_reservations_max', 'Circuit-relay reservations this peer accepts (0: no relay)', () => relay === undefined ? 0 : options.relayReservationsMax ?? 0)

    // The watch feed.
    counterFrom(r, 'meshkv_watch_events_published_total', 'Change events this peer published to the mesh\'s watch feed', () => watch.published)
    counterFrom(r, 'meshkv_watch_events_received_total', 'Change events received from other peers on the watch feed', () => watch.received)
    counterFrom(r, 'meshkv_watch_events_delivered_total', 'Change events handed to local watchers', () => watch.delivered)
    counterFrom(r, 'meshkv_watch_events_dropped_total', 'Change events dropped unpublished (the feed\'s queue was full)', () => watch.dropped)
    gaugeFrom(r, 'meshkv_watch_subscribers', 'Local watchers now (watch() callbacks, among them GET /watch streams)', () => peer.watcher.watching)
    gaugeFrom(r, 'meshkv_watch_peers', 'Other peers subscribed to the watch feed', () => peer.libp2p.services.pubsub.getSubscribers(WATCH_TOPIC).length)
  }
}
