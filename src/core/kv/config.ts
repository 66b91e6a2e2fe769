/**
 * Replication settings of a mesh. N is per mesh (every peer must use the same, or they disagree on who holds
 * what); R and W are defaults a request may override. Every loop and batch has a bound here.
 */
import { integer } from '../config.js'
import { ConfigError } from '../errors.js'

export interface KvConfig {
  /** Replicas per key. Default 3. Must be the same on every peer of a mesh. */
  n: number
  /** Replies a read waits for (1..n). Default 2. R + W > N makes a read see the latest acknowledged write
   * while no member fails. */
  r: number
  /** Acknowledgements a write waits for (1..n). Default 2. */
  w: number
  /** Only primaries count toward a quorum: no fallbacks, no hints. Default false (sloppy quorum). */
  strictQuorum: boolean
  /** How long a coordinator waits for one replica's answer. Default 10 s. */
  requestTimeoutMs: number
  /** Requests outstanding to one peer before new ones fail with OverloadedError. Default 4096. */
  inFlightMax: number
  /** Largest message on the wire (one key state plus framing); larger key states cannot be replicated, so
   * the storage engine's record limit is lowered to fit. Default 16 MiB. */
  messageBytesMax: number
  /** Period of the handoff loop, which delivers keys held by a peer that is not their primary (hints,
   * rebalancing) and reaps tombstones. Default 1 s. */
  handoffIntervalMs: number
  /** Keys per handoff or transfer message. Default 256. */
  handoffBatchKeys: number
  /** Keys the handoff loop moves per turn (the transfer rate limit). Default 4096. */
  handoffKeysPerTurn: number
  /** Period of anti-entropy: each turn compares hash trees with the next replica peer, round-robin.
   * Default 5 s. */
  syncIntervalMs: number
  /** Keys one anti-entropy round may compare and repair (its rate limit); the rest wait for the next round.
   * The side answering also looks at no more than SYNC_WALK_FACTOR (4) times as many of its keys to find
   * them (or one whole segment, when that holds more). Default 8192. */
  syncKeysPerRound: number
  /** Keys of the key index rebuilt per tick after a ring change (the longest the event loop is held for it:
   * about 1.7 us a key here, so 14 ms at the default); the rest follow on the next ticks. Default 8192. */
  indexRebuildKeysPerTurn: number
  /** A tombstone is reaped once every primary holds it and it is this old. Default 1 hour: a fallback
   * holding an older value must deliver it within this time, or the delete could be undone. */
  tombstoneGraceMs: number
  /** Durable members (Node peers) among every key's N primaries, capped by how many the ring has. Default 1.
   * Placement: must be the same on every peer of a mesh. */
  minDurable: number
  /** A volatile member (a tab) that announced its leave is down at once but keeps its ring tokens this long:
   * fallbacks hold its share meanwhile (hinted handoff), and a reload, or the same browser opening the page
   * again, finds the ring as it left it, so no range moves twice. Once it ends the member leaves the ring and
   * its ranges move to their new owners. Durable members leave the ring at once. Default 30 s; 0: at once. */
  leaveGraceMs: number
  /** Durable replicas that must have made a write durable before it is acknowledged, in addition to W; a
   * request may raise it (`dw`) but not lower it. Must be the same on every peer of a mesh (a replica
   * refuses a forwarded write's `dw` below its own). Default 1: tabs alone never acknowledge a write. 0 lets a
   * mesh of tabs only acknowledge writes. */
  durableAcks: number
  /** A not-found answer counts toward R only once every replica has answered (Riak's notfound_ok=false):
   * a replica that lacks a key (a tab that just joined, a peer that lost its data) does not hide a value
   * another replica holds. Default false; true makes reads of missing keys return after R answers. */
  notFoundOk: boolean
  /**
   * Whom a read asks. false (the default): this replica and as many others as R needs, primaries before
   * fallbacks and durable ones first; the rest of the preference list only when an asked one fails or is
   * slow (before any fallback stand-in; a strict read too) or when the answers cannot decide: every answer
   * not-found (with notFoundOk false), or too few. Cassandra reads so; it spares a third of a 3-replica
   * read's messages. Read repair then covers the replicas asked. true: every read asks all N at once
   * (Dynamo, Riak), so read repair reaches every replica a read passes; hedgeMultiplier 0 does the same.
   */
  readAll: boolean
  /** A replica that has not answered after this multiple of its observed p99 round trip gets a hedge: the
   * request also goes to the next member of the preference list (so does one that failed). Default 4; 0
   * turns hedging off (and stand-ins for failed replicas). */
  hedgeMultiplier: number
  /** Bounds of that wait. Defaults 50 ms and 250 ms (a browser's WebRTC round trip is a few ms; a replica that
   * needs longer than that is most likely a tab gone quiet); for a replica with fewer than 16 observed round trips the
   * p99 of all replicas' round trips stands in for its own. */
  hedgeMinMs: number
  hedgeMaxMs: number
  /**
   * Admission control: client operations (gets, puts, deletes, heartbeats) this peer has in flight at once,
   * coordinated or forwarded. Past it a new one fails at once with OverloadedError (HTTP 503 ERR_OVERLOADED
   * with Retry-After) instead of queueing behind the others until it is too late to matter. Default 4096.
   */
  admitOpsMax: number
  /** Of those, heartbeats: past it a beat is refused the same way, so a flood of beats cannot starve other
   * operations and a beat is never queued until it arrives after its service expired. Default 1024. */
  admitBeatsMax: number
  /**
   * A heartbeat refresh (src/core/replication/refresh.ts) waits up to this long for other messages to the same
   * replica before its frame goes out, so the refreshes of many beats share frames, socket writes and
   * encryption instead of costing one frame per event-loop turn: about 16% less CPU per beat at 4,000 beats/s,
   * for a few milliseconds more on each beat's acknowledgement. 0 sends each at the end of its turn, as every
   * other request goes. Default 5 ms in Node peers; tabs use 0 (a hidden tab's timers are throttled to once a
   * second). At most 1000.
   */
  refreshCoalesceMs: number
}

