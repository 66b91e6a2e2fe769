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
 * is null. With last-writer-wins siblings (`lww`), a state resolves to its newest sibling by HLC.
 */
import { type Hlc, compareHlc } from './hlc.js'
import { type VersionVector, EMPTY_VV, vvCovers, vvEquals, vvGet, vvMerge, vvSet } from './vv.js'

export interface Sibling {
  /** Replica that created this value's dot. */
  readonly id: string
  /** The dot's counter: this is replica `id`'s `n`-th event for the key. */
  readonly n: number
  /** The value's bytes; null for a tombstone (a delete). */
  readonly value: Uint8Array | null
  /** When it was written, by the coordinator's hybrid logical clock. */
  readonly ts: Hlc
  /** Written in last-writer-wins mode: the newest sibling (by `ts`) replaces all others. */
  readonly lww: boolean
}

export interface KeyState {
  readonly vv: VersionVector
  readonly siblings: readonly Sibling[]
}

export const EMPTY_STATE: KeyState = Object.freeze({ vv: EMPTY_VV, siblings: Object.freeze([]) as readonly Sibling[] })

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

/** Newest first: by HLC, then by dot so every replica picks the same winner for equal timestamps. */
function newer (a: Sibling, b: Sibling): boolean {
  const c = compareHlc(a.ts, b.ts)
  return c !== 0 ? c > 0 : compareDots(a, b) > 0
}

/** Last-writer-wins resolution: if any sibling was written with lww, only the newest sibling remains. */
function resolve (siblings: Sibling[]): Sibling[] {
  if (siblings.length < 2) return siblings
  let anyLww = false
  let newest = siblings[0]!
  for (const s of siblings) {
    if (s.lww) anyLww = true
    if (newer(s, newest)) newest = s
  }
  return anyLww ? [newest] : siblings
}

/**
 * A coordinator's local write. `context` is the history the client saw (from a get; empty for a blind
 * write); `replicaId` is the coordinating replica, whose counter issues the new dot.
 */
export function update (local: KeyState, context: VersionVector, write: Write, replicaId: string): KeyState {
  const base = vvMerge(local.vv, context)
  const n = vvGet(base, replicaId) + 1
  const sibling: Sibling = { id: replicaId, n, value: write.value, ts: write.ts, lww: write.lww }
  const kept: Sibling[] = []
  let placed = false
  for (const s of local.siblings) {
    if (covered(context, s)) continue
    if (!placed && compareDots(sibling, s) < 0) { kept.push(sibling); placed = true }
    kept.push(s)
  }
  if (!placed) kept.push(sibling)
  return { vv: vvSet(base, replicaId, n), siblings: resolve(kept) }
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
  return { vv: vvMerge(a.vv, b.vv), siblings: resolve(out) }
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
  for (let i = 0; i < a.siblings.length; i++) {
    if (compareDots(a.siblings[i]!, b.siblings[i]!) !== 0) return false
  }
  return true
}

/** The newest HLC timestamp in the state, so a clock can observe what it read. */
export function newestTs (state: KeyState): Hlc | undefined {
  let best: Hlc | undefined
  for (const s of state.siblings) if (best === undefined || compareHlc(s.ts, best) > 0) best = s.ts
  return best
}
