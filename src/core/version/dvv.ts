/**
 * Dotted version vector sets: a key's state is the causal history its replicas have seen (a version vector)
 * plus the concurrent values still alive (siblings), each tagged with the dot — `(replicaId, counter)` — of the
 * write that created it. This is the semantics of Riak's dvvset (Preguiça, Baquero et al., "Dotted Version
 * Vectors", 2012) in its explicit form: each sibling carries its own dot instead of the compact
 * per-replica value lists, which makes the rules one line each:
 *
 * - update (a coordinator's local write): the new value gets the next dot of the coordinating replica; the
 *   siblings the client's context covers are superseded, the rest stay as siblings;
 * - sync (merging two replicas' states): a sibling survives when both have it, or when one has it and the
 *   other's history does not cover it (so the other never saw it rather than overwrote it);
 * - context (what `get` hands to the client): the history vector.
 *
 * Siblings are kept sorted by dot so equal states are equal structures. A tombstone is a sibling whose value
 * is null.
 *
 * Last-writer-wins: a write made with `lww` raises the state's `lwwFloor` to its own (HLC timestamp, dot),
 * and every sibling ordered below the floor is gone — its dot stays in the history, so it never comes
 * back. The floor only grows (it is the maximum over every lww write ever seen), which keeps sync a join:
 * commutative, associative and idempotent, whatever order replicas learn of writes in. A key written only
 * with lww therefore holds exactly its newest write; a write without lww made after the newest lww write
 * still becomes a sibling, as any plain write does.
 */
import { type Hlc, compareHlc } from './hlc.js'
import { type VersionVector, EMPTY_VV, vvCovers, vvDescends, vvEquals, vvGet, vvMerge, vvSet } from './vv.js'

export interface Sibling {
  /** Replica that created this value's dot. */
  readonly id: string
  /** The dot's counter: increases with each of replica `id`'s writes to the key, and is at least the write's
   * wall-clock time in ms (see update), so a replica never reissues a dot even after forgetting the key. */
  readonly n: number
  /** The value's bytes; null for a tombstone (a delete). */
  readonly value: Uint8Array | null
  /** When it was written, by the coordinator's hybrid logical clock (a Sibling is an Hlc: wall, logical).
   * Inline rather than a nested object: one object less per stored version. */
  readonly wall: number
  readonly logical: number
  /** Written in last-writer-wins mode (see lwwFloor). */
  readonly lww: boolean
}

/** The newest last-writer-wins write seen: siblings ordered below it (by HLC, then dot) are superseded. */
export interface LwwFloor extends Hlc {
  readonly id: string
  readonly n: number
}

export interface KeyState {
  readonly vv: VersionVector
  readonly siblings: readonly Sibling[]
  readonly lwwFloor: LwwFloor | null
}

export const EMPTY_STATE: KeyState = Object.freeze({ vv: EMPTY_VV, siblings: Object.freeze([]) as readonly Sibling[], lwwFloor: null })

export interface Write {
  readonly value: Uint8Array | null
  readonly ts: Hlc
  readonly lww: boolean
}

function compareDots (a: Sibling, b: Sibling): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : a.n - b.n
}

function covered (vv: VersionVector, s: Sibling): boolean {
  return vvCovers(vv, s.id, s.n)
}

/** Orders writes by HLC, then by dot, so every replica agrees on which of two writes is newer. */
function compareWrites (a: LwwFloor, b: LwwFloor): number {
  const c = compareHlc(a, b)
  if (c !== 0) return c
  return a.id < b.id ? -1 : a.id > b.id ? 1 : a.n - b.n
}

function maxFloor (a: LwwFloor | null, b: LwwFloor | null): LwwFloor | null {
  if (a === null) return b
  if (b === null) return a
  return compareWrites(a, b) >= 0 ? a : b
}

/**
 * Drops siblings ordered below the last-writer-wins floor, into an array of exactly the survivors: the store
 * keeps one per key, and a pushed-to or filtered array keeps spare slots (about 130 bytes for one sibling).
 * `exact` says `siblings` already is such an array (it is then returned as is when nothing is dropped).
 */
function aboveFloor (siblings: Sibling[], floor: LwwFloor | null, exact: boolean): Sibling[] {
  let kept = siblings.length
  if (floor !== null) for (const s of siblings) if (compareWrites(s, floor) < 0) kept--
  if (exact && kept === siblings.length) return siblings
  const out = new Array<Sibling>(kept)
  let o = 0
  for (const s of siblings) if (floor === null || compareWrites(s, floor) >= 0) out[o++] = s
  return out
}

/**
 * A coordinator's local write. `context` is the history the client saw (from a get; empty for a blind
 * write); `replicaId` is the coordinating replica, whose counter issues the new dot.
 */