export function defaultKvConfig (): KvConfig {
  return {
    n: 3,
    r: 2,
    w: 2,
    strictQuorum: false,
    requestTimeoutMs: 10_000,
    inFlightMax: 4096,
    messageBytesMax: 16 * 1024 * 1024,
    handoffIntervalMs: 1000,
    handoffBatchKeys: 256,
    handoffKeysPerTurn: 4096,
    syncIntervalMs: 5000,
    syncKeysPerRound: 8192,
    indexRebuildKeysPerTurn: 8192,
    tombstoneGraceMs: 3_600_000,
    minDurable: 1,
    leaveGraceMs: 30_000,
    durableAcks: 1,
    notFoundOk: false,
    readAll: false,
    hedgeMultiplier: 4,
    hedgeMinMs: 50,
    hedgeMaxMs: 250,
    admitOpsMax: 4096,
    admitBeatsMax: 1024,
    refreshCoalesceMs: 5
  }
}

export const N_MAX = 16

export function validateKvConfig (c: KvConfig): KvConfig {
  integer('n', c.n, 1, N_MAX)
  integer('r', c.r, 1, c.n)
  integer('w', c.w, 1, c.n)
  if (typeof c.strictQuorum !== 'boolean') throw new ConfigError('strictQuorum', 'must be a boolean')
  integer('requestTimeoutMs', c.requestTimeoutMs, 1, 3_600_000)
  integer('inFlightMax', c.inFlightMax, 1, 1_000_000)
  integer('messageBytesMax', c.messageBytesMax, 1024 * 1024, 256 * 1024 * 1024)
  integer('handoffIntervalMs', c.handoffIntervalMs, 1, 3_600_000)
  integer('handoffBatchKeys', c.handoffBatchKeys, 1, 100_000)
  integer('handoffKeysPerTurn', c.handoffKeysPerTurn, 1, 10_000_000)
  integer('syncIntervalMs', c.syncIntervalMs, 1, 86_400_000)
  integer('syncKeysPerRound', c.syncKeysPerRound, 1, 10_000_000)
  integer('indexRebuildKeysPerTurn', c.indexRebuildKeysPerTurn, 1, 10_000_000)
  integer('tombstoneGraceMs', c.tombstoneGraceMs, 0, Number.MAX_SAFE_INTEGER)
  integer('minDurable', c.minDurable, 0, c.n)
  integer('leaveGraceMs', c.leaveGraceMs, 0, 86_400_000)
  integer('durableAcks', c.durableAcks, 0, c.n)
  if (typeof c.notFoundOk !== 'boolean') throw new ConfigError('notFoundOk', 'must be a boolean')
  if (typeof c.readAll !== 'boolean') throw new ConfigError('readAll', 'must be a boolean')
  if (typeof c.hedgeMultiplier !== 'number' || !Number.isFinite(c.hedgeMultiplier) || c.hedgeMultiplier < 0 || c.hedgeMultiplier > 100) throw new ConfigError('hedgeMultiplier', `must be a number in [0, 100], got ${String(c.hedgeMultiplier)}`)
  integer('hedgeMinMs', c.hedgeMinMs, 1, 3_600_000)
  integer('hedgeMaxMs', c.hedgeMaxMs, c.hedgeMinMs, 3_600_000)
  integer('admitOpsMax', c.admitOpsMax, 1, 1_000_000)
  integer('admitBeatsMax', c.admitBeatsMax, 1, c.admitOpsMax)
  integer('refreshCoalesceMs', c.refreshCoalesceMs, 0, 1000)
  return c
}
