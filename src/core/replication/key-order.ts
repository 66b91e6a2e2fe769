/**
 * The keys a replica holds in order, for listing them (`list`, kv/listing.ts): a sorted array built the first
 * time anyone lists this replica's keys, then kept by the storage engine's change hook (as the key index is,
 * key-index.ts) at the cost of one push per new key. The store itself stays a hash map: writes do not pay for
 * an order only listings use, and a peer nobody lists never sorts.
 *
 * New keys wait in a small side array, sorted when a page is read and folded into the main array (one linear
 * merge) once it holds more than 1/16 of the keys (at least FOLD_MIN); removed keys stay in the arrays until
 * that fold and are skipped while reading (`has`). So a page costs a binary search plus the keys it returns
 * and the removed ones it steps over, and the whole order is rebuilt only once. The first listing of a peer
 * sorts all its keys at once: about 1 s per million keys on a 2-core machine.
 *
 * Bounded without listings too: once more keys came and went since the last page than the order holds (and
 * at least DROP_MIN), the order is dropped, and the next listing builds it afresh. So a peer listed once and
 * then churning through short-lived keys for days keeps no growing trail of keys it no longer holds.
 *
 * Order is plain UTF-16 code-unit order (JavaScript's `<`), the same on every peer.
 */
import type { KeyState } from '../version/dvv.js'

/** Changes (new and removed keys) below which the side array is not folded into the sorted array. */
export const FOLD_MIN = 1024
/** Changes since the last page past which (and past the order's size) the order is dropped until needed. */
export const DROP_MIN = 4 * FOLD_MIN

/** The first index in `sorted` whose key is at least `key` (or above it, with `above`). */
export function lowerBound (sorted: readonly string[], key: string, above = false): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const k = sorted[mid]!
    if (k < key || (above && k === key)) lo = mid + 1
    else hi = mid
  }
  return lo
}

export class OrderedKeys {
  /** Every key held when it was built or last folded (some since removed), ascending; null until needed. */
  private sorted: string[] | null = null
  /** Keys new since then (a key removed and written again may also be in `sorted`). */
  private added: string[] = []
  private addedSorted = true
  private removed = 0

  /** `all` lists the keys held now; `has` says whether a key is still held. */
  constructor (private readonly all: () => Iterable<string>, private readonly has: (key: string) => boolean) {}

  /** The engine's change hook (StorageEngine.onChange): a key appeared or disappeared. */
  note (key: string, prior: KeyState | undefined, state: KeyState | undefined): void {
    if (this.sorted === null) return
    if (prior === undefined && state !== undefined) {
      this.added.push(key)
      this.addedSorted = false
    } else if (prior !== undefined && state === undefined) this.removed++
    else return
    if (this.added.length + this.removed > Math.max(DROP_MIN, this.sorted.length)) {
      this.sorted = null
      this.added = []
      this.removed = 0
    }
  }

  /** Whether the order has been built (the first page builds it). */
  get built (): boolean { return this.sorted !== null }

  /**
   * Up to `limit` keys held here that start with `prefix` and sort after `after` ('' for the start),
   * ascending; `more` says whether another such key follows the last one.
   */
  page (prefix: string, after: string, limit: number): { keys: string[]; more: boolean } {
    const sorted = this.prepare()
    const added = this.added
    // Keys with a prefix form one contiguous run starting at the prefix itself.
    const from = after >= prefix ? after : prefix
    const above = after >= prefix
    let i = lowerBound(sorted, from, above)
    let j = lowerBound(added, from, above)
    const keys: string[] = []
    let last: string | undefined
    for (;;) {
      const a = sorted[i]
      const b = added[j]
      let key: string
      if (a === undefined && b === undefined) break
      if (b === undefined || (a !== undefined && a <= b)) { key = a!; i++ } else { key = b; j++ }
      if (key === last) continue // in both arrays, or added twice
      if (!key.startsWith(prefix)) break
      last = key
      if (!this.has(key)) continue
      if (keys.length === limit) return { keys, more: true }
      keys.push(key)
    }
    return { keys, more: false }
  }

  private prepare (): string[] {
    if (this.sorted === null) {
      this.sorted = [...this.all()].sort()
      this.added = []
      this.addedSorted = true
      this.removed = 0
      return this.sorted
    }
    if (this.added.length + this.removed > Math.max(FOLD_MIN, this.sorted.length >> 4)) this.fold()
    else if (!this.addedSorted) {
      this.added.sort()
      this.addedSorted = true
    }
    return this.sorted
  }

  /** One linear merge of the side array into the sorted one, dropping removed keys and duplicates. */
  private fold (): void {
    const sorted = this.sorted!
    const added = this.added.sort()
    const out: string[] = []
    let i = 0
    let j = 0
    let last: string | undefined
    while (i < sorted.length || j < added.length) {
      const a = sorted[i]
      const b = added[j]
      let key: string
      if (b === undefined || (a !== undefined && a <= b)) { key = a!; i++ } else { key = b; j++ }
      if (key === last) continue
      last = key
      if (this.has(key)) out.push(key)
    }
    this.sorted = out
    this.added = []
    this.addedSorted = true
    this.removed = 0
  }
}
