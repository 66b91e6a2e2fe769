/**
 * The consistent-hash ring (Dynamo §4.2, Riak core's ring with virtual nodes). Each member places `vnodes`
 * tokens on a circle of 2^53 positions; a token's position is the hash of `memberId#index`, so every peer
 * computes the same ring from the same member set with no agreement round. A key lives at the hash of its
 * name and belongs to the first N distinct members clockwise from there: its primaries.
 *
 * Positions are the top 53 bits of a 64-bit hash (see hash.ts), exact in a JavaScript number, so the ring
 * does all arithmetic on plain numbers.
 *
 * Anti-entropy and transfer work on SEGMENT_COUNT fixed arcs of equal size, independent of who owns what, so
 * a Merkle tree per segment never needs rebuilding when members come and go.
 */
import { ConfigError } from '../errors.js'

/** Maps a string to a ring position, an integer in [0, RING_SIZE). Must be identical on every peer. */
export type RingHash = (input: string) => number

export const RING_SIZE = 2 ** 53
/** Number of fixed hash-space segments; a power of two so a segment is the top bits of a position. */
export const SEGMENT_COUNT = 1024
export const SEGMENT_SPAN = RING_SIZE / SEGMENT_COUNT
/**
 * Default tokens per member. 256 keeps the most-loaded of 10 members within 1.25x of the mean ownership
 * (the spread of a member's share shrinks as 1/sqrt(vnodes)) while a ring of 100 members is 25,600 tokens.
 */
export const DEFAULT_VNODES = 256
export const VNODES_MAX = 4096

export interface RingMember {
  readonly id: string
  readonly vnodes: number
}

export type Role = 'primary' | 'fallback'

export interface PreferenceEntry {
  readonly id: string
  readonly role: Role
  /** For a fallback: the down primary whose write it holds as a hint (Dynamo §4.6). */
  readonly hintFor?: string
}

export function segmentOf (position: number): number {
  return Math.floor(position / SEGMENT_SPAN)
}

/** The positions [start, end) of a segment. */
export function segmentRange (segment: number): readonly [number, number] {
  return [segment * SEGMENT_SPAN, (segment + 1) * SEGMENT_SPAN]
}

export function tokenInput (memberId: string, index: number): string {
  return `${memberId}#${index}`
}

export class Ring {
  /** Token positions ascending; `owners[i]` is the index in `members` of the token at `tokens[i]`. */
  private readonly tokens: Float64Array
  private readonly owners: Uint32Array

  private constructor (readonly members: readonly RingMember[], tokens: Float64Array, owners: Uint32Array, readonly hash: RingHash) {
    this.tokens = tokens
    this.owners = owners
  }

  static build (members: Iterable<RingMember>, hash: RingHash): Ring {
    const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    for (let i = 0; i < sorted.length; i++) {
      const m = sorted[i]!
      if (!Number.isInteger(m.vnodes) || m.vnodes < 1 || m.vnodes > VNODES_MAX) throw new ConfigError('vnodes', `${m.id} has ${m.vnodes}; must be an integer in [1, ${VNODES_MAX}]`)
      if (i > 0 && sorted[i - 1]!.id === m.id) throw new ConfigError('members', `duplicate member ${m.id}`)
    }
    const total = sorted.reduce((sum, m) => sum + m.vnodes, 0)
    const entries: Array<[number, number]> = []
    for (let mi = 0; mi < sorted.length; mi++) {
      const m = sorted[mi]!
      for (let v = 0; v < m.vnodes; v++) entries.push([hash(tokenInput(m.id, v)), mi])
    }
    // Ties (vanishingly rare in 2^53) break by member order so every peer builds the identical ring.
    entries.sort((a, b) => a[0] - b[0] || a[1] - b[1])
    const tokens = new Float64Array(total)
    const owners = new Uint32Array(total)
    for (let i = 0; i < total; i++) {
      tokens[i] = entries[i]![0]
      owners[i] = entries[i]![1]
    }
    return new Ring(sorted, tokens, owners, hash)
  }

  get size (): number { return this.members.length }

  /** Every token as [position, member id], in ring order. */
  tokenList (): Array<[number, string]> {
    return Array.from(this.tokens, (t, i) => [t, this.members[this.owners[i]!]!.id])
  }
  get tokenCount (): number { return this.tokens.length }

