/**
 * Heartbeats that refresh instead of writing (issue 16: a beat that only says its service is alive should
 * cost less than a general write). A service beats `heartbeat/<id>` with the same record every time (a
 * beat without metadata reuses one record per TTL), so most beats change nothing but the key's TTL credits.
 * When the coordinator — a replica of the key — holds the key alive in one version whose record has the very
 * bytes of the beat and the same TTL, the beat is a refresh:
 *
 * - the coordinator gives the key full credits (TtlClock.refresh) and logs nothing: no new dot, no log
 *   record, no fsync of its own, no anti-entropy digest to update, no change event (the feed never reported
 *   refreshes);
 * - the other replicas get a 'refresh' request (the key, the 64-bit anti-entropy digest of that version,
 *   kv/digest.ts, the beat's hybrid-logical timestamp and the TTL) instead of the state: a replica that
 *   holds exactly that version
 *   with that TTL refreshes it likewise and answers 'ok' once that version is durable there; one that holds
 *   another version (it missed a write, or is a fallback new to the key) answers 'stale', and a peer older
 *   than refreshes ERR_UNSUPPORTED: either then gets the state itself, and its answer counts instead (a
 *   peer that answered ERR_UNSUPPORTED is remembered, ReplicaState.noRefresh, and beats to keys it
 *   replicates are written, not refreshed, meanwhile: only writes renew its credits);
 * - W and the durable acknowledgements count as for a write: an acknowledged refresh means W replicas,
 *   `dw` of them durable, hold the service's record durably and gave it a full TTL from the beat.
 *
 * What a refresh is not: it is not logged, so a restarted replica does not know it happened. That costs
 * nothing the TTL clock needs (recovery gives every TTL key full credits from the restart), and each replica
 * remembers its newest refresh per key in memory (`refreshedWall`), which the services listing shows as the
 * last beat and which the expiry check asks the other replicas for ('beat-check', expiry.ts): a replica that
 * missed the refreshes does not expire a service that the others saw beat within its TTL. To keep the record's
 * own timestamp (the last beat a restarted replica knows of, and `replica` in the listing) from growing old,
 * a beat whose record was written REFRESH_REWRITE_MS or more ago is written again as usual.
 */
import { isHeartbeatKey } from '../kv/heartbeat.js'
import type { KvReply } from '../kv/messages.js'
import { type KeyState, newestTs } from '../version/dvv.js'
import type { Hlc } from '../version/hlc.js'
import type { VersionVector } from '../version/vv.js'
import type { ReplicaState } from './replica-state.js'

/** A beat whose record was written this long ago (by its timestamp) or longer is written again. */
export const REFRESH_REWRITE_MS = 60_000

function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * The beat's timestamp if a write at this replica (the coordinator) may be a refresh: a last-writer-wins
 * put of a heartbeat key without a context, of the very bytes the key holds alive here in one version with
 * the same TTL, written less than REFRESH_REWRITE_MS ago, none of whose `targets` (the other replicas) is
 * known to predate refreshes. Null: an ordinary write.
 */
export function refreshable (s: ReplicaState, key: string, held: KeyState | undefined, value: Uint8Array | null, context: VersionVector, ts: Hlc | null, options: { lww?: boolean; ttlMs?: number }, targets: readonly string[]): Hlc | null {
  if (value === null || options.lww !== true || held === undefined || !isHeartbeatKey(key)) return null
  if (context.length !== 0 || ts !== null) return null
  // A replica older than refreshes gets writes: only those renew its credits.
  if (s.noRefresh.size > 0 && targets.some(id => s.noRefresh.has(id, s.nowMs))) return null
  const ttlMs = options.ttlMs ?? 0
  if (ttlMs <= 0 || s.engine.ttl(key) !== ttlMs) return null
  if (held.siblings.length !== 1) return null
  const stored = held.siblings[0]!.value
  if (stored === null || !bytesEqual(stored, value)) return null
  const now = s.engine.hlc.now()
  if (now.wall - (newestTs(held)?.wall ?? 0) >= REFRESH_REWRITE_MS) return null
  return now
}

/** A replica's answer to a refresh that asks for the state instead: another version held, or a peer that
 * predates refreshes. */
export function isStale (reply: KvReply): boolean {
  return reply.type === 'stale' || (reply.type === 'error' && reply.code === 'ERR_UNSUPPORTED')
}
