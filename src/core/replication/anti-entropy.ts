/**
 * Anti-entropy (Dynamo §4.7; Riak's active anti-entropy): round-robin with each peer that shares ring
 * segments, compare hash trees over the keys both are primaries of — the root, then the segment hashes, then
 * the key digests of the segments that differ — and push and pull what differs. The leaves are kept up to
 * date on every change by the key index (key-index.ts), so a round reads only the segments that differ.
 * Both sides of a round are here: `round()` asks, `rootEquals()` and `diffLeaves()` answer.
 */
import type { Entry, KvReply } from '../kv/messages.js'
import { type Ring, SEGMENT_COUNT, segmentOf } from '../ring/ring.js'
import type { KeyState } from '../version/dvv.js'
import { type Flow, persist, request } from './flow.js'
import { type ReplicaState, replyError } from './replica-state.js'
import type { SyncResult } from './types.js'

/**
 * An answer's list holds at most the round's key budget (`syncKeysPerRound`) of keys both peers are primaries
 * of, but to find them it looks at every key held in a segment, shared or not: those looks are bounded too,
 * at this many times the budget (whole segments, at least one).
 */
export const SYNC_WALK_FACTOR = 4

export class AntiEntropy {
  private syncCursor = 0
  private diffCursor = 0
  private sharedCache: { ring: Ring; shared: Map<string, number[]> } | null = null

  constructor (private readonly s: ReplicaState) {}

  /** Segments that both this peer and `peer` replicate some part of, in the current ring. */
  private shared (peer: string): number[] {
    const s = this.s
    if (this.sharedCache?.ring !== s.ring) this.sharedCache = { ring: s.ring, shared: new Map() }
    let segments = this.sharedCache.shared.get(peer)
    if (segments === undefined) {
      segments = []
      for (let seg = 0; seg < SEGMENT_COUNT; seg++) {
        const replicas = s.ring.segmentReplicas(seg, s.config.n)
        if (replicas.includes(s.id) && replicas.includes(peer)) segments.push(seg)
      }
      this.sharedCache.shared.set(peer, segments)
    }
    return segments
  }

  /** Calls `visit` for every key held here, in `segments`, that both this peer and `peer` are primaries of. */
  private forShared (peer: string, segments: Iterable<number>, visit: (key: string, state: KeyState) => void): void {
    const s = this.s
    for (const segment of segments) {
      for (const key of s.index.bySegment[segment]!) {
        const state = s.engine.state(key)
        if (state === undefined) continue
        const primaries = s.primariesOf(key)
        if (primaries.includes(s.id) && primaries.includes(peer)) visit(key, state)
      }
    }
  }

  /** Segment hashes (2 numbers each) of the keys shared with `peer`, in the order of `segments`. */
  private leaves (peer: string, segments: readonly number[]): number[] {
    const leaves = this.s.index.pairLeaves.get(peer)
    const out: number[] = []
    for (const seg of segments) out.push(leaves?.[2 * seg] ?? 0, leaves?.[2 * seg + 1] ?? 0)
    return out
  }

  /**
   * Answers a round's first question: is our hash tree over `segments` the same as the asker's? Never while
   * the key index is rebuilt for a new ring: its leaves then describe the old ring, and could match the
   * asker's by accident (a joiner's empty tree against this peer's none for it), so a round that must move
   * keys would move nothing.
   */
  rootEquals (peer: string, segments: readonly number[], root: number): boolean {
    if (this.s.index.rebuilding) return false
    return this.s.digests.root(this.leaves(peer, segments)) === root
  }