  /** The ring position of a key. */
  position (key: string): number {
    return this.hash(key)
  }

  /** Index of the first token at or clockwise after `position`. */
  private successor (position: number): number {
    const t = this.tokens
    let lo = 0
    let hi = t.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (t[mid]! < position) lo = mid + 1
      else hi = mid
    }
    return lo === t.length ? 0 : lo
  }

  /**
   * Distinct members clockwise from `position`, in order, at most `limit` of them; `accept` filters which
   * members count.
   */
  private walk (position: number, limit: number, accept: (id: string) => boolean = () => true): string[] {
    const out: string[] = []
    const n = this.tokens.length
    if (n === 0 || limit <= 0) return out
    const seen = new Uint8Array(this.members.length)
    let found = 0
    for (let i = this.successor(position), steps = 0; steps < n && found < this.members.length; steps++, i = i + 1 === n ? 0 : i + 1) {
      const owner = this.owners[i]!
      if (seen[owner] === 1) continue
      seen[owner] = 1
      found++
      const id = this.members[owner]!.id
      if (accept(id)) {
        out.push(id)
        if (out.length === limit) break
      }
    }
    return out
  }

  /** The first `n` distinct members clockwise from `position`: the key's primaries, up or not. */
  primaries (position: number, n: number): string[] {
    return this.walk(position, n)
  }

  /**
   * The preference list for `position` (riak_core_apl's annotated list): each primary that is up, and for
   * each primary that is down, the next up member clockwise beyond the primaries, marked as a fallback holding
   * a hint for it. Shorter than `n` only when fewer than `n` members are up.
   */
  preferenceList (position: number, n: number, isUp: (id: string) => boolean): PreferenceEntry[] {
    const primaries = this.walk(position, n)
    const down = primaries.filter(id => !isUp(id))
    const list: PreferenceEntry[] = primaries.filter(isUp).map(id => ({ id, role: 'primary' as const }))
    if (down.length === 0) return list
    const primarySet = new Set(primaries)
    const fallbacks = this.walk(position, down.length, id => !primarySet.has(id) && isUp(id))
    for (let i = 0; i < fallbacks.length; i++) list.push({ id: fallbacks[i]!, role: 'fallback', hintFor: down[i]! })
    return list
  }

  /**
   * Every member that is a primary for some position in `segment`: the replicas that exchange the segment's
   * Merkle tree. The primaries change only at token positions, so it suffices to look at the segment's start
   * and just after each token inside it.
   */
  segmentReplicas (segment: number, n: number): readonly string[] {
    // Immutable ring: each peer asks this for every segment and every peer it shares them with whenever
    // the ring changes (anti-entropy), so the answers are kept, per n (one or two values of n in practice).
    let cached = this.segmentReplicasCache.get(n)
    if (cached === undefined) this.segmentReplicasCache.set(n, cached = new Array<string[] | undefined>(SEGMENT_COUNT))
    return (cached[segment] ??= this.computeSegmentReplicas(segment, n))
  }

  private readonly segmentReplicasCache = new Map<number, Array<string[] | undefined>>()

  private computeSegmentReplicas (segment: number, n: number): string[] {
    const [start, end] = segmentRange(segment)
    const result = new Set(this.primaries(start, n))
    for (let i = this.successor(start); i < this.tokens.length && this.tokens[i]! < end; i++) {
      for (const id of this.primaries(this.tokens[i]! + 1, n)) result.add(id)
    }
    return [...result].sort()
  }

  /** The fraction of the hash space for which each member is the first primary. */
  ownership (): Map<string, number> {
    const shares = new Map<string, number>(this.members.map(m => [m.id, 0]))
    const n = this.tokens.length
    for (let i = 0; i < n; i++) {
      // Token i owns the arc (previous token, token i].
      const prev = i === 0 ? this.tokens[n - 1]! - RING_SIZE : this.tokens[i - 1]!
      const id = this.members[this.owners[i]!]!.id
      shares.set(id, shares.get(id)! + (this.tokens[i]! - prev) / RING_SIZE)
    }
    return shares
  }
}
