/**
 * Hinted handoff, rebalancing, tombstone reaping and the graceful leave (Dynamo §4.6; Riak's handoff):
 *
 * - A key held here whose primaries do not include this peer is a hint (a fallback took it for a down
 *   primary) or a range that moved (a member joined). Each turn delivers such keys to those of their
 *   primaries that are up and have not acknowledged that exact state yet, and drops each once every primary
 *   has acknowledged it durably — one mechanism for both.
 * - A tombstone is reaped by the key's first primary once every primary is up and holds the identical
 *   tombstone and the newest write is older than the grace period, so nothing deleted comes back.
 * - A leaving peer refuses writes, then sends every key it holds to its primaries in the ring without it; a
 *   tab whose ring tokens the others keep for its leave grace sends only the keys it holds for others.
 */
import { errorMessage } from '../errors.js'
import type { Entry, KvReply } from '../kv/messages.js'
import type { Ring } from '../ring/ring.js'
import { type KeyState, isDeleted, newestTs, stateEquals } from '../version/dvv.js'
import { type Flow, all, exchange, persist, quorum, request } from './flow.js'
import type { ReplicaState } from './replica-state.js'

/** Batches of entries by target peer. */
function addTo (batches: Map<string, Entry[]>, id: string, entry: Entry): void {
  let batch = batches.get(id)
  if (batch === undefined) batches.set(id, batch = [])
  batch.push(entry)
}

export class Handoff {
  /** Which primaries acknowledged a state this peer holds for others (by state object: a change resends). */
  private readonly deliveredTo = new WeakMap<KeyState, Set<string>>()

  constructor (private readonly s: ReplicaState) {}

  /**
   * One turn: sends keys held here for others to their up primaries that have not acknowledged that exact
   * state yet, at most `handoffKeysPerTurn` keys a turn, and drops each once every primary has acknowledged
   * it and this peer is still not a primary. Keys examined move to the back of the line, so none starves.
   * Then reaps tombstones. Returns what it did.
   */
  * turn (): Flow<{ delivered: number; dropped: number; reaped: number }> {
    const s = this.s
    const batches = new Map<string, Entry[]>()
    const examined: string[] = []
    let budget = s.config.handoffKeysPerTurn
    /** Every key looked at, with the state it had: dropped below if all its primaries have acknowledged it. */
    const candidates: Array<[string, KeyState]> = []
    for (const key of s.index.foreign) {
      if (budget <= 0 || examined.length >= 4 * s.config.handoffKeysPerTurn) break
      examined.push(key)
      const state = s.engine.state(key)
      if (state === undefined) continue
      const primaries = s.primariesOf(key)
      if (primaries.includes(s.id)) continue
      candidates.push([key, state])
      const acked = this.deliveredTo.get(state)
      const targets = primaries.filter(id => s.isUp(id) && acked?.has(id) !== true)
      if (targets.length === 0) continue
      budget--
      const entry = s.entry(key, state)
      for (const id of targets) addTo(batches, id, entry)
    }
    let delivered = 0
    if (batches.size > 0) yield persist() // a state leaves this replica only once durable here
    yield * all([...batches].map(([id, entries]) => s.send(id, entries, chunk => {
      delivered += chunk.length
      for (const e of chunk) {
        let acked = this.deliveredTo.get(e.state)
        if (acked === undefined) this.deliveredTo.set(e.state, acked = new Set())
        acked.add(id)
      }
    })))
    let dropped = 0
    for (const [key, state] of candidates) {
      // In the current ring (it may have changed while sending): still not a primary, every primary has
      // acknowledged, and the state is still the one they acknowledged.
      const primaries = s.primariesOf(key)
      const acked = this.deliveredTo.get(state)
      if (primaries.includes(s.id) || acked === undefined || !primaries.every(id => acked.has(id)) || s.engine.state(key) !== state) continue
      if (s.engine.drop(key, state)) dropped++
    }
    for (const key of examined) if (s.index.foreign.delete(key)) s.index.foreign.add(key)
    s.counters.handedOff += delivered
    s.counters.dropped += dropped
    const reaped = yield * this.reapTombstones()
    return { delivered, dropped, reaped }
  }

