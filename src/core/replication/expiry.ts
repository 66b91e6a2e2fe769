/**
 * TTL expiry across replicas (KnucklesDB's failure detector on a replicated store). The storage engine's
 * sweep finds a key whose credits ran out and hands it here before expiring it: a replica that was down or
 * restarting may have missed newer beats, so it first asks the key's other up replicas (a 'beat-check')
 * and merges anything newer (which refreshes the key). A beat that only refreshed the key (refresh.ts)
 * changed no version, so each answer also says when that replica last took a refresh of the key: one
 * within the TTL gives the key here the credits left of it instead. Only if there is neither does it
 * expire the key — a write with a new dot — and send the expiry to the other replicas once it is durable
 * (handoff and anti-entropy cover any that miss it).
 *
 * Expiry needs agreement (Lifeguard's local health awareness, across replicas): each answer also says whether
 * that replica's own failure detector is degraded (health.ts). A newer state from any replica, healthy or
 * degraded, is merged: a newer beat always refreshes. The key expires at once only if every other up
 * replica answered and is healthy (or there is no other up replica: a lone replica decides alone). If one
 * is degraded or did not answer — it may be taking the beats late, or turning them away under admission
 * control, as an overloaded coordinator does — the key is held until DETECTOR_STRETCH TTLs after its last
 * beat, not offered again before then (a write ends the hold); from then on one healthy answer
 * is enough. A replica whose own detector is degraded (health.ts, a mass expiry included) holds a service's
 * key the same way.
 * If every replica that answered is degraded, it waits at every sweep from then on, so a sick
 * replica's view never wins alone (`expiryPostponedDegraded` counts each hold and each wait). If none
 * answered, it waits at every sweep too, uncounted: cut off, it decides alone once SWIM declares them dead. A replica that is
 * itself degraded already stretches its own sweeps (health.ts). The trade-off: detection is delayed, not
 * lost — DETECTOR_STRETCH TTLs after the last beat plus a sweep and the check's round trip while one
 * replica is sick (up to DETECTOR_STRETCH sweeps more if this replica is itself degraded: its held-back
 * sweeps offer nothing), and while all the others are, until one is healthy again (HEALTH_RECOVERY_MS after
 * its signals recover). The hold is only as good as the replicas' view: a coordinator that is not one of the
 * key's replicas refuses beats unseen by them, which hold nothing on its account. A peer older than
 * 'beat-check' answers ERR_UNSUPPORTED and is asked 'expiry-check' (the check without refreshes); one older
 * than that is asked with a plain 'read' and counts as healthy, as every replica did before, so a
 * mixed-version mesh keeps expiring (each is asked its way at once until the membership changes, for a
 * minute at most: older-peers.ts). A replica that refuses the check as
 * overloaded (ERR_OVERLOADED) counts as degraded; another error reply counts as before (askExpiry).
 *
 * A replica this one could not even ask — its own link to it is full (src/services/rpc.ts refuses requests
 * past its in-flight or queued-bytes bound with OverloadedError, locally, before anything is sent) — is
 * neither a silent nor a degraded answer: nothing is known of it, and it is just the replica most likely to
 * hold the evidence (an overloaded coordinator notes the beats it refuses, and is the peer others send most
 * to). The expiry is then put off to the next sweep, and counted with the holds. The sweep that finds a whole
 * TTL's worth of keys due asks about all of them at once, so under overload this is what happens first: in
 * the heartbeat benchmark at 40,000 services, 10,265 of 25,939 expiry decisions had one replica unasked for
 * this reason, and expired on the other's healthy answer once the hold was over.
 */
import { OverloadedError, errorMessage } from '../errors.js'
import { isHeartbeatKey } from '../kv/heartbeat.js'
import { type Entry, type KvReply, isUnsupported } from '../kv/messages.js'
import { type KeyState, newestTs, stateEquals, sync } from '../version/dvv.js'
import { type Flow, all, persist, request } from './flow.js'
import { DETECTOR_STRETCH } from './health.js'
import type { ReplicaState } from './replica-state.js'

/** One replica's answer to an expiry check. */
interface ExpiryView {
  readonly state: KeyState | null
  readonly ttlMs: number
  readonly degraded: boolean
  /** Wall-clock ms of the newest refresh that replica took of the key (refresh.ts); 0: none, or not said. */
  readonly refreshedWall: number
}

