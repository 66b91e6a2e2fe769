/**
 * The consistent-hash ring (Dynamo §4.2, Riak core's ring with virtual nodes). Each member places `vnodes`
 * tokens on a circle of 2^53 positions; a token's position is the hash of `memberId#index`, so every peer
 * computes the same ring from the same member set with no agreement round. A key lives at the hash of its
 * name and belongs to N distinct members chosen clockwise from there: its primaries.
 *
 * Placement is aware of where members live and how durable they are (Riak 3's location awareness,
 * Cassandra's racks, Riak's `dw` in spirit). A key's primaries keep two rules:
 * - at least `minDurable` durable members (capped by how many the ring has): these places are chosen first,
 *   the first durable members clockwise, at distinct locations first;
 * - distinct locations first: the other places go to the first members clockwise at a location not yet
 *   used (by the durable places either), and a location is repeated only once every location on the ring
 *   is used (fewer locations than N); members skipped for their location then fill the places left, in
 *   clockwise order. Three tabs of one browser share one location, as do Node peers on one host.
 * With every member durable and at a location of its own this is the plain Dynamo walk.
 * It stays a pure function of the member set: every peer computes the same lists.
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
/**
 * Default tokens of a volatile member (a tab). A quarter of a durable member's: a tab holds a smaller share
 * of the keys, so less moves when it vanishes with its browser.
 */
export const DEFAULT_VOLATILE_VNODES = 64
/** Default of `minDurable`: durable members among every key's primaries. */
export const DEFAULT_MIN_DURABLE = 1

export interface RingMember {
  readonly id: string
  readonly vnodes: number
  /**
   * Where the member lives, a failure domain: `zone/rack/host` or a host name for a Node peer, the browser
   * profile for a tab. Default: the member's id (a domain of its own).
   */
  readonly location?: string
  /** A member whose storage outlives its process (a Node peer's disk). Default true. */
  readonly durable?: boolean
}

export interface RingOptions {
  /** Durable members among every key's primaries, when the ring has that many. Default 1. */
  minDurable?: number
}

export type Role = 'primary' | 'fallback'

export interface PreferenceEntry {
  readonly id: string
  readonly role: Role
  /** For a fallback: the down primary whose write it holds as a hint (Dynamo §4.6). */
  readonly hintFor?: string
}

/** Why a replica was chosen: its place in the walk and the rule that let it in (`GET /kv/:key/placement`). */
export type Reason = 'new-location' | 'repeated-location'

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

const NO_MEMBERS: ReadonlySet<number> = new Set()

export class Ring {
  /** Token positions ascending; `owners[i]` is the index in `members` of the token at `tokens[i]`. */
  private readonly tokens: Float64Array
  private readonly owners: Uint32Array
  /** Per member (by index): its location's number, and 1 if durable. */
  private readonly locationOf: Uint32Array
  private readonly durableOf: Uint8Array
  /** Distinct locations and durable members on the ring. */
  readonly locationCount: number
  readonly durableCount: number
  readonly minDurable: number
  private readonly index: Map<string, number>
  /** Whether locations cannot change the plain walk: every member at a location of its own, or all at one. */
  private readonly plainLocations: boolean
  private readonly seenMark: Uint32Array
  private readonly locationMark: Uint32Array
  /** Per member: the step at which the last walk met it (for ordering picks clockwise). */
  private readonly stepMark: Uint32Array
  private stamp = 0

  private constructor (readonly members: readonly RingMember[], tokens: Float64Array, owners: Uint32Array, readonly hash: RingHash, minDurable: number) {
    this.tokens = tokens
    this.owners = owners
    this.minDurable = minDurable
    this.index = new Map(members.map((m, i) => [m.id, i]))
    this.locationOf = new Uint32Array(members.length)
    this.durableOf = new Uint8Array(members.length)
    const locations = new Map<string, number>()
    let durable = 0
    for (let i = 0; i < members.length; i++) {
      const m = members[i]!
      const location = m.location ?? m.id
      let l = locations.get(location)
      if (l === undefined) locations.set(location, l = locations.size)
      this.locationOf[i] = l
      if (m.durable !== false) { this.durableOf[i] = 1; durable++ }
    }
    this.locationCount = locations.size
    this.durableCount = durable
    this.plainLocations = locations.size === members.length || locations.size === 1
    this.seenMark = new Uint32Array(members.length)
    this.stepMark = new Uint32Array(members.length)
    this.locationMark = new Uint32Array(locations.size)
  }

