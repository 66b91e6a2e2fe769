/**
 * Version vectors: for each replica id, how many of that replica's events (dots 1..n) are known. A vector is
 * an array of `[replicaId, counter]` sorted by replica id with no zero counters, so equal vectors are equal
 * arrays and every operation is one linear merge. Vectors are immutable: operations return new arrays.
 *
 * Keyed by replica, not by client (Dynamo §4.4; Riak's dvvset): a key is written through at most its
 * replicas and fallbacks, so a vector stays about N entries long however many clients write.
 */

export type VersionVector = ReadonlyArray<readonly [replicaId: string, counter: number]>

export type Ordering = 'before' | 'after' | 'equal' | 'concurrent'

export const EMPTY_VV: VersionVector = Object.freeze([])

/** The counter for `replicaId`, 0 when absent. */
export function vvGet (vv: VersionVector, replicaId: string): number {
  for (let i = 0; i < vv.length; i++) {
    const entry = vv[i]!
    if (entry[0] === replicaId) return entry[1]
    if (entry[0] > replicaId) return 0
  }
  return 0
}

/** A copy of `vv` with `replicaId`'s counter set to `counter` (> 0). */
export function vvSet (vv: VersionVector, replicaId: string, counter: number): VersionVector {
  const out: Array<readonly [string, number]> = []
  let placed = false
  for (let i = 0; i < vv.length; i++) {
    const entry = vv[i]!
    if (!placed && entry[0] >= replicaId) {
      out.push([replicaId, counter])
      placed = true
      if (entry[0] === replicaId) continue
    }
    out.push(entry)
  }
  if (!placed) out.push([replicaId, counter])
  return out
}

/** Pointwise maximum: the vector that knows everything either knows. */
export function vvMerge (a: VersionVector, b: VersionVector): VersionVector {
  if (a.length === 0 || a === b) return b
  if (b.length === 0) return a
  const out: Array<readonly [string, number]> = []
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const x = a[i]!
    const y = b[j]!
    if (x[0] < y[0]) { out.push(x); i++ } else if (x[0] > y[0]) { out.push(y); j++ } else {
      out.push(x[1] >= y[1] ? x : y)
      i++; j++
    }
  }
  while (i < a.length) out.push(a[i++]!)
  while (j < b.length) out.push(b[j++]!)
  return out
}

/** How `a` relates to `b` causally. */
export function vvCompare (a: VersionVector, b: VersionVector): Ordering {
  let aBigger = false
  let bBigger = false
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i]
    const y = b[j]
    if (y === undefined || (x !== undefined && x[0] < y[0])) { aBigger = true; i++ } else if (x === undefined || x[0] > y[0]) { bBigger = true; j++ } else {
      if (x[1] > y[1]) aBigger = true
      else if (x[1] < y[1]) bBigger = true
      i++; j++
    }
    if (aBigger && bBigger) return 'concurrent'
  }
  return aBigger ? 'after' : bBigger ? 'before' : 'equal'
}

/** True when `a` has seen everything `b` has (a >= b pointwise). */
export function vvDescends (a: VersionVector, b: VersionVector): boolean {
  const order = vvCompare(a, b)
  return order === 'after' || order === 'equal'
}

/** True when the dot `(replicaId, counter)` is in the history `vv` describes. */
export function vvCovers (vv: VersionVector, replicaId: string, counter: number): boolean {
  return vvGet(vv, replicaId) >= counter
}

export function vvEquals (a: VersionVector, b: VersionVector): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!
    const y = b[i]!
    if (x[0] !== y[0] || x[1] !== y[1]) return false
  }
  return true
}

/** Builds a normalized vector from unsorted pairs; duplicate ids keep the maximum, zero counters vanish. */
export function vvFrom (pairs: Iterable<readonly [string, number]>): VersionVector {
  const byId = new Map<string, number>()
  for (const [id, n] of pairs) {
    if (n > 0 && n > (byId.get(id) ?? 0)) byId.set(id, n)
  }
  return [...byId].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
}
