/**
 * Which peers run a version older than a request type: each answered it ERR_UNSUPPORTED, so the next one goes
 * straight to the fallback instead of costing a round trip more every time. How old is a level: the expiry
 * check asks 'beat-check', then (level 1) 'expiry-check', then (level 2) a plain 'read'. A peer keeps its
 * id across an upgrade, and an upgraded peer must be asked again (the expiry check carries its detector's
 * health, which a read does not): every membership change forgets them all (a
 * restarted peer goes down and comes back), and an entry lasts OLDER_PEER_MEMORY_MS at most. At most
 * OLDER_PEERS_MAX peers (the oldest remembered is forgotten first), so peers named by the network cannot
 * grow it.
 */

/** How long a peer is taken to be older after its last ERR_UNSUPPORTED. */
export const OLDER_PEER_MEMORY_MS = 60_000
/** Peers remembered at most. */
export const OLDER_PEERS_MAX = 1024

export class OlderPeers {
  /** Peer -> when it was last seen older, and how old (insertion order: the oldest first). */
  private readonly seen = new Map<string, { at: number; level: number }>()

  /** `id` answered ERR_UNSUPPORTED at `nowMs` to the request of fallback level `level` - 1. */
  note (id: string, nowMs: number, level = 1): void {
    const was = this.level(id, nowMs)
    this.seen.delete(id)
    if (this.seen.size >= OLDER_PEERS_MAX) this.seen.delete(this.seen.keys().next().value!)
    this.seen.set(id, { at: nowMs, level: Math.max(level, was) })
  }

  /** How old `id` is taken to be at `nowMs`: 0 if not older. */
  level (id: string, nowMs: number): number {
    const seen = this.seen.get(id)
    if (seen === undefined) return 0
    if (nowMs - seen.at < OLDER_PEER_MEMORY_MS) return seen.level
    this.seen.delete(id)
    return 0
  }

  /** Whether `id` is taken to be older at `nowMs`. */
  has (id: string, nowMs: number): boolean {
    return this.level(id, nowMs) > 0
  }

  /** Forgets every peer (membership changed). */
  clear (): void { this.seen.clear() }

  get size (): number { return this.seen.size }
}
