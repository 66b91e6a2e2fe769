/**
 * The membership table of one SWIM member and the rules for changing it: what it knows of every member
 * (incarnation, state, metadata, suspicion) and how an update about one is applied. SWIM's precedence: news
 * at a higher incarnation wins; at the same incarnation suspect overrides alive, and dead or left override
 * both (a leave also overrides a death: the member said goodbye itself); only a member raises its own
 * incarnation, to refute. Lifeguard's suspicion lives here too: a suspect is declared dead at a deadline that
 * each independent confirmation moves toward the minimum timeout. The table decides and records, and queues
 * what it learns for dissemination; probing, refuting and sending stay in swim.ts, which learns from
 * `apply`'s result when news about itself needs refuting or a new member joins its probe round.
 */
import { type SwimConfig, suspicionTimeouts } from './config.js'
import type { BroadcastQueue } from './dissemination.js'
import type { Effect, MemberState, MemberView, Meta, SwimStats, Update } from './swim.js'

export interface Member {
  id: string
  incarnation: number
  state: MemberState
  meta: Meta
  sinceMs: number
  /** `accuser`: who raised it first, if known; carried in full-state exchanges so receivers do not take the
   * relayer for an independent accuser. */
  suspicion: { startMs: number; accuser: string | undefined; confirmations: Set<string>; deadlineMs: number } | null
}

/**
 * Updates claiming a larger incarnation are ignored: otherwise one hostile message ("dead at 2^53 - 1")
 * would force a refutation past what any decoder accepts and evict the member for good. A member that
 * refutes honestly raises its incarnation by one per suspicion and never comes near this.
 */
export const INCARNATION_MAX = 2 ** 48

const RANK: Record<MemberState, number> = { alive: 0, suspect: 1, dead: 2, left: 2 }

export function viewOf (m: Member): MemberView {
  return { id: m.id, state: m.state, incarnation: m.incarnation, meta: m.meta, sinceMs: m.sinceMs }
}

export function updateOf (m: Member, from?: string): Update {
  return from === undefined
    ? { id: m.id, incarnation: m.incarnation, state: m.state, meta: m.meta }
    : { id: m.id, incarnation: m.incarnation, state: m.state, meta: m.meta, from }
}

export class MemberTable {
  private readonly members = new Map<string, Member>()
  private readonly suspects = new Set<string>()
  /** Members a membership size formula counts: alive or suspect, self included. Read for every message
   * sent, so kept as a counter. */
  private live = 1

  constructor (readonly self: Member, private readonly config: SwimConfig, private readonly stats: SwimStats, private readonly broadcasts: BroadcastQueue) {
    this.members.set(self.id, self)
  }

  get liveCount (): number { return this.live }

  get (id: string): Member | undefined {
    return this.members.get(id)
  }

  values (): IterableIterator<Member> {
    return this.members.values()
  }

  keys (): IterableIterator<string> {
    return this.members.keys()
  }

  /** The earliest suspicion deadline, Infinity without suspects. */
  suspicionDeadlineMs (): number {
    let t = Infinity
    for (const id of this.suspects) t = Math.min(t, this.members.get(id)!.suspicion!.deadlineMs)
    return t
  }

  /** Every member as an update, for a full-state exchange. */
  fullState (): Update[] {
    return [...this.members.values()].map(m => updateOf(m, m.suspicion?.accuser))
  }

  setState (m: Member, state: MemberState, nowMs: number, effects: Effect[]): void {
    const previous = m.state
    const wasLive = previous === 'alive' || previous === 'suspect'
    const isLive = state === 'alive' || state === 'suspect'
    if (wasLive !== isLive) this.live += isLive ? 1 : -1
    m.state = state
    m.sinceMs = nowMs
    if (state !== 'suspect') {
      m.suspicion = null
      this.suspects.delete(m.id)
    }
    effects.push({ type: 'change', member: viewOf(m), previous })
  }

  suspect (m: Member, incarnation: number, from: string | undefined, nowMs: number, effects: Effect[]): void {
    const n = this.live
    const { minMs, maxMs } = suspicionTimeouts(this.config, n)
    m.incarnation = incarnation
    this.setState(m, 'suspect', nowMs, effects)
    m.suspicion = { startMs: nowMs, accuser: from, confirmations: new Set(from === undefined ? [] : [from]), deadlineMs: nowMs + maxMs }
    if (minMs === maxMs) m.suspicion.deadlineMs = nowMs + minMs
    this.suspects.add(m.id)
    this.stats.suspicions++
    this.broadcasts.enqueue(updateOf(m, from))
  }