  static build (members: Iterable<RingMember>, hash: RingHash, options: RingOptions = {}): Ring {
    const minDurable = options.minDurable ?? DEFAULT_MIN_DURABLE
    if (!Number.isInteger(minDurable) || minDurable < 0) throw new ConfigError('minDurable', `must be an integer >= 0, got ${String(minDurable)}`)
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
    return new Ring(sorted, tokens, owners, hash, minDurable)
  }

  get size (): number { return this.members.length }

  /** Every token as [position, member id], in ring order. */
  tokenList (): Array<[number, string]> {
    return Array.from(this.tokens, (t, i) => [t, this.members[this.owners[i]!]!.id])
  }
  get tokenCount (): number { return this.tokens.length }

  /** The member's ring entry, if it is on the ring. */
  member (id: string): RingMember | undefined {
    const i = this.index.get(id)
    return i === undefined ? undefined : this.members[i]
  }

  /** Whether `id` is a durable member of the ring (false if it is not on the ring). */
  isDurable (id: string): boolean {
    const i = this.index.get(id)
    return i !== undefined && this.durableOf[i] === 1
  }

  /** The position of a key. */
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
   * Chooses up to `limit` members clockwise from `position` under the placement rules (see the top of this
   * file), among those `accept` lets in. `taken` are members already chosen (by index): their locations
   * count as used and their durable ones as durable places filled; `needDurable` is the durable members the
   * result together with `taken` must hold. Returns indices: first the members at a new location, then those
   * at a repeated one, each group in clockwise order; `reasons` (if given) receives each one's reason.
   *
   * The durable places are chosen first — the first durable members clockwise, distinct locations first —
   * and then the other places from everyone, with those locations counted as used. (Choosing in one walk,
   * a volatile member met first could take a location whose durable member was then needed, and the list
   * would repeat a location it need not.) Where too few durable members are let in (fallbacks when few are
   * up), the others fill their places.
   */
  private choose (position: number, limit: number, accept: ((index: number) => boolean) | null, taken: readonly number[], needDurable: number, reasons?: Reason[]): number[] {
    if (this.tokens.length === 0 || limit <= 0) return []
    // Fast path: neither rule can change the plain walk.
    if (this.plainLocations && taken.length === 0 && reasons === undefined && (needDurable <= 0 || this.durableCount === this.members.length)) return this.walk(position, limit, accept, [])
    let durableLeft = needDurable
    for (const t of taken) if (this.durableOf[t] === 1) durableLeft--
    let picks: number[]
    if (durableLeft > 0 && this.durableCount < this.members.length) {
      const durable = this.spread(position, Math.min(durableLeft, limit), i => this.durableOf[i] === 1 && (accept === null || accept(i)), taken)
      picks = durable.length === limit ? durable : durable.concat(this.spread(position, limit - durable.length, accept, taken.concat(durable)))
    } else {
      picks = this.spread(position, limit, accept, taken)
    }
    // Order: new locations first, then repeated ones, each clockwise (by the step the walk met them at).
    const steps = this.stepMark
    picks.sort((x, y) => steps[x]! - steps[y]!)
    const fresh: number[] = []
    const repeated: number[] = []
    const used = this.locationMark
    const usedStamp = this.nextStamp()
    for (const t of taken) used[this.locationOf[t]!] = usedStamp
    for (const p of picks) {
      const location = this.locationOf[p]!
      if (used[location] === usedStamp) repeated.push(p)
      else { used[location] = usedStamp; fresh.push(p) }
    }
    if (reasons !== undefined) {
      for (let i = 0; i < fresh.length; i++) reasons.push('new-location')
      for (let i = 0; i < repeated.length; i++) reasons.push('repeated-location')
    }
    return repeated.length === 0 ? fresh : fresh.concat(repeated)
  }