  /**
   * Reaps tombstones this peer is the first primary of, once every primary is up and holds the identical
   * tombstone and the newest write is older than the grace period.
   */
  private * reapTombstones (): Flow<number> {
    const s = this.s
    const now = s.nowMs
    let reaped = 0
    let budget = s.config.handoffBatchKeys
    const examined: string[] = []
    for (const key of s.index.tombstones) {
      if (budget <= 0 || examined.length >= 4 * s.config.handoffKeysPerTurn) break
      examined.push(key)
      const state = s.engine.state(key)
      if (state === undefined || !isDeleted(state)) continue
      if ((newestTs(state)?.wall ?? 0) + s.config.tombstoneGraceMs > now) continue
      const primaries = s.primariesOf(key)
      if (primaries[0] !== s.id || !primaries.every(id => s.isUp(id))) continue
      budget--
      const others = primaries.filter(id => id !== s.id)
      try {
        let same = true
        const every = (acked: number, reasons: string[]): Error => new Error(reasons.join('; '))
        yield * quorum(others.map(function * (id): Flow<void> {
          const r = (yield request(id, 'sync', { type: 'read', key })) as KvReply
          if (!(r.type === 'state' && r.state !== null && stateEquals(r.state, state))) same = false
        }), others.length, every)
        if (!same) continue
        yield * quorum(others.map(id => exchange(id, 'sync', { type: 'reap', key, state })), others.length, every)
      } catch (error) {
        s.log.debug(`reaping ${key} postponed: ${errorMessage(error)}`)
        continue
      }
      if (s.engine.reap(key, state)) reaped++
    }
    for (const key of examined) {
      const state = s.engine.state(key)
      if (state === undefined || !isDeleted(state)) s.index.tombstones.delete(key)
      else if (s.index.tombstones.delete(key)) s.index.tombstones.add(key) // to the back of the line
    }
    s.counters.reaped += reaped
    return reaped
  }

  /**
   * Before a graceful leave: from now on this peer refuses writes (what it acknowledged later could miss
   * this handoff), and every key it holds goes to its primaries in the ring without this peer; returns when
   * they acknowledged. Keys with no such primary up count as failed.
   */
  * handOffAll (ringWithout: Ring, progress: (done: number, total: number) => void, hintsOnly = false): Flow<{ delivered: number; failed: number }> {
    const s = this.s
    s.leaving = true
    s.index.finishRebuild(key => s.engine.state(key)) // the keys held for others, by the current ring
    const batches = new Map<string, Entry[]>()
    let failed = 0
    // Hints only (a tab whose tokens the others keep for its leave grace): the keys held here for others,
    // to their primaries in `ringWithout` (then the current ring); its own ranges stay with it.
    const entries: Iterable<[string, KeyState]> = hintsOnly ? this.heldForOthers() : s.engine.entries()
    for (const [key, state] of entries) {
      const entry = s.entry(key, state)
      let targets = 0
      for (const id of ringWithout.primaries(ringWithout.position(key), s.config.n)) {
        if (!s.isUp(id) || id === s.id) continue
        targets++
        addTo(batches, id, entry)
      }
      if (targets === 0) failed++
    }
    let delivered = 0
    yield persist()
    const total = [...batches.values()].reduce((a, b) => a + b.length, 0)
    yield * all([...batches].map(function * ([id, entries]): Flow<void> {
      failed += yield * s.send(id, entries, chunk => {
        delivered += chunk.length
        progress(delivered, total)
      })
    }))
    s.counters.handedOff += delivered
    return { delivered, failed }
  }

  /** The keys held here whose primaries do not include this peer, with their states. */
  private * heldForOthers (): Generator<[string, KeyState]> {
    // Consumed within one synchronous loop (handOffAll), so the set does not change underneath.
    for (const key of this.s.index.foreign) {
      const state = this.s.engine.state(key)
      if (state !== undefined) yield [key, state]
    }
  }
}