/** An answer that carries no view of the key (an error reply). */
const NO_VIEW: ExpiryView = { state: null, ttlMs: 0, degraded: false, refreshedWall: 0 }
/** An ERR_OVERLOADED reply: no view, and counted as degraded. */
const OVERLOADED: ExpiryView = { state: null, ttlMs: 0, degraded: true, refreshedWall: 0 }

/**
 * Asks `id` for its state of `key` and its detector's health; throws if no answer came (unreachable, timed
 * out). A peer that predates 'expiry-check' is asked with 'read', and counts as healthy. ERR_OVERLOADED
 * counts as degraded. Another error reply (a state too large for a message) counts as it always did:
 * answered, with nothing newer and not degraded. Counting it as no answer would hold off, for as long as
 * that replica stays up, the expiry of a key whose state it can never send.
 */
function * askExpiry (s: ReplicaState, id: string, key: string): Flow<ExpiryView> {
  // 'beat-check' first: it also says when that replica last took a refresh of the key. A peer known to be
  // older than that (OlderPeers) is asked 'expiry-check' at once, and one older still is read at once.
  const older = s.olderPeers.level(id, s.nowMs)
  let reply = older > 0 ? null : (yield request(id, 'kv', { type: 'beat-check', key })) as KvReply
  if (reply !== null && isUnsupported(reply)) s.olderPeers.note(id, s.nowMs, 1)
  if (older < 2 && (reply === null || isUnsupported(reply))) {
    reply = (yield request(id, 'kv', { type: 'expiry-check', key })) as KvReply
    if (isUnsupported(reply)) s.olderPeers.note(id, s.nowMs, 2)
  }
  if (reply === null || isUnsupported(reply)) reply = (yield request(id, 'kv', { type: 'read', key })) as KvReply
  if (reply.type === 'beat-state') return reply
  if (reply.type === 'expiry-state') return { ...reply, refreshedWall: 0 }
  if (reply.type === 'state') return { state: reply.state, ttlMs: reply.ttlMs, degraded: false, refreshedWall: 0 }
  // Refused for overload: that replica is behind on its own work (it may not have taken the newest beats
  // yet), so its answer vouches for nothing, as a degraded one's does not. Overload passes (admission
  // control), so this too delays the expiry rather than losing it.
  if (reply.type === 'error' && reply.code === 'ERR_OVERLOADED') return OVERLOADED
  s.log.debug(`${id} answered the expiry check of ${key} with ${reply.type === 'error' ? reply.code : reply.type}`)
  return NO_VIEW
}

