/**
 * SWIM's infection-style dissemination: the queue of membership updates waiting to ride on outgoing
 * messages, and the choice of which ones ride on each. An update is retransmitted about lambda*log(n) times
 * (`retransmitLimit`) and then dropped; newer news about a member replaces older news about it; a message
 * takes the least-sent updates first, newest first among equals. memberlist's TransmitLimitedQueue is the
 * model. The queue never decides what is news: the membership rules (members.ts) and the failure detector
 * (swim.ts) enqueue, and every message swim.ts sends asks `piggyback` what to carry.
 */
import { type SwimConfig, retransmitLimit } from './config.js'
import type { Update } from './swim.js'

export class BroadcastQueue {
  /** Pending updates by member id; `queue[t]` holds the ids sent t times (memberlist orders its queue the
   * same way), so picking the least-sent updates costs O(piggybackMax), not a sort. */
  private readonly broadcasts = new Map<string, { update: Update; transmits: number }>()
  private readonly queue: Array<Set<string>> = []

  constructor (private readonly config: SwimConfig) {}

  /** Updates waiting to be (re)transmitted: the dissemination backlog. */
  get size (): number { return this.broadcasts.size }

  /** Whether news about member `id` is still being retransmitted. */
  has (id: string): boolean {
    return this.broadcasts.has(id)
  }

  enqueue (update: Update): void {
    // Newer news about a member replaces older news about it.
    const previous = this.broadcasts.get(update.id)
    if (previous !== undefined) this.queue[previous.transmits]?.delete(update.id)
    this.broadcasts.set(update.id, { update, transmits: 0 })
    ;(this.queue[0] ??= new Set()).add(update.id)
  }

  /** Drops pending news about a member that is being forgotten. */
  remove (id: string): void {
    const b = this.broadcasts.get(id)
    if (b !== undefined) { this.queue[b.transmits]?.delete(id); this.broadcasts.delete(id) }
  }

  /**
   * Takes the least-sent pending updates for one message to `to`; each is dropped after its retransmit limit,
   * which grows with `liveCount` (alive and suspect members, self included).
   */
  piggyback (to: string, liveCount: number): Update[] {
    if (this.broadcasts.size === 0) return []
    const limit = retransmitLimit(this.config, liveCount)
    const out: Update[] = []
    const moved: string[] = []
    for (let t = 0; t < this.queue.length && out.length < this.config.piggybackMax; t++) {
      const bucket = this.queue[t]
      if (bucket === undefined || bucket.size === 0) continue
      // Newest first within a transmit count (as memberlist does): a fresh refutation must not wait behind
      // a backlog of older news, or a live member can be declared dead before its refutation spreads.
      for (const id of bucket.size <= this.config.piggybackMax - out.length ? bucket : [...bucket].reverse()) {
        if (out.length >= this.config.piggybackMax) break
        const b = this.broadcasts.get(id)!
        if (b.update.id === to && b.update.state === 'alive') continue // it knows it is alive
        out.push(b.update)
        moved.push(id)
      }
    }
    for (const id of moved) {
      const b = this.broadcasts.get(id)!
      this.queue[b.transmits]!.delete(id)
      b.transmits++
      if (b.transmits >= limit) this.broadcasts.delete(id)
      else (this.queue[b.transmits] ??= new Set()).add(id)
    }
    return out
  }
}
