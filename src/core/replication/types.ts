/**
 * The replication module's public shapes: the options of client reads and writes, their results, the change
 * events watchers get, and the counters a replica keeps. Shared by the state machine (replication.ts), its
 * Promise facade (kv/node.ts) and the HTTP API.
 */
import type { KeyState } from '../version/dvv.js'
import type { Reason } from '../ring/ring.js'

export interface ReadOptions {
  /** Replies to wait for (1..N); default the mesh's R. */
  r?: number
  /** Primaries only (no fallbacks). */
  strict?: boolean
  signal?: AbortSignal
}

export interface WriteOptions {
  /** The context of an earlier get: the write supersedes what that read saw. */
  context?: string
  /** Acknowledgements to wait for (1..N); default the mesh's W. */
  w?: number
  /** Durable replicas (Node peers) among them, at least the mesh's `durableAcks` (the default). */
  dw?: number
  strict?: boolean
  /** Last-writer-wins by hybrid logical clock instead of keeping siblings. */
  lww?: boolean
  /** Expire the key this long after its last write (puts only). */
  ttlMs?: number
  signal?: AbortSignal
}

export interface SiblingView {
  readonly value: Uint8Array
  /** Hybrid logical clock time of the write: wall ms and logical counter. */
  readonly wall: number
  readonly logical: number
  /** The replica that coordinated the write and its counter (the dot). */
  readonly replica: string
  readonly counter: number
}

export interface GetResult {
  readonly key: string
  /** Live values: none if the key is missing or deleted, more than one for concurrent writes (siblings). */
  readonly values: readonly Uint8Array[]
  readonly siblings: readonly SiblingView[]
  /** Opaque causal context: pass it to the next put or delete of the key. */
  readonly context: string
  /** Whether any replica had a tombstone and no value: the key was deleted. */
  readonly deleted: boolean
  /** How many replicas answered before this result was returned. */
  readonly replies: number
}

export interface PutResult {
  readonly key: string
  /** Context of the written version: a put with it supersedes this write. */
  readonly context: string
  /** Replicas that acknowledged before the result was returned (at least W). */
  readonly acks: number
}

export interface ReplicaView {
  readonly id: string
  readonly role: 'primary' | 'fallback'
  readonly hintFor?: string
  readonly up: boolean
  /** Where the replica lives and whether its storage is durable (a Node peer) or volatile (a tab). */
  readonly location: string
  readonly durable: boolean
  /** Why it was chosen: a primary at a new location, one at a repeated location (fewer locations than N,
   * or a durable place to fill), or a fallback standing in for a down primary. */
  readonly reason: Reason | 'fallback'
  /** The replica's state of the key (null if it holds none), or undefined with `error` if it did not answer. */
  readonly state?: KeyState | null
  readonly error?: string
}

export interface KvStats {
  puts: number
  gets: number
  deletes: number
  forwarded: number
  quorumFailures: number
  readRepairs: number
  hintsPending: number
  /** Keys whose credits ran out here, waiting for an expiry check (at most EXPIRY_CHECKS_MAX run at once, replication.ts). */
  expiryChecksWaiting: number
  handedOff: number
  dropped: number
  syncRounds: number
  syncRepairs: number
  reaped: number
  badRequests: number
  /** Requests also sent to a stand-in because a replica was slow or failed (hedged requests). */
  hedged: number
  /**
   * Expiries put off because another replica of the key was degraded or did not answer the expiry check
   * (until DETECTOR_STRETCH TTLs after the last beat), or every one that answered was, or one could not be
   * asked because this replica's own link to it was full (expiry.ts).
   */
  expiryPostponedDegraded: number
  /**
   * Heartbeats that only refreshed their service's record (replication/refresh.ts), each counted once on
   * every replica that took it: by the coordinator, and by each replica that answered the refresh.
   */
  refreshes: number
}

/** A change this peer made: a write it coordinated, or an expiry by its TTL sweep. */
export interface ChangeEvent {
  readonly type: 'put' | 'delete' | 'expired'
  readonly key: string
  /** This peer (the coordinator or the replica whose sweep expired the key). */
  readonly replica: string
  /** When, by the write's hybrid logical clock (wall ms). */
  readonly wall: number
  /** The key's state here before the change (undefined: absent). */
  readonly prior: KeyState | undefined
  /** The key's state after it. */
  readonly state: KeyState
}

export interface KvEvents extends Record<string, unknown> {
  change: ChangeEvent
}

export interface SyncResult {
  readonly peer: string
  readonly equal: boolean
  readonly pushed: number
  readonly pulled: number
}

export interface Held {
  readonly state: KeyState
  readonly ttlMs: number
}

