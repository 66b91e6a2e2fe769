/**
 * The indexes a replica keeps over the keys it holds, so that background work looks only at what concerns
 * it: keys held for others (hints and ranges to hand off), tombstones (candidates for reaping), heartbeat
 * keys (the services listing), keys by ring segment, and the leaves of the anti-entropy hash tree shared
 * with each peer (Riak AAE: per segment, the XOR of the digests of the keys both replicas are primaries of).
 *
 * It follows the storage engine's own changes (StorageEngine.onChange, called for every write, merge,
 * expiry and removal), so no code path has to remember to keep it in step; a ring change rebuilds it.
 */
import { type Ring, SEGMENT_COUNT, segmentOf } from '../ring/ring.js'
import { type Digests, xorInto } from '../kv/digest.js'
import { isHeartbeatKey } from '../kv/heartbeat.js'
import { type KeyState, isDeleted } from '../version/dvv.js'

export class KeyIndex {
  /** Keys held here whose primaries do not include this peer: hints and ranges to hand off. */
  readonly foreign = new Set<string>()
  /** Deleted keys held here: candidates for reaping. */
  readonly tombstones = new Set<string>()
  /** Heartbeat keys held here, so listing services need not scan every key. */
  readonly heartbeats = new Set<string>()
  /** Keys held here, by segment: anti-entropy looks only at the segments that differ. */
  readonly bySegment: ReadonlyArray<Set<string>> = Array.from({ length: SEGMENT_COUNT }, () => new Set<string>())
  /**
   * The hash tree's leaves, kept up to date on every change: for each peer this one shares keys with, per
   * segment, the XOR of the digests of the keys both are primaries of ([hi, lo] at 2s, 2s+1).
   */
  readonly pairLeaves = new Map<string, Uint32Array>()

  constructor (private readonly id: string, private readonly n: number, private readonly digests: Digests, private ring: Ring) {}

  /** Rebuilds every index for a new ring from what the replica holds. */
  rebuild (ring: Ring, entries: Iterable<[string, KeyState]>): void {
    this.ring = ring
    this.foreign.clear()
    this.tombstones.clear()
    this.heartbeats.clear()
    for (const keys of this.bySegment) keys.clear()
    this.pairLeaves.clear()
    for (const [key, state] of entries) this.note(key, undefined, state)
  }

  /**
   * A key's state here changed from `prior` to `state` (undefined: absent). Called exactly once per change
   * (by the engine's change hook); XOR makes the order of changes irrelevant to the hash tree.
   */
  note (key: string, prior: KeyState | undefined, state: KeyState | undefined): void {
    if (state === prior) return
    const position = this.ring.position(key)
    const segment = segmentOf(position)
    const primaries = this.ring.primaries(position, this.n)
    const mine = primaries.includes(this.id)
    if (state === undefined) {
      this.bySegment[segment]!.delete(key)
      this.foreign.delete(key)
      this.tombstones.delete(key)
      this.heartbeats.delete(key)
    } else {
      this.bySegment[segment]!.add(key)
      if (isHeartbeatKey(key)) this.heartbeats.add(key)
      if (mine) this.foreign.delete(key)
      else this.foreign.add(key)
      if (isDeleted(state)) this.tombstones.add(key)
      else this.tombstones.delete(key)
    }
    if (mine) {
      for (const peer of primaries) {
        if (peer === this.id) continue
        let leaves = this.pairLeaves.get(peer)
        if (leaves === undefined) this.pairLeaves.set(peer, leaves = new Uint32Array(SEGMENT_COUNT * 2))
        if (prior !== undefined) xorInto(leaves, segment, this.digests.of(key, prior))
        if (state !== undefined) xorInto(leaves, segment, this.digests.of(key, state))
      }
    }
  }
}

