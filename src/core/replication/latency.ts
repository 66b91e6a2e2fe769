/**
 * Each peer's observed round trips, for hedged requests (Dynamo §4.6; "The Tail at Scale", Dean and Barroso
 * 2013): a replica that has not answered after a multiple of its own p99 gets a second request sent to the
 * next member of the preference list, so a tab that vanished without a word delays writes by about its p99,
 * not until SWIM declares it dead or the request times out.
 *
 * Round trips go into a histogram per peer of BUCKETS buckets, each sqrt(2) times as wide as the one before
 * (1 ms to about 20 minutes), so a p99 costs a scan of 40 counters. Counts halve every DECAY_EVERY samples:
 * the estimate follows a peer that slows down or recovers. At most `peersMax` peers are tracked; the
 * membership prunes the rest.
 */

const BUCKETS = 40
const DECAY_EVERY = 512
/** Round trips seen before a peer's p99 is trusted; until then a hedge uses the p99 of every peer's round
 * trips pooled, or the upper bound before that many were seen at all. */
export const HEDGE_SAMPLES_MIN = 16

/** Upper bound (ms) of bucket i: 2^((i + 1) / 2). */
const UPPER = Array.from({ length: BUCKETS }, (_, i) => 2 ** ((i + 1) / 2))

function bucketOf (ms: number): number {
  if (ms <= 1) return 0
  const b = Math.ceil(2 * Math.log2(ms)) - 1
  return b >= BUCKETS ? BUCKETS - 1 : b
}

class Histogram {
  readonly counts = new Uint32Array(BUCKETS)
  total = 0
  sinceDecay = 0
  /** The p99 as of the last sample (recomputed every few samples). */
  p99 = Infinity

  add (ms: number): void {
    this.counts[bucketOf(ms)]!++
    this.total++
    if (++this.sinceDecay >= DECAY_EVERY) {
      this.sinceDecay = 0
      let total = 0
      for (let i = 0; i < BUCKETS; i++) total += (this.counts[i] = this.counts[i]! >>> 1)
      this.total = total
    }
    if ((this.total & 7) === 0 || this.total < HEDGE_SAMPLES_MIN * 2) this.p99 = this.quantile(0.99)
  }

  quantile (q: number): number {
    const want = Math.ceil(this.total * q)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!
      if (seen >= want) return UPPER[i]!
    }
    return UPPER[BUCKETS - 1]!
  }
}

export interface HedgeSettings {
  /** Multiple of the peer's p99; 0 turns hedging off. */
  multiplier: number
  minMs: number
  maxMs: number
}

export class Latencies {
  private readonly peers = new Map<string, Histogram>()
  /** Every peer's round trips together: the estimate for a peer not yet seen often enough (a tab that just
   * joined, whose first requests would otherwise wait the upper bound). */
  private readonly pooled = new Histogram()

  constructor (private readonly settings: HedgeSettings, private readonly peersMax = 4096) {}

  readonly record = (peer: string, ms: number): void => {
    this.pooled.add(ms)
    let h = this.peers.get(peer)
    if (h === undefined) {
      if (this.peers.size >= this.peersMax) return
      this.peers.set(peer, h = new Histogram())
    }
    h.add(ms)
  }

  /** The peer's p99 round trip in ms, or undefined before it has answered HEDGE_SAMPLES_MIN requests. */
  p99 (peer: string): number | undefined {
    const h = this.peers.get(peer)
    return h === undefined || h.total < HEDGE_SAMPLES_MIN ? undefined : h.p99
  }

  /** How long to wait for `peer` before hedging: the multiple of its p99, within the bounds; undefined if off. */
  hedgeAfterMs (peer: string): number | undefined {
    const { multiplier, minMs, maxMs } = this.settings
    if (multiplier === 0) return undefined
    const p99 = this.p99(peer) ?? (this.pooled.total < HEDGE_SAMPLES_MIN ? undefined : this.pooled.p99)
    if (p99 === undefined) return maxMs
    return Math.min(maxMs, Math.max(minMs, Math.ceil(p99 * multiplier)))
  }

  /** Forgets peers that are no longer members. */
  retain (isMember: (peer: string) => boolean): void {
    for (const peer of this.peers.keys()) if (!isMember(peer)) this.peers.delete(peer)
  }
}
