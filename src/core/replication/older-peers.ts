/**
 * Which peers run a version older than a request type: each answered it ERR_UNSUPPORTED, so the next one goes
 * straight to the fallback (the expiry check: a plain 'read') instead of costing a round trip more every
 * time. Remembered for OLDER_PEER_MEMORY_MS, since a peer keeps its id across an upgrade; at most
 * OLDER_PEERS_MAX peers (the oldest remembered is forgotten first), so peers named by the network cannot grow it.
 */

/** How long a peer is taken to be older after its last ERR_UNSUPPORTED. */
export const OLDER_PEER_MEMORY_MS = 10 * 60_000
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

  get size (): number { return this.seen.size }
}
