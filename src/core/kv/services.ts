/**
 * The heartbeat services listing across the mesh (the failure detector's view, `GET /services`): each
 * replica lists the heartbeat records it holds (found through the key index, without scanning every key),
 * and a peer asked for the whole mesh merges the lists of every up member, per service keeping the record
 * with the newest beat (heartbeat.ts has the records and the merge rule).
 */
import { errorMessage } from '../errors.js'
import { type Flow, all, request } from '../replication/flow.js'
import type { KvReply } from './messages.js'
import { type ReplicaState, replyError } from '../replication/replica-state.js'
import { type ServiceView, mergeServices, parseServices, serviceOf } from './heartbeat.js'

/** Orders by `id` (plain code-unit order, the same everywhere). */
export function byId (a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** The heartbeat services this replica holds records of, sorted by id. */
export function localServices (s: ReplicaState): ServiceView[] {
  const out: ServiceView[] = []
  for (const key of s.index.heartbeats) {
    const state = s.engine.state(key)
    const service = state === undefined ? null : serviceOf(key, state, s.engine.refreshedWall(key))
    if (service !== null) out.push(service)
  }
  return out.sort(byId)
}

/**
 * Every heartbeat service in the mesh: the records of every up member merged (per service, the one with
 * the newest beat; an expiry over the alive record of the same beat). `failed` counts members that did
 * not answer (their services may be missing if no other replica holds them).
 */
export function * meshServices (s: ReplicaState): Flow<{ services: ServiceView[]; asked: number; failed: number }> {
  const members = s.ring.members.map(m => m.id).filter(id => s.isUp(id))
  const merged = new Map<string, ServiceView>()
  mergeServices(merged, localServices(s))
  const others = members.filter(id => id !== s.id)
  const answered = yield * all(others.map(function * (id): Flow<void> {
    try {
      const reply = (yield request(id, 'kv', { type: 'services' })) as KvReply
      if (reply.type !== 'info') throw replyError(id, reply, 'get')
      mergeServices(merged, parseServices(reply.json))
    } catch (error) {
      s.log.debug(`services of ${id}: ${errorMessage(error)}`)
      throw error
    }
  }))
  return { services: [...merged.values()].sort(byId), asked: members.length, failed: others.length - answered }
}
