/**
 * The indexes a replica keeps over the keys it holds, so that background work looks only at what concerns
 * it: keys held for others (hints and ranges to hand off), tombstones (candidates for reaping), heartbeat
 * keys (the services listing), keys by ring segment, and the leaves of the anti-entropy hash tree shared
 * with each peer (Riak AAE: per segment, the XOR of the digests of the keys both replicas are primaries of).
 *
 * It follows the storage engine's own changes (StorageEngine.onChange, called for every write, merge,
 * expiry and removal), so no code path has to remember to keep it in step.
 *
 * A ring change rebuilds the two parts that depend on the ring (the foreign keys and the hash-tree leaves)
 * a bounded number of keys at a time (`retarget`, then `rebuildStep` from the replica's ticks), beside the
 * ones in use, which go on following the changes for the old ring until the new ones are complete and take
 * their place. A store of a million keys took 1.7 s to rebuild in one go here, and a tab's join or leave
 * changes the ring on every peer: done at once, that was an event loop stalled for as long. A ring change
 * during a rebuild starts it again for the newer ring with steps twice as large as before, so ring changes
 * that come faster than a rebuild completes cannot hold one off for ever: after k such restarts a step takes
 * 2^k times the keys, at worst the whole store at once, as before.
 */
import { type Ring, SEGMENT_COUNT, segmentOf } from '../ring/ring.js'
import { type Digests, xorInto } from '../kv/digest.js'
import { isHeartbeatKey } from '../kv/heartbeat.js'
import { type KeyState, isDeleted } from '../version/dvv.js'

/** The parts of the index that depend on the ring. */
interface RingParts {
  foreign: Set<string>
  pairLeaves: Map<string, Uint32Array>
}

/** A rebuild for a new ring under way: segments below `nextSegment` are built (and kept up to date). */
interface PendingRing extends RingParts {
  ring: Ring
  nextSegment: number
  keys: number
  steps: number
  /** Rebuilds for older rings this one replaced before they completed: each doubles the step. */
  restarts: number
}

/** The most a step grows by (2^RESTART_DOUBLINGS_MAX times `maxKeys`): past it, the whole store anyway. */
const RESTART_DOUBLINGS_MAX = 30

export class KeyIndex {
  /** Deleted keys held here: candidates for reaping. */
  readonly tombstones = new Set<string>()
  /** Heartbeat keys held here, so listing services need not scan every key. */
  readonly heartbeats = new Set<string>()
  /** Keys held here, by segment: anti-entropy looks only at the segments that differ. */
  readonly bySegment: ReadonlyArray<Set<string>> = Array.from({ length: SEGMENT_COUNT }, () => new Set<string>())
  private live: RingParts = { foreign: new Set(), pairLeaves: new Map() }
  private pending: PendingRing | null = null

  constructor (private readonly id: string, private readonly n: number, private readonly digests: Digests, private ring: Ring) {}

  /** Keys held here whose primaries do not include this peer: hints and ranges to hand off. */
  get foreign (): Set<string> { return this.live.foreign }

  /**
   * The hash tree's leaves, kept up to date on every change: for each peer this one shares keys with, per
   * segment, the XOR of the digests of the keys both are primaries of ([hi, lo] at 2s, 2s+1).
   */
  get pairLeaves (): Map<string, Uint32Array> { return this.live.pairLeaves }

  /** A rebuild for a new ring is under way: `foreign` and `pairLeaves` still describe the previous ring. */
  get rebuilding (): boolean { return this.pending !== null }

  /** Rebuilds every index for a new ring from what the replica holds, at once. */
  rebuild (ring: Ring, entries: Iterable<[string, KeyState]>): void {
    this.ring = ring
    this.pending = null
    this.live = { foreign: new Set(), pairLeaves: new Map() }
    this.tombstones.clear()
    this.heartbeats.clear()
    for (const keys of this.bySegment) keys.clear()
    for (const [key, state] of entries) this.note(key, undefined, state)
  }

