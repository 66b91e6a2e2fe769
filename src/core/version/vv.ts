/**
 * Version vectors: for each replica id, how many of that replica's events (dots 1..n) are known.
 *
 * A vector is a flat array `[id0, n0, id1, n1, ...]` sorted by replica id with no zero counters, so equal
 * vectors are equal arrays and every operation is one linear merge. Flat rather than an array of pairs
 * because a store holds one vector per key: a pair is two more heap objects per entry, and V8's young
 * generation fills with them under write load (the benchmark measured 2x fewer puts per second with
 * pairs). Vectors are immutable: operations return new arrays (or one of their inputs, when it already is the
 * result: vvMerge); use `vvEntries` to read one as pairs.
 *
 * Keyed by replica, not by client (Dynamo §4.4; Riak's dvvset): a key is written through at most its
 * replicas and fallbacks, so a vector stays about N entries long however many clients write.
 */

declare const brand: unique symbol
export type VersionVector = ReadonlyArray<string | number> & { readonly [brand]?: 'VersionVector' }

export type Ordering = 'before' | 'after' | 'equal' | 'concurrent'

export const EMPTY_VV: VersionVector = Object.freeze([]) as VersionVector

/** Number of replicas in the vector. */
export function vvSize (vv: VersionVector): number {
  return vv.length >> 1
}

/** The counter for `replicaId`, 0 when absent. */
export function vvGet (vv: VersionVector, replicaId: string): number {
  for (let i = 0; i < vv.length; i += 2) {
    const id = vv[i] as string
    if (id === replicaId) return vv[i + 1] as number
    if (id > replicaId) return 0
  }
  return 0
}

/** A copy of `vv` with `replicaId`'s counter set to `counter` (> 0). */
export function vvSet (vv: VersionVector, replicaId: string, counter: number): VersionVector {
  let at = 0
  while (at < vv.length && (vv[at] as string) < replicaId) at += 2
  const replace = at < vv.length && vv[at] === replicaId
  const out = new Array<string | number>(vv.length + (replace ? 0 : 2))
  for (let i = 0; i < at; i++) out[i] = vv[i]!
  out[at] = replicaId
  out[at + 1] = counter
  for (let i = at + (replace ? 2 : 0), o = at + 2; i < vv.length; i++, o++) out[o] = vv[i]!
  return out as VersionVector
}

/**
 * Pointwise maximum: the vector that knows everything either knows. When one already does (a replica
 * taking a newer write of a key it holds: the common case), it is that one, with nothing allocated; a new
 * vector is exactly its size (a pushed-to array keeps spare slots, and the store keeps a vector per key).
 */
export function vvMerge (a: VersionVector, b: VersionVector): VersionVector {
  if (a.length === 0 || a === b) return b
  if (b.length === 0) return a
  const order = vvCompare(a, b)
  if (order === 'before' || order === 'equal') return b
  if (order === 'after') return a
  const out: Array<string | number> = []
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const x = a[i] as string
    const y = b[j] as string
    if (x < y) { out.push(x, a[i + 1]!); i += 2 } else if (x > y) { out.push(y, b[j + 1]!); j += 2 } else {
      out.push(x, Math.max(a[i + 1] as number, b[j + 1] as number))
      i += 2; j += 2
    }
  }
  while (i < a.length) out.push(a[i++]!)
  while (j < b.length) out.push(b[j++]!)
  return out.slice() as VersionVector
}

/** How `a` relates to `b` causally. */
export function vvCompare (a: VersionVector, b: VersionVector): Ordering {
  let aBigger = false
  let bBigger = false
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i] as string | undefined
    const y = b[j] as string | undefined
    if (y === undefined || (x !== undefined && x < y)) { aBigger = true; i += 2 } else if (x === undefined || x > y) { bBigger = true; j += 2 } else {
      const m = a[i + 1] as number
      const n = b[j + 1] as number
      if (m > n) aBigger = true
      else if (m < n) bBigger = true
      i += 2; j += 2
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
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** The vector as `[replicaId, counter]` pairs, in id order. */
export function vvEntries (vv: VersionVector): Array<[string, number]> {
  const out: Array<[string, number]> = []
  for (let i = 0; i < vv.length; i += 2) out.push([vv[i] as string, vv[i + 1] as number])
  return out
}

/** Builds a normalized vector from unsorted pairs; duplicate ids keep the maximum, zero counters vanish. */
export function vvFrom (pairs: Iterable<readonly [string, number]>): VersionVector {
  const byId = new Map<string, number>()
  for (const [id, n] of pairs) {
    if (n > 0 && n > (byId.get(id) ?? 0)) byId.set(id, n)
  }
  return [...byId].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)).flat() as VersionVector
}