  /**
   * Up to `limit` members clockwise from `position` that `accept` lets in, spread over locations: a member at
   * a location `taken` or an earlier pick already uses is skipped until every location is used, then the
   * skipped ones fill the places left, clockwise. Records each pick's step in `stepMark` (the same walk from
   * `position` meets members at the same steps, so picks of two calls compare).
   */
  private spread (position: number, limit: number, accept: ((index: number) => boolean) | null, taken: readonly number[]): number[] {
    const out: number[] = []
    const n = this.tokens.length
    const memberCount = this.members.length
    const stamp = this.nextStamp()
    const seen = this.seenMark
    const usedLocation = this.locationMark
    const steps = this.stepMark
    let locationsUsed = 0
    for (const t of taken) {
      seen[t] = stamp
      if (usedLocation[this.locationOf[t]!] !== stamp) { usedLocation[this.locationOf[t]!] = stamp; locationsUsed++ }
    }
    let deferred: number[] = []
    let found = taken.length
    for (let i = this.successor(position), step = 0; step < n && found < memberCount; step++, i = i + 1 === n ? 0 : i + 1) {
      const owner = this.owners[i]!
      if (seen[owner] === stamp) continue
      seen[owner] = stamp
      found++
      if (accept !== null && !accept(owner)) continue
      steps[owner] = step
      const location = this.locationOf[owner]!
      if (usedLocation[location] === stamp) {
        if (locationsUsed < this.locationCount) { deferred.push(owner); continue }
      } else {
        usedLocation[location] = stamp
        locationsUsed++
      }
      out.push(owner)
      if (out.length === limit) return out
      // The last new location just got used: what was skipped for its location comes first now.
      if (locationsUsed === this.locationCount && deferred.length > 0) {
        for (const d of deferred) {
          out.push(d)
          if (out.length === limit) return out
        }
        deferred = []
      }
    }
    // Every member seen: the skipped ones fill the places left.
    for (const d of deferred) {
      out.push(d)
      if (out.length === limit) break
    }
    return out
  }

  private nextStamp (): number {
    if (++this.stamp === 0xffffffff) {
      this.seenMark.fill(0)
      this.locationMark.fill(0)
      this.stamp = 1
    }
    return this.stamp
  }

  /** The first `limit` distinct members clockwise that `accept` lets in: `choose` on a plain ring. */
  private walk (position: number, limit: number, accept: ((index: number) => boolean) | null, out: number[]): number[] {
    const n = this.tokens.length
    const stamp = this.nextStamp()
    const seen = this.seenMark
    let found = 0
    for (let i = this.successor(position), steps = 0; steps < n && found < this.members.length; steps++, i = i + 1 === n ? 0 : i + 1) {
      const owner = this.owners[i]!
      if (seen[owner] === stamp) continue
      seen[owner] = stamp
      found++
      if (accept !== null && !accept(owner)) continue
      out.push(owner)
      if (out.length === limit) break
    }
    return out
  }

  /** Durable members a key's primaries hold: `minDurable`, capped by the ring's durable members and N. */
  durableWanted (n: number): number {
    return Math.min(this.minDurable, this.durableCount, n)
  }

  /**
   * The key's primaries: `n` distinct members chosen clockwise from `position` by the placement rules, up or
   * not. Every position up to a token has that token's primaries, so they are computed once per token and n
   * (every write asks, through the key index): the array returned is shared, never to be changed.
   */
  primaries (position: number, n: number): readonly string[] {
    if (this.tokens.length === 0) return []
    let cached = this.primariesCache.get(n)
    if (cached === undefined) this.primariesCache.set(n, cached = new Array<string[] | undefined>(this.tokens.length))
    const at = this.successor(position)
    return (cached[at] ??= this.choose(position, n, null, [], this.durableWanted(n)).map(i => this.members[i]!.id))
  }

  private readonly primariesCache = new Map<number, Array<string[] | undefined>>()

  /** The primaries with the rule that chose each (for inspection). */
  explain (position: number, n: number): Array<{ id: string; reason: Reason }> {
    const reasons: Reason[] = []
    return this.choose(position, n, null, [], this.durableWanted(n), reasons).map((i, k) => ({ id: this.members[i]!.id, reason: reasons[k]! }))
  }