  /**
   * Starts rebuilding the ring-dependent parts for `ring` (dropping a rebuild under way for an older one).
   * Until `rebuildStep` has gone through every segment, readers see the parts of the previous ring.
   */
  retarget (ring: Ring): void {
    const restarts = this.pending === null ? 0 : this.pending.restarts + 1
    this.pending = { ring, foreign: new Set(), pairLeaves: new Map(), nextSegment: 0, keys: 0, steps: 0, restarts }
  }

  /**
   * Builds whole segments of the pending rebuild until at least `maxKeys` keys are done (or none is left),
   * times 2 for each rebuild this one restarted (see the top); `stateOf` is the state held for a key. Once
   * every segment is built the new parts replace the old, and it returns what the rebuild took; until then
   * (and with none pending) null.
   */
  rebuildStep (maxKeys: number, stateOf: (key: string) => KeyState | undefined): { keys: number; steps: number; restarts: number } | null {
    const p = this.pending
    if (p === null) return null
    p.steps++
    const budget = maxKeys * 2 ** Math.min(p.restarts, RESTART_DOUBLINGS_MAX)
    let done = 0
    while (p.nextSegment < SEGMENT_COUNT && done < budget) {
      const segment = p.nextSegment++
      for (const key of this.bySegment[segment]!) {
        const state = stateOf(key)
        if (state === undefined) continue
        this.place(p, p.ring, key, p.ring.position(key), segment, undefined, state)
        done++
      }
    }
    p.keys += done
    if (p.nextSegment < SEGMENT_COUNT) return null
    this.ring = p.ring
    this.live = { foreign: p.foreign, pairLeaves: p.pairLeaves }
    this.pending = null
    return { keys: p.keys, steps: p.steps, restarts: p.restarts }
  }

  /** Completes a pending rebuild now (a leave's handoff needs the keys held for others in the current ring). */
  finishRebuild (stateOf: (key: string) => KeyState | undefined): void {
    while (this.pending !== null) this.rebuildStep(Number.MAX_SAFE_INTEGER, stateOf)
  }

  /**
   * A key's state here changed from `prior` to `state` (undefined: absent). Called exactly once per change
   * (by the engine's change hook); XOR makes the order of changes irrelevant to the hash tree.
   */
  note (key: string, prior: KeyState | undefined, state: KeyState | undefined): void {
    if (state === prior) return
    const position = this.ring.position(key)
    const segment = segmentOf(position)
    if (state === undefined) {
      this.bySegment[segment]!.delete(key)
      this.tombstones.delete(key)
      this.heartbeats.delete(key)
    } else {
      this.bySegment[segment]!.add(key)
      if (isHeartbeatKey(key)) this.heartbeats.add(key)
      if (isDeleted(state)) this.tombstones.add(key)
      else this.tombstones.delete(key)
    }
    this.place(this.live, this.ring, key, position, segment, prior, state)
    // A segment the rebuild has not reached yet gets the key's state when it does.
    const p = this.pending
    if (p !== null && segment < p.nextSegment) this.place(p, p.ring, key, position, segment, prior, state)
  }

  /** The ring-dependent part of a change, in `parts` for `ring`. */
  private place (parts: RingParts, ring: Ring, key: string, position: number, segment: number, prior: KeyState | undefined, state: KeyState | undefined): void {
    const primaries = ring.primaries(position, this.n)
    const mine = primaries.includes(this.id)
    if (state === undefined || mine) parts.foreign.delete(key)
    else parts.foreign.add(key)
    if (!mine) return
    for (const peer of primaries) {
      if (peer === this.id) continue
      let leaves = parts.pairLeaves.get(peer)
      if (leaves === undefined) parts.pairLeaves.set(peer, leaves = new Uint32Array(SEGMENT_COUNT * 2))
      if (prior !== undefined) xorInto(leaves, segment, this.digests.of(key, prior))
      if (state !== undefined) xorInto(leaves, segment, this.digests.of(key, state))
    }
  }
}
