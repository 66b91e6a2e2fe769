/**
 * The replica side: what this peer does with each request another peer sends it, as a table with one
 * handler per message type (js-libp2p's kad-dht rpc/index.ts has the same shape). Every handler is a flow
 * that ends in a reply; an error it throws becomes an error reply (typed by code) and is counted, so a bad
 * request never disturbs the replica. A state leaves this replica only once it is durable here.
 */
import { LeavingError, QuorumError } from '../errors.js'
import type { Entry, KvReply, KvRequest } from '../kv/messages.js'
import { servicesJson } from '../kv/heartbeat.js'
import { localServices } from '../kv/services.js'
import type { AntiEntropy } from './anti-entropy.js'
import { coordinateRead, coordinateWrite } from './coordinator.js'
import { type Flow, persist } from './flow.js'
import { type ReplicaState, entryBytes, errorReply } from './replica-state.js'

type Handler<T extends KvRequest['type']> = (s: ReplicaState, ae: AntiEntropy, from: string, request: Extract<KvRequest, { type: T }>) => Flow<KvReply>

const handlers: { readonly [T in KvRequest['type']]: Handler<T> } = {
  * merge (s, _ae, _from, request) {
    // A leaving peer takes no more data: what it acknowledged now might miss its final handoff.
    if (s.leaving) throw new LeavingError(s.id)
    yield * s.mergeLocal(request.entries)
    return { type: 'ok' }
  },
  * read (s, _ae, _from, request) {
    s.engine.checkKey(request.key)
    const state = s.engine.state(request.key)
    const ttlMs = state === undefined ? 0 : s.engine.ttl(request.key)
    yield * persist()
    return { type: 'state', state: state ?? null, ttlMs }
  },
  * put (s, _ae, _from, request) {
    const w = s.checkCount('w', request.w)
    s.checkContext(request.context)
    s.engine.checkKey(request.key)
    const pref = s.preference(request.key, request.strict)
    if (!pref.some(e => e.id === s.id)) throw new QuorumError(request.value === null ? 'delete' : 'put', 0, w, 0, [`${s.id} is not a replica of the key in its view of the ring`])
    if (request.value === null) s.counters.deletes++
    else s.counters.puts++
    const { state, acks } = yield * coordinateWrite(s, request.key, request.value, request.context, request.ts, pref, w, { lww: request.lww, ttlMs: request.ttlMs })
    return { type: 'put', state, acks }
  },
  * get (s, _ae, _from, request) {
    const r = s.checkCount('r', request.r)
    s.engine.checkKey(request.key)
    const pref = s.preference(request.key, request.strict)
    if (!pref.some(e => e.id === s.id)) throw new QuorumError('get', 0, r, 0, [`${s.id} is not a replica of the key in its view of the ring`])
    s.counters.gets++
    const { state, replies } = yield * coordinateRead(s, request.key, pref, r)
    return { type: 'get', state, replies }
  },
  * 'sync-root' (_s, ae, from, request) {
    return { type: 'sync-root', equal: ae.rootEquals(from, request.segments, request.root) }
  },
  * 'sync-leaves' (_s, ae, from, request) {
    return ae.diffLeaves(from, request.segments, request.hashes)
  },
  * pull (s, _ae, _from, request) {
    // Up to half a message of states; the rest are pulled in a later round.
    const entries: Entry[] = []
    let bytes = 0
    for (const key of request.keys) {
      const state = s.engine.state(key)
      if (state === undefined) continue
      const entry = s.entry(key, state)
      bytes += entryBytes(entry)
      if (entries.length > 0 && bytes > s.config.messageBytesMax / 2) break
      entries.push(entry)
    }
    yield * persist()
    return { type: 'entries', entries }
  },
  * info (s) {
    return { type: 'info', json: s.options.describe?.() ?? '{}' }
  },
  * services (s) {
    return { type: 'info', json: servicesJson(localServices(s)) }
  },
  * reap (s, _ae, _from, request) {
    if (s.engine.reap(request.key, request.state)) s.counters.reaped++
    return { type: 'ok' }
  }
}

/** Answers a request from another peer. Never throws: failures become error replies. */
export function * handle (s: ReplicaState, ae: AntiEntropy, from: string, request: KvRequest): Flow<KvReply> {
  try {
    const handler = handlers[request.type] as Handler<KvRequest['type']>
    return yield * handler(s, ae, from, request)
  } catch (error) {
    if (!(error instanceof QuorumError)) s.counters.badRequests++
    return errorReply(error)
  }
}
