/**
 * The replica side: what this peer does with each request another peer sends it, as a table with one
 * handler per message type (js-libp2p's kad-dht rpc/index.ts has the same shape). A handler either answers
 * once what it did is durable (`durable(reply)`: the merges and reads every client operation sends each
 * replica, done at once and then answered after one `persist`, with no flow to allocate) or is a flow that
 * ends in a reply (coordinating a forwarded put or get, anti-entropy). An error it throws becomes an error
 * reply (typed by code) and is counted, so a bad request never disturbs the replica. A state leaves this
 * replica only once it is durable here.
 */
import { ConfigError, LeavingError, QuorumError } from '../errors.js'
import type { Entry, KvReply, KvRequest } from '../kv/messages.js'
import { servicesJson } from '../kv/heartbeat.js'
import { LIST_LIMIT_MAX, localPage } from '../kv/listing.js'
import { localServices } from '../kv/services.js'
import type { AntiEntropy } from './anti-entropy.js'
import { coordinateRead, coordinateWrite } from './coordinator.js'
import { type Flow, callback } from './flow.js'
import type { KeyState } from '../version/dvv.js'
import { type ReplicaState, entryBytes, errorReply } from './replica-state.js'

/** A reply to send once everything this replica has logged so far is durable. */
interface Durable { readonly durable: KvReply }

function durable (reply: KvReply): Durable { return { durable: reply } }

type Handler<T extends KvRequest['type']> = (s: ReplicaState, ae: AntiEntropy, from: string, request: Extract<KvRequest, { type: T }>) => Flow<KvReply> | Durable

const OK: KvReply = { type: 'ok' }

/** What both expiry checks answer: the key's state here, its TTL, and whether this detector is degraded by its own slowness (DetectorHealth.answersDegraded). */
function expiryView (s: ReplicaState, key: string): { state: KeyState | null; ttlMs: number; degraded: boolean } {
  s.engine.checkKey(key)
  const state = s.engine.state(key)
  return { state: state ?? null, ttlMs: state === undefined ? 0 : s.engine.ttl(key), degraded: s.health.answersDegraded(s.nowMs) }
}

