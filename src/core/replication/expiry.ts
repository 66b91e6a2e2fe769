/**
 * TTL expiry across replicas (KnucklesDB's failure detector on a replicated store). The storage engine's
 * sweep finds a key whose credits ran out and hands it here before expiring it: a replica that was down or
 * restarting may have missed newer beats, so it first asks the key's other up replicas and merges anything
 * newer (which refreshes the key). Only if none is newer does it expire the key — a write with a new dot —
 * and send the expiry to the other replicas once it is durable (handoff and anti-entropy cover any that miss
 * it).
 */
import { errorMessage } from '../errors.js'
import type { Entry, KvReply } from '../kv/messages.js'
import { type KeyState, newestTs, stateEquals, sync } from '../version/dvv.js'
import { type Flow, all, persist, request } from './flow.js'
import type { ReplicaState } from './replica-state.js'

/** Decides whether to expire `key`, whose TTL ran out here in `state`. */
export function * checkExpiry (s: ReplicaState, key: string, state: KeyState): Flow<void> {
  const others = s.primariesOf(key).filter(id => id !== s.id && s.isUp(id))
  const newer: Entry[] = []
  const answered = yield * all(others.map(function * (id): Flow<void> {
    const reply = (yield request(id, 'kv', { type: 'read', key })) as KvReply
    if (reply.type !== 'state' || reply.state === null) return
    if (!stateEquals(sync(state, reply.state), state)) newer.push({ key, ttlMs: reply.ttlMs, state: reply.state })
  }))
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
    // A merge that changed the state refreshed its credits; if it did not, expire at once.
    if (s.engine.state(key) !== state) return
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