export function update (local: KeyState, context: VersionVector, write: Write, replicaId: string, floor = 0): KeyState {
  const base = vvMerge(local.vv, context)
  // The next counter, and never below the write's wall-clock time nor `floor`: a replica that forgot a key's
  // history — the key expired or its tombstone was reaped, or the process crashed before its last writes
  // were durable — must not issue a dot it issued before, or replicas still holding the old dot would take
  // the new value for the old one (and keep either). The clock has moved on since; and `floor`, the storage
  // engine's recovered dot-counter lease, is above every counter issued before a crash, also one that ran
  // ahead of the clock (a key written more than once a millisecond) or one from before a clock step back.
  const n = Math.max(vvGet(base, replicaId) + 1, write.ts.wall, floor)
  // Dots must stay exact integers that every decoder accepts (contexts are capped at COUNTER_MAX).
  if (n > Number.MAX_SAFE_INTEGER - 1) throw new RangeError(`dot counter ${n} for ${replicaId} is out of range`)
  const sibling: Sibling = { id: replicaId, n, value: write.value, wall: write.ts.wall, logical: write.ts.logical, lww: write.lww }
  // Fast path, the common read-modify-write: the context covers the whole local history, so every local
  // sibling is superseded and need not even be read (under write load they are usually out of cache).
  if (context === local.vv || vvDescends(context, local.vv)) {
    const lwwFloor = write.lww ? maxFloor(local.lwwFloor, { id: replicaId, n, wall: sibling.wall, logical: sibling.logical }) : local.lwwFloor
    return { vv: vvSet(base, replicaId, n), siblings: aboveFloor([sibling], lwwFloor, true), lwwFloor }
  }
  // Exact-size arrays: a pushed-to array reserves 17 slots, and the store keeps one per key.
  const current = local.siblings
  let survivors = 0
  for (let i = 0; i < current.length; i++) if (!covered(context, current[i]!)) survivors++
  const kept = new Array<Sibling>(survivors + 1)
  let o = 0
  let placed = false
  for (let i = 0; i < current.length; i++) {
    const s = current[i]!
    if (covered(context, s)) continue
    if (!placed && compareDots(sibling, s) < 0) { kept[o++] = sibling; placed = true }
    kept[o++] = s
  }
  if (!placed) kept[o] = sibling
  const lwwFloor = write.lww ? maxFloor(local.lwwFloor, { id: replicaId, n, wall: sibling.wall, logical: sibling.logical }) : local.lwwFloor
  return { vv: vvSet(base, replicaId, n), siblings: aboveFloor(kept, lwwFloor, true), lwwFloor }
}

/** Merges two replicas' states of one key (commutative, associative, idempotent). */
export function sync (a: KeyState, b: KeyState): KeyState {
  if (a === b) return a
  const out: Sibling[] = []
  const as = a.siblings
  const bs = b.siblings
  let i = 0
  let j = 0
  while (i < as.length || j < bs.length) {
    const x = as[i]
    const y = bs[j]
    const c = x === undefined ? 1 : y === undefined ? -1 : compareDots(x, y)
    if (c === 0) { out.push(x!); i++; j++ } else if (c < 0) {
      if (!covered(b.vv, x!)) out.push(x!)
      i++
    } else {
      if (!covered(a.vv, y!)) out.push(y!)
      j++
    }
  }
  const lwwFloor = maxFloor(a.lwwFloor, b.lwwFloor)
  return { vv: vvMerge(a.vv, b.vv), siblings: aboveFloor(out, lwwFloor, false), lwwFloor }
}

/** The causal context a client gets with a read and hands back with its next write. */
export function contextOf (state: KeyState): VersionVector {
  return state.vv
}

/** The live values: siblings that are not tombstones. */
export function valuesOf (state: KeyState): Sibling[] {
  return state.siblings.filter(s => s.value !== null)
}

/** True when every sibling is a tombstone (the key reads as deleted). */
export function isDeleted (state: KeyState): boolean {
  for (const s of state.siblings) if (s.value !== null) return false
  return true
}

/** Same history and same siblings (by dot). */
export function stateEquals (a: KeyState, b: KeyState): boolean {
  if (a === b) return true
  if (!vvEquals(a.vv, b.vv) || a.siblings.length !== b.siblings.length) return false
  const fa = a.lwwFloor
  const fb = b.lwwFloor
  if (fa !== fb && (fa === null || fb === null || compareWrites(fa, fb) !== 0)) return false
  for (let i = 0; i < a.siblings.length; i++) {
    if (compareDots(a.siblings[i]!, b.siblings[i]!) !== 0) return false
  }
  return true
}

/** The newest HLC timestamp in the state, so a clock can observe what it read. */
export function newestTs (state: KeyState): Hlc | undefined {
  let best: Hlc | undefined
  for (const s of state.siblings) if (best === undefined || compareHlc(s, best) > 0) best = s
  return best === undefined ? undefined : { wall: best.wall, logical: best.logical }
}