const handlers: { readonly [T in KvRequest['type']]: Handler<T> } = {
  merge (s, _ae, _from, request) {
    // A leaving peer takes no more data: what it acknowledged now might miss its final handoff.
    if (s.leaving) throw new LeavingError(s.id)
    s.applyMerges(request.entries)
    return durable(OK)
  },
  read (s, _ae, _from, request) {
    s.engine.checkKey(request.key)
    const state = s.engine.state(request.key)
    return durable({ type: 'state', state: state ?? null, ttlMs: state === undefined ? 0 : s.engine.ttl(request.key) })
  },
  * put (s, _ae, _from, request) {
    const w = s.checkCount('w', request.w)
    const dw = s.checkDurableAcks(request.dw)
    s.checkContext(request.context)
    s.engine.checkKey(request.key)
    const pref = s.preference(request.key, request.strict)
    if (!pref.some(e => e.id === s.id)) throw new QuorumError(request.value === null ? 'delete' : 'put', 0, w, 0, [`${s.id} is not a replica of the key in its view of the ring`])
    if (request.value === null) s.counters.deletes++
    else s.counters.puts++
    const { state, acks } = (yield callback(done => { coordinateWrite(s, request.key, request.value, request.context, request.ts, pref, w, dw, { lww: request.lww, ttlMs: request.ttlMs, strict: request.strict }, done) })) as { state: KeyState; acks: number }
    return { type: 'put', state, acks }
  },
  * get (s, _ae, _from, request) {
    const r = s.checkCount('r', request.r)
    s.engine.checkKey(request.key)
    const pref = s.preference(request.key, request.strict)
    if (!pref.some(e => e.id === s.id)) throw new QuorumError('get', 0, r, 0, [`${s.id} is not a replica of the key in its view of the ring`])
    s.counters.gets++
    const { state, replies } = (yield callback(done => { coordinateRead(s, request.key, pref, r, request.strict, done) })) as { state: KeyState | null; replies: number }
    return { type: 'get', state, replies }
  },
  * 'sync-root' (_s, ae, from, request) {
    return { type: 'sync-root', equal: ae.rootEquals(from, request.segments, request.root) }
  },
  * 'sync-leaves' (_s, ae, from, request) {
    return ae.diffLeaves(from, request.segments, request.hashes)
  },
  pull (s, _ae, _from, request) {
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
    return durable({ type: 'entries', entries })
  },
  * info (s) {
    return { type: 'info', json: s.options.describe?.() ?? '{}' }
  },
  * services (s) {
    return { type: 'info', json: servicesJson(localServices(s)) }
  },
  list (s, _ae, _from, request) {
    // Bounded by the decoder too (limit, prefix and cursor lengths); states go out only once durable here.
    if (request.limit > LIST_LIMIT_MAX) throw new ConfigError('limit', `must be at most ${LIST_LIMIT_MAX}`)
    const page = localPage(s, request)
    return durable({ type: 'keys', keys: page.keys, more: page.more })
  },
  'expiry-check' (s, _ae, _from, request) {
    // What 'read' answers, and whether this replica's own failure detector is degraded now (by its own
    // slowness, not a mass expiry: DetectorHealth.answersDegraded): the asker
    // expires the key only if a healthy replica agrees (expiry.ts).
    return durable({ type: 'expiry-state', ...expiryView(s, request.key) })
  },
  refresh (s, _ae, _from, request) {
    // A leaving peer takes no more data, refreshes included: its copy is about to be handed off.
    if (s.leaving) throw new LeavingError(s.id)
    s.engine.checkKey(request.key)
    const held = s.engine.state(request.key)
    const digest = held === undefined ? null : s.digests.of(request.key, held)
    if (digest === null || digest[0] !== request.digest[0] || digest[1] !== request.digest[1] || !s.engine.refresh(request.key, held!, request.ttlMs, request.ts)) {
      // Not refreshed: what this replica holds instead, so that the coordinator writes the beat over it.
      return durable({ type: 'state', state: held ?? null, ttlMs: held === undefined ? 0 : s.engine.ttl(request.key) })
    }
    s.counters.refreshes++
    // Answered once the version it refreshed is durable here (it may have been merged in this very turn).
    return durable(OK)
  },
  'beat-check' (s, _ae, _from, request) {
    // 'expiry-check', and when this replica last took a refresh of the key: a replica that missed the
    // refreshes must not expire a service the others know is alive (expiry.ts).
    const view = expiryView(s, request.key)
    return durable({ type: 'beat-state', ...view, refreshedWall: view.ttlMs === 0 ? 0 : s.engine.lastAliveWall(request.key) })
  },
  * reap (s, _ae, _from, request) {
    if (s.engine.reap(request.key, request.state)) s.counters.reaped++
    return { type: 'ok' }
  }
}

/**
 * Starts answering a request from another peer; `answer` gets the reply. A handler's failure becomes an
 * error reply (and is counted, unless it is a quorum the request could not reach): this never throws.
 */
export function serve (s: ReplicaState, ae: AntiEntropy, from: string, request: KvRequest, answer: (reply: KvReply) => void): void {
  const failed = (error: unknown): void => {
    if (!(error instanceof QuorumError)) s.counters.badRequests++
    answer(errorReply(error))
  }
  const handler = handlers[request.type] as Handler<KvRequest['type']>
  let result: Flow<KvReply> | Durable
  try {
    result = handler(s, ae, from, request)
  } catch (error) {
    failed(error)
    return
  }
  if ('durable' in result) {
    const reply = result.durable
    s.rt.afterPersist(error => { if (error === undefined) answer(reply); else failed(error) })
    return
  }
  s.rt.spawn(result, (ok, value) => { if (ok) answer(value as KvReply); else failed(value) })
}
