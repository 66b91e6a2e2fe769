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
 *   holds exactly that version with that TTL refreshes it likewise and answers 'ok' once that version is
 *   durable there;
 * - a replica that does not refresh it — it holds another version (it missed a write, or holds a newer one,
 *   say an expiry the coordinator missed), or none (a fallback), or another TTL, or the timestamp is beyond
 *   the clock drift it accepts — answers with
 *   the state it holds, and a peer older than refreshes answers ERR_UNSUPPORTED: the coordinator then
 *   merges that state and writes the beat after all (a new dot, to every replica, newer than anything held),
 *   and that write reports the beat's outcome unless the refresh's quorum already had; a peer that answered
 *   ERR_UNSUPPORTED is remembered (ReplicaState.noRefresh) and beats to keys it replicates are written
 *   meanwhile, since only writes renew its credits; a refresh target that fails or is slower than its hedge
 *   delay (latency.ts), when a stand-in could be asked, gets the beat written too, with the write's own
 *   stand-ins (without one nothing more is sent, as for a write);
 * - W and the durable acknowledgements count as for a write: an acknowledged refresh means W replicas,
 *   `dw` of them durable, hold the service's record durably and gave it a full TTL from the beat.
 *
 * What a refresh is not: it is not logged, so a restarted replica does not know it happened. That costs
 * nothing the TTL clock needs (recovery gives every TTL key full credits from the restart), and each replica
 * remembers the newest refresh it knows of per key in memory (`refreshedWall`: taken itself, or learnt in an
 * expiry check), which the services listing shows as the last beat and which the expiry check asks the other
 * replicas for ('beat-check', expiry.ts): a replica that missed the refreshes does not expire a service that
 * another saw beat within its TTL. To keep the record's own timestamp (the last beat a restarted replica
 * knows of, and `replica` in the listing) from growing old, a beat whose record was written
 * REFRESH_REWRITE_MS or more ago is written again as usual.
 *
 * The one case that evidence does not cover: a replica that missed the refreshes (cut off for a while) runs
 * out of credits within one beat interval after every other replica that took them restarted (each lost its
 * refresh times, and its recovered version is no newer). It then expires the service, and the next beat
 * revives it (a `revived` event). With beats every second and a 3 s TTL that needs two faults within a
 * second; when every beat was a write, the restarted replicas held a newer version instead.
 */
import { isHeartbeatKey } from '../kv/heartbeat.js'
import { type KvReply, isUnsupported } from '../kv/messages.js'
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

/** Whether `held` is one version, alive (not deleted), of exactly the bytes `value`. */
export function holdsRecord (held: KeyState, value: Uint8Array): boolean {
  if (held.siblings.length !== 1) return false
  const stored = held.siblings[0]!.value
  return stored !== null && bytesEqual(stored, value)
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
  if (!holdsRecord(held, value)) return null
  const now = s.engine.hlc.now()
  if (now.wall - (newestTs(held)?.wall ?? 0) >= REFRESH_REWRITE_MS) return null
  return now
}

/** A replica's answer to a refresh that did not refresh it: what it holds instead ('state'), or a peer that
 * predates refreshes (ERR_UNSUPPORTED). The coordinator then writes the beat. */
export function notRefreshed (reply: KvReply): boolean {
  return reply.type === 'state' || isUnsupported(reply)
}