  /**
   * Answers a round's second question: the key digests of the segments whose hashes differ — every segment
   * asked about while the key index is rebuilt (its leaves are the old ring's; the keys listed are the
   * current ring's, from the keys held).
   */
  diffLeaves (peer: string, segments: readonly number[], hashes: readonly number[]): KvReply {
    const mine = this.s.index.rebuilding ? null : this.leaves(peer, segments)
    const differing: number[] = []
    segments.forEach((seg, i) => {
      if (mine === null || mine[2 * i] !== hashes[2 * i] || mine[2 * i + 1] !== hashes[2 * i + 1]) differing.push(seg)
    })
    // Whole segments only, up to the round's key budget (at least one segment), so the other side knows
    // exactly which segments the list covers; starting further along each time, so none starves.
    const start = differing.length === 0 ? 0 : this.diffCursor++ % differing.length
    const budget = this.s.config.syncKeysPerRound
    const covered: number[] = []
    const keys: string[] = []
    const out: number[] = []
    let truncated = false
    let walked = 0
    for (let i = 0; i < differing.length; i++) {
      const seg = differing[(start + i) % differing.length]!
      const held = this.s.index.bySegment[seg]!.size
      if (covered.length > 0 && walked + held > SYNC_WALK_FACTOR * budget) { truncated = true; break }
      walked += held
      const list: Array<[string, readonly [number, number]]> = []
      this.forShared(peer, [seg], (key, state) => { list.push([key, this.s.digests.of(key, state)]) })
      if (covered.length > 0 && keys.length + list.length > budget) { truncated = true; break }
      covered.push(seg)
      for (const [key, [hi, lo]] of list) { keys.push(key); out.push(hi, lo) }
    }
    return { type: 'digests', segments: covered, keys, hashes: out, truncated }
  }

  /** The next peer that shares segments with this one, round-robin over up ring members. */
  private nextPeer (): string | null {
    const s = this.s
    const peers = s.ring.members.map(m => m.id).filter(id => id !== s.id && s.isUp(id)).sort()
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[(this.syncCursor + i) % peers.length]!
      if (this.shared(peer).length > 0) {
        this.syncCursor = (this.syncCursor + i + 1) % peers.length
        return peer
      }
    }
    return null
  }

  /** One round with the next peer (or `peer`). Returns null if no peer shares segments. */
  * round (peer?: string): Flow<SyncResult | null> {
    const s = this.s
    const with_ = peer ?? this.nextPeer()
    if (with_ === null) return null
    const segments = this.shared(with_)
    if (segments.length === 0) return { peer: with_, equal: true, pushed: 0, pulled: 0 }
    s.counters.syncRounds++
    const hashes = this.leaves(with_, segments)
    const rootReply = (yield request(with_, 'sync', { type: 'sync-root', segments, root: s.digests.root(hashes) })) as KvReply
    if (rootReply.type === 'sync-root' && rootReply.equal) return { peer: with_, equal: true, pushed: 0, pulled: 0 }
    const reply = (yield request(with_, 'sync', { type: 'sync-leaves', segments, hashes })) as KvReply
    if (reply.type !== 'digests') throw replyError(with_, reply, 'get')
    // The answer covers at most the round's key budget of the other side's keys; this side holds to it too
    // (whole segments, at least one): against a peer that holds little, a joiner, the segments it covers can
    // hold everything this peer shares with it. The rest differ again next round.
    const covered = new Set<number>()
    let budgeted = 0
    for (const seg of reply.segments) {
      const held = s.index.bySegment[seg]?.size ?? 0
      if (covered.size > 0 && budgeted + held > s.config.syncKeysPerRound) break
      covered.add(seg)
      budgeted += held
    }
    const theirs = new Map<string, [number, number]>()
    for (let i = 0; i < reply.keys.length; i++) {
      const key = reply.keys[i]!
      if (covered.size < reply.segments.length && !covered.has(segmentOf(s.ring.position(key)))) continue
      theirs.set(key, [reply.hashes[2 * i]!, reply.hashes[2 * i + 1]!])
    }
    const push: Entry[] = []
    const seen = new Set<string>()
    this.forShared(with_, covered, (key, state) => {
      seen.add(key)
      const t = theirs.get(key)
      const d = s.digests.of(key, state)
      if (t === undefined || t[0] !== d[0] || t[1] !== d[1]) push.push(s.entry(key, state))
    })
    const pull: string[] = []
    for (const [key, t] of theirs) {
      if (!seen.has(key)) { pull.push(key); continue }
      const d = s.digests.of(key, s.engine.state(key)!)
      if (t[0] !== d[0] || t[1] !== d[1]) pull.push(key)
    }
    yield persist() // a state leaves this replica only once durable here
    yield * s.send(with_, push, () => {})
    let pulled = 0
    for (let i = 0; i < pull.length; i += s.config.handoffBatchKeys) {
      const r = (yield request(with_, 'sync', { type: 'pull', keys: pull.slice(i, i + s.config.handoffBatchKeys) })) as KvReply
      if (r.type !== 'entries') throw replyError(with_, r, 'get')
      yield * s.mergeLocal(r.entries)
      pulled += r.entries.length
    }
    s.counters.syncRepairs += push.length + pulled
    return { peer: with_, equal: false, pushed: push.length, pulled }
  }
}