  /** Lifeguard: each independent confirmation moves the deadline toward the minimum timeout. */
  /** Returns true when `from` is a new, independent confirmation. */
  confirm (m: Member, from: string | undefined): boolean {
    const s = m.suspicion!
    // Only an independent member's own suspicion counts (a full-state exchange carries no accuser).
    if (from === undefined || from === m.id || s.confirmations.has(from)) return false
    s.confirmations.add(from)
    const n = this.live
    const { minMs, maxMs } = suspicionTimeouts(this.config, n)
    const expected = Math.max(0, Math.min(this.config.suspicionMult - 2, n - 2))
    const c = s.confirmations.size - 1
    const timeout = expected < 1 ? minMs : Math.max(minMs, maxMs - (maxMs - minMs) * Math.log(c + 1) / Math.log(expected + 1))
    s.deadlineMs = s.startMs + timeout
    return true
  }

  /** Declares dead every suspect whose deadline has passed without a refutation. */
  expireSuspicions (nowMs: number, effects: Effect[]): void {
    for (const id of [...this.suspects]) {
      const m = this.members.get(id)!
      if (m.suspicion!.deadlineMs <= nowMs) {
        this.stats.deaths++
        this.setState(m, 'dead', nowMs, effects)
        this.broadcasts.enqueue(updateOf(m, this.self.id))
      }
    }
  }

  /** Forgets members dead or left for `deadForgetMs`, with any news about them still queued. */
  forget (nowMs: number): void {
    for (const m of [...this.members.values()]) {
      if ((m.state === 'dead' || m.state === 'left') && m !== this.self && nowMs - m.sinceMs >= this.config.deadForgetMs) {
        this.members.delete(m.id)
        this.broadcasts.remove(m.id)
      }
    }
  }

  /** Metadata is checked where it would be stored, not for every update received. */
  private metaTooLarge (u: Update): boolean {
    if (JSON.stringify(u.meta).length <= this.config.metaBytesMax) return false
    this.stats.updatesDropped++
    return true
  }

  /**
   * Applies one received update. Returns 'refute' when it is news about this member that must be refuted
   * (anything but alive at our incarnation, or anything above it), 'joined' when it added a member this one
   * did not know, and null otherwise.
   */
  apply (u: Update, nowMs: number, effects: Effect[]): 'refute' | 'joined' | null {
    if (u.incarnation > INCARNATION_MAX) {
      this.stats.updatesDropped++
      return null
    }
    if (u.id === this.self.id) {
      // Others' news about us: anything but alive at our incarnation, or anything above it, is refuted.
      const stale = u.incarnation > this.self.incarnation || (u.state !== 'alive' && u.incarnation === this.self.incarnation)
      return stale ? 'refute' : null
    }
    let m = this.members.get(u.id)
    if (m === undefined) {
      if (u.state === 'dead' || u.state === 'left') return null // nothing to learn about a stranger's departure
      if (this.members.size >= this.config.membersMax) { this.stats.updatesDropped++; return null }
      if (this.metaTooLarge(u)) return null
      m = { id: u.id, incarnation: u.incarnation, state: 'alive', meta: u.meta, sinceMs: nowMs, suspicion: null }
      this.members.set(u.id, m)
      this.live++
      this.stats.updatesApplied++
      effects.push({ type: 'change', member: viewOf(m), previous: null })
      this.broadcasts.enqueue(updateOf(m))
      if (u.state === 'suspect') this.suspect(m, u.incarnation, u.from, nowMs, effects)
      return 'joined'
    }
    switch (u.state) {
      case 'alive':
        if (u.incarnation <= m.incarnation || this.metaTooLarge(u)) return null
        m.incarnation = u.incarnation
        m.meta = u.meta
        if (m.state !== 'alive') this.setState(m, 'alive', nowMs, effects)
        else effects.push({ type: 'change', member: viewOf(m), previous: 'alive' })
        break
      case 'suspect':
        if (u.incarnation < m.incarnation || m.state === 'dead' || m.state === 'left') return null
        if (m.state === 'suspect' && u.incarnation === m.incarnation) {
          // A new confirmation is passed on (memberlist does the same), so others can count it too.
          if (this.confirm(m, u.from)) this.broadcasts.enqueue(updateOf(m, u.from))
          return null
        }
        if (u.incarnation === m.incarnation && m.state !== 'alive') return null
        this.suspect(m, u.incarnation, u.from, nowMs, effects)
        this.stats.updatesApplied++
        return null
      case 'dead':
      case 'left':
        if (u.incarnation < m.incarnation || RANK[m.state] >= RANK.dead) {
          // A leave overrides a death at the same incarnation: the member said goodbye itself.
          if (!(u.state === 'left' && m.state === 'dead' && u.incarnation >= m.incarnation)) return null
        }
        m.incarnation = u.incarnation
        if (u.state === 'dead') this.stats.deaths++
        this.setState(m, u.state, nowMs, effects)
        break
    }
    this.stats.updatesApplied++
    this.broadcasts.enqueue(updateOf(m, u.from))
    return null
  }
}