  /**
   * The preference list for `position` (riak_core_apl's annotated list): each primary that is up, and for
   * each primary that is down, an up member beyond the primaries, marked as a fallback holding a hint for
   * it. Fallbacks are chosen by the same rules, with the up primaries counted as taken: a new location
   * first, and durable while the list holds fewer durable members than wanted (capped by the durable members
   * that are up). Shorter than `n` only when fewer than `n` members are up.
   */
  preferenceList (position: number, n: number, isUp: (id: string) => boolean): PreferenceEntry[] {
    const primaries = this.choose(position, n, null, [], this.durableWanted(n))
    const upPrimaries: number[] = []
    const down: number[] = []
    for (const p of primaries) (isUp(this.members[p]!.id) ? upPrimaries : down).push(p)
    const list: PreferenceEntry[] = upPrimaries.map(i => ({ id: this.members[i]!.id, role: 'primary' as const }))
    if (down.length === 0) return list
    // Down primaries are not up, and up ones are taken: neither can be chosen again.
    const fallbacks = this.fallbacks(position, n, upPrimaries, down.length, isUp, NO_MEMBERS)
    // A durable fallback stands in for a durable primary where it can, so its hint goes back to one.
    const downDurableFirst = [...down].sort((a, b) => this.durableOf[b]! - this.durableOf[a]!)
    const fallbacksDurableFirst = [...fallbacks].sort((a, b) => this.durableOf[b]! - this.durableOf[a]!)
    const hintOf = new Map<number, number>()
    for (let i = 0; i < fallbacksDurableFirst.length; i++) hintOf.set(fallbacksDurableFirst[i]!, downDurableFirst[i]!)
    for (const f of fallbacks) list.push({ id: this.members[f]!.id, role: 'fallback', hintFor: this.members[hintOf.get(f)!]!.id })
    return list
  }

  /**
   * Up to `count` more up members for a key whose list already holds `taken` (by index), excluding
   * `exclude` (by index), chosen by the placement rules: for fallbacks, and for hedged requests to a replica
   * that is slow to answer. `needDurable` overrides the durable members wanted (capped by those up).
   */
  private fallbacks (position: number, n: number, taken: readonly number[], count: number, isUp: (id: string) => boolean, exclude: ReadonlySet<number>, needDurable?: number): number[] {
    const need = Math.min(needDurable ?? Math.min(this.minDurable, n), this.durableUp(isUp))
    return this.choose(position, count, i => !exclude.has(i) && isUp(this.members[i]!.id), taken, need)
  }

  /**
   * The next member to send a key's request to when the replicas in `exclude` are slow, down or already
   * asked: an up member not in `exclude`, chosen by the placement rules with `taken` (the replicas that do
   * hold the request) counted as chosen, so it is durable while fewer than `needDurable` (default the
   * ring's `minDurable`) of those are. With `durableOnly`, only a durable member. Undefined when no member is
   * left.
   */
  nextFallback (position: number, n: number, exclude: Iterable<string>, taken: Iterable<string>, isUp: (id: string) => boolean, options: { needDurable?: number; durableOnly?: boolean } = {}): string | undefined {
    const excluded = new Set<number>()
    for (const id of exclude) { const i = this.index.get(id); if (i !== undefined) excluded.add(i) }
    const chosen: number[] = []
    for (const id of taken) { const i = this.index.get(id); if (i !== undefined) chosen.push(i) }
    const up = options.durableOnly === true ? (id: string) => isUp(id) && this.isDurable(id) : isUp
    const [next] = this.fallbacks(position, n, chosen, 1, up, excluded, options.needDurable)
    return next === undefined ? undefined : this.members[next]!.id
  }

  /** Durable members of the ring that `isUp` says are up. */
  durableUp (isUp: (id: string) => boolean): number {
    let up = 0
    for (let i = 0; i < this.members.length; i++) if (this.durableOf[i] === 1 && isUp(this.members[i]!.id)) up++
    return up
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
