/**
 * Which peers run a version older than a request type: each answered it ERR_UNSUPPORTED, so the next one goes
 * straight to the fallback (the expiry check: a plain 'read') instead of costing a round trip more every
 * time. A peer keeps its id across an upgrade, and an upgraded peer must be asked again (the expiry check
 * carries its detector's health, which a read does not): every membership change forgets them all (a
 * restarted peer goes down and comes back), and an entry lasts OLDER_PEER_MEMORY_MS at most. At most
 * OLDER_PEERS_MAX peers (the oldest remembered is forgotten first), so peers named by the network cannot
 * grow it.
 */

/** How long a peer is taken to be older after its last ERR_UNSUPPORTED. */
export const OLDER_PEER_MEMORY_MS = 60_000
/** Peers remembered at most. */
export const OLDER_PEERS_MAX = 1024

export class OlderPeers {
  /** Peer -> when it was last seen older (insertion order: the oldest first). */
  private readonly seen = new Map<string, number>()

  /** `id` answered ERR_UNSUPPORTED at `nowMs`. */
  note (id: string, nowMs: number): void {
    this.seen.delete(id)
    if (this.seen.size >= OLDER_PEERS_MAX) this.seen.delete(this.seen.keys().next().value!)
    this.seen.set(id, nowMs)
  }

  /** Whether `id` is taken to be older at `nowMs`. */
  has (id: string, nowMs: number): boolean {
    const at = this.seen.get(id)
    if (at === undefined) return false
    if (nowMs - at < OLDER_PEER_MEMORY_MS) return true
    this.seen.delete(id)
    return false
  }

  /** Forgets every peer (membership changed). */
  clear (): void { this.seen.clear() }

  get size (): number { return this.seen.size }
}