/** Decides whether to expire `key`, whose TTL ran out here in `state`. */
export function * checkExpiry (s: ReplicaState, key: string, state: KeyState): Flow<void> {
  const others = s.primariesOf(key).filter(id => id !== s.id && s.isUp(id))
  const newer: Entry[] = []
  let healthy = 0
  let degraded = 0
  const refreshedBefore = s.engine.lastAliveWall(key)
  // The newest refresh another replica took of the key, of whatever version it holds: a refresh is a beat of
  // this service at that time (versions converge by the merges below and anti-entropy).
  let refreshedElsewhere = 0
  // Replicas not asked because this one's own link to them is full (see the module comment).
  let notAsked = 0
  const answered = yield * all(others.map(function * (id): Flow<void> {
    let view: ExpiryView
    try {
      view = yield * askExpiry(s, id, key)
    } catch (error) {
      if (error instanceof OverloadedError) notAsked++
      throw error
    }
    if (view.degraded) degraded++
    else healthy++
    // Merged whoever sent it: a degraded replica's newer beat is still a beat.
    if (view.state !== null && !stateEquals(sync(state, view.state), state)) newer.push({ key, ttlMs: view.ttlMs, state: view.state })
    // A time further ahead than this clock accepts (a peer with a wrong clock) is no evidence.
    if (view.state !== null && view.refreshedWall > refreshedElsewhere && view.refreshedWall <= s.engine.hlc.acceptLimitMs()) refreshedElsewhere = view.refreshedWall
  }))
  // A write or refresh while the others were asked gave the key fresh credits here: nothing left to decide.
  if (s.engine.state(key) !== state || s.engine.lastAliveWall(key) !== refreshedBefore) return
  if (others.length > 0 && answered === 0) {
    // Cut off from every other replica SWIM still lists as up: they may have the beats. Try again at the
    // next sweep; once SWIM declares them dead this replica decides alone.
    s.engine.postponeExpiry(key)
    return
  }
  if (newer.length > 0) {
    try {
      yield * s.mergeLocal(newer)
    } catch (error) {
      s.log.debug(`merging newer states of ${key} before expiry failed: ${errorMessage(error)}`)
    }
    // A merge that changed the state refreshed its credits.
    if (s.engine.state(key) !== state) return
  }
  // Another replica took a beat this one missed (a refresh sent while it was unreachable or overloaded, or a
  // beat it refused but noted, KvNode.refreshRefused): the service beat within its TTL. The key gets the
  // credits left of that TTL, on the hybrid logical clock. While some replica is degraded or silent, the hold
  // below covers it instead (4 TTLs from that beat): an overloaded peer noting refused beats would otherwise
  // be asked again about every key every few seconds, adding load where there is least to spare.
  const ttlMs = s.engine.ttl(key)
  // A service's key here while this replica's own detector is degraded (health.ts: a stall, its disk,
  // refusals, or a mass expiry): it may have taken the beats late itself, so it holds as for a degraded
  // answer (Lifeguard: a sick member does not accuse), and past the hold the other replicas' healthy answers
  // decide, or it alone if there are none. Other TTL keys (a cache's) are not beats: they are not held for it.
  const self = isHeartbeatKey(key) && s.health.degraded(s.nowMs)
  const unsure = degraded > 0 || answered < others.length || self
  if (refreshedElsewhere > 0 && !unsure) {
    const leftMs = refreshedElsewhere + ttlMs - s.engine.hlc.now().wall
    if (leftMs > 0 && s.engine.refresh(key, state, ttlMs, { wall: refreshedElsewhere, logical: 0 }, leftMs)) return
  }
  if (unsure) {
    // Some replica is degraded or did not answer (an overloaded peer's answer comes too late): it may be
    // receiving the beats late, or turning them away (admission control), so the beats may not have stopped.
    // The key is held until DETECTOR_STRETCH TTLs after its last beat (not offered again before then);
    // past that, one healthy answer is enough. Time is read on the hybrid logical clock that stamped the
    // beat, so skew between the peers' clocks cancels out; the hold itself runs on this engine's clock.
    // The beat learnt is remembered (no credits): should that replica's answer be lost next time, the hold
    // still runs from it.
    if (refreshedElsewhere > 0) s.engine.noteAlive(key, state, ttlMs, { wall: refreshedElsewhere, logical: 0 }, false)
    if (notAsked > 0) {
      // One could not be asked at all (this replica's own link to it is full): nothing is known of it, so
      // neither a hold nor a verdict; offered again at the next sweep, decided once it can be asked (or SWIM
      // declares it dead).
      s.counters.expiryPostponedDegraded++
      s.engine.postponeExpiry(key)
      return
    }
    const nowHlc = s.engine.hlc.now().wall
    const lastBeat = Math.max(newestTs(state)?.wall ?? 0, s.engine.lastAliveWall(key), refreshedElsewhere)
    const untilHlc = lastBeat + DETECTOR_STRETCH * ttlMs
    if (nowHlc < untilHlc || (healthy === 0 && degraded > 0)) {
      // Past the hold with every replica that answered degraded: none can vouch that the beats stopped;
      // offered at every sweep (degradation ends HEALTH_RECOVERY_MS after its signals recover), delayed, not lost.
      s.counters.expiryPostponedDegraded++
      s.engine.postponeExpiry(key, nowHlc < untilHlc ? s.nowMs + (untilHlc - nowHlc) : 0)
      return
    }
  }
  s.engine.expire(key, state)
}

/**
 * The engine expired `key` (from `before` to `after`): tells watchers, and sends the expiry to the key's
 * other up replicas once it is durable.
 */
export function * publishExpiry (s: ReplicaState, key: string, before: KeyState, after: KeyState): Flow<void> {
  s.rt.emit({ type: 'change', event: { type: 'expired', key, replica: s.id, wall: newestTs(after)?.wall ?? s.nowMs, prior: before, state: after } })
  const entry: Entry = { key, ttlMs: 0, state: after }
  // The expiry is a write with a new dot, logged without waiting: it is shared once durable.
  yield persist()
  yield * all(s.primariesOf(key).filter(id => id !== s.id && s.isUp(id)).map(function * (id): Flow<void> {
    try {
      yield * s.replicate(id, 'kv', [entry])
    } catch (error) {
      s.log.debug(`sending the expiry of ${key} to ${id} failed: ${errorMessage(error)}`)
    }
  }))
}
