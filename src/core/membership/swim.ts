/**
 * SWIM membership with Lifeguard, as a pure state machine (Das et al., "SWIM", 2002; Dadgar et al.,
 * "Lifeguard", 2018; memberlist is the reference implementation). It never sends, sleeps or reads a clock:
 * `tick(now)` and `receive(from, message, now)` return effects — messages to send and membership changes —
 * that a service performs, and `nextWakeMs()` says when to tick next. The same code runs over libp2p streams
 * and in the deterministic simulator (test/sim), where a seed replays any run.
 *
 * - Failure detection: one member is probed per period (round-robin over a shuffled list); no ack within
 *   the probe timeout -> ping-req through k others; no ack by the end of the period -> suspect.
 * - Suspicion: a suspect that does not refute (by raising its incarnation) within the suspicion timeout is
 *   declared dead. Lifeguard: the timeout shrinks as independent members confirm the suspicion, and a member
 *   probed while suspected is told so (the buddy system) so it can refute at once. The membership table,
 *   its update rules and the suspicion deadlines live in members.ts.
 * - Dissemination: updates ride on every message (and on a periodic gossip round), each retransmitted about
 *   lambda*log(n) times; a newer update about a member replaces the older one in the queue
 *   (dissemination.ts).
 * - Local health (Lifeguard): missed acks and nacks raise an awareness score that stretches this member's
 *   probe timeouts, so a slow member does not accuse healthy ones.
 * - Anti-entropy: a periodic full-state push-pull with a random member (also with recently dead ones, which
 *   is how two halves of a healed partition find each other); joining is a push-pull with a seed.
 * - Refusal: with a `compatibility` check (src/core/agreement.ts: N, protocol version, ring scheme), a
 *   member whose metadata fails it never enters the table. A push-pull from such a member is refused
 *   whole (memberlist cancels the merge the same way), answered with this member's own record only so the
 *   other side learns why, and its other messages are ignored; news of it from third parties is dropped.
 *   Each refusal is reported once per member and reason (a `refused` effect), not once per message.
 */
import type { Rng } from '../env.js'
import { ConfigError } from '../errors.js'
import { type SwimConfig, validateSwimConfig } from './config.js'
import { BroadcastQueue } from './dissemination.js'
import { type Member, MemberTable, updateOf, viewOf } from './members.js'

export { INCARNATION_MAX } from './members.js'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** Small descriptive data a member publishes about itself (kind, vnodes, protocol version, addresses). */
export type Meta = Readonly<Record<string, string | number>>

/** What one member says about another (or about itself). */
export interface Update {
  readonly id: string
  readonly incarnation: number
  readonly state: MemberState
  readonly meta: Meta
  /** Who raised a suspicion or declared a death (Lifeguard counts independent confirmations). */
  readonly from?: string
}

export type SwimMessage =
  | { readonly type: 'ping'; readonly seq: number; readonly updates: readonly Update[] }
  | { readonly type: 'ack'; readonly seq: number; readonly updates: readonly Update[] }
  | { readonly type: 'ping-req'; readonly seq: number; readonly target: string; readonly updates: readonly Update[] }
  | { readonly type: 'nack'; readonly seq: number; readonly updates: readonly Update[] }
  | { readonly type: 'gossip'; readonly updates: readonly Update[] }
  | { readonly type: 'push-pull'; readonly join: boolean; readonly reply: boolean; readonly members: readonly Update[] }

export interface MemberView {
  readonly id: string
  readonly state: MemberState
  readonly incarnation: number
  readonly meta: Meta
  /** When this member last changed state, by the clock the machine is driven with. */
  readonly sinceMs: number
}

export type Effect =
  | { readonly type: 'send'; readonly to: string; readonly message: SwimMessage }
  | { readonly type: 'change'; readonly member: MemberView; readonly previous: MemberState | null }
  /** A member was refused: `reason` from the compatibility check; `direct` when it came from the member
   * itself (its push-pull), not from a third party's news. */
  | { readonly type: 'refused'; readonly id: string; readonly meta: Meta; readonly reason: string; readonly direct: boolean }

export interface SwimOptions {
  /**
   * Why a member publishing `meta` cannot join this member's mesh, or null when it can. Checked for every
   * member before it enters the table and whenever its record is replaced. Default: every member can.
   */
  compatibility?: (meta: Meta) => string | null
}

export interface SwimStats {
  probes: number
  probesFailed: number
  indirectProbes: number
  suspicions: number
  refutations: number
  deaths: number
  updatesApplied: number
  updatesDropped: number
  messagesReceived: number
  awareness: number
  /** Members refused by the compatibility check: one per member and reason (what is logged). */
  incompatible: number
  /** Messages and updates ignored because they came from or told of a refused member. */
  incompatibleIgnored: number
}

interface Probe {
  target: string
  seq: number
  timeoutAtMs: number
  endAtMs: number
  acked: boolean
  indirectSent: boolean
  expectedNacks: number
  nacks: number
}

/** Most ping-reqs this member relays at once; further requests are ignored (the origin sees no nack). */
const RELAYS_MAX = 1024
/** A relay answers a ping-req with a nack after this fraction of the probe timeout, so that the nack
 * reaches the origin before its probe period ends (Lifeguard counts missing nacks against local health). */
const NACK_FRACTION = 0.8
/** Refused members remembered (so each is reported once, and its messages ignored); the oldest is forgotten
 * first, and reported again if it comes back. */
export const REFUSED_MAX = 1024

export class Swim {
  readonly config: SwimConfig
  readonly stats: SwimStats = { probes: 0, probesFailed: 0, indirectProbes: 0, suspicions: 0, refutations: 0, deaths: 0, updatesApplied: 0, updatesDropped: 0, messagesReceived: 0, awareness: 0, incompatible: 0, incompatibleIgnored: 0 }
  private readonly members: MemberTable
  /** This member's own record (the table's `self`), at hand for the many reads of its id and incarnation. */
  private readonly self: Member
  private readonly broadcasts: BroadcastQueue
  private readonly relays = new Map<number, { origin: string; originSeq: number; expiresMs: number }>()
  private probeOrder: string[] = []
  private probeIndex = 0
  private probe: Probe | null = null
  private seq = 0
  private awareness = 0
  private nextProbeMs: number
  private nextGossipMs: number
  private nextPushPullMs: number
  private leaving = false
  /** Refused members by id: why, and the highest incarnation refused (older news of it is stale). */
  private readonly refused = new Map<string, { reason: string; incarnation: number }>()
  private readonly compatibility: ((meta: Meta) => string | null) | undefined

  constructor (id: string, meta: Meta, incarnation: number, config: SwimConfig, private readonly rng: Rng, nowMs: number, options: SwimOptions = {}) {
    this.compatibility = options.compatibility
    this.config = validateSwimConfig({ ...config })
    if (id.length === 0) throw new ConfigError('id', 'must not be empty')
    if (!Number.isInteger(incarnation) || incarnation < 0) throw new ConfigError('incarnation', `must be a non-negative integer, got ${incarnation}`)
    this.checkMeta(meta)
    this.broadcasts = new BroadcastQueue(this.config)
    this.members = new MemberTable({ id, incarnation, state: 'alive', meta, sinceMs: nowMs, suspicion: null }, this.config, this.stats, this.broadcasts)
    this.self = this.members.self
    this.nextProbeMs = nowMs + this.config.probeIntervalMs * rng.next()
    this.nextGossipMs = nowMs + this.config.gossipIntervalMs
    this.nextPushPullMs = nowMs + this.config.pushPullIntervalMs * (0.5 + rng.next())
    this.broadcasts.enqueue(updateOf(this.self))
  }

  get id (): string { return this.self.id }
  /** Updates waiting to be (re)transmitted: the dissemination backlog. */
  get pendingUpdates (): number { return this.broadcasts.size }
  get incarnation (): number { return this.self.incarnation }

  private checkMeta (meta: Meta): void {
    const bytes = JSON.stringify(meta).length
    if (bytes > this.config.metaBytesMax) throw new ConfigError('meta', `${bytes} bytes exceeds metaBytesMax=${this.config.metaBytesMax}`)
  }

  // ---------------------------------------------------------------- views

  /** A member's state, without building its view (for checks on every request). */
  stateOf (id: string): MemberState | undefined {
    return this.members.get(id)?.state
  }

  view (id: string): MemberView | undefined {
    const m = this.members.get(id)
    return m === undefined ? undefined : viewOf(m)
  }

  list (): MemberView[] {
    return [...this.members.values()].map(m => viewOf(m)).sort((a, b) => (a.id < b.id ? -1 : 1))
  }

  /** Why member `id` was refused, if it was (and is still remembered). */
  refusal (id: string): string | undefined {
    return this.refused.get(id)?.reason
  }

  /** The earliest time at which `tick` has something to do (it may be called earlier or more often). */
  nextWakeMs (): number {
    if (this.leaving) return this.nextGossipMs
    const p = this.probe
    // While a probe runs, the next one waits for it to end.
    let t = Math.min(p === null ? this.nextProbeMs : (p.acked || p.indirectSent ? p.endAtMs : p.timeoutAtMs), this.nextGossipMs, this.nextPushPullMs, this.members.suspicionDeadlineMs())
    for (const r of this.relays.values()) t = Math.min(t, r.expiresMs)
    return t
  }

  // ---------------------------------------------------------------- driving

  /** Joins through seeds: a full-state exchange with each. */
  join (seeds: readonly string[]): Effect[] {
    const effects: Effect[] = []
    const members = this.members.fullState()
    for (const to of seeds) if (to !== this.self.id) effects.push({ type: 'send', to, message: { type: 'push-pull', join: true, reply: false, members } })
    return effects
  }

  /**
   * Leaves gracefully: announces `left` with a higher incarnation, so the others record a departure rather
   * than a failure. The caller keeps running the machine a little (until `leaveDisseminated()`) so the
   * announcement spreads, then stops.
   */
  leave (nowMs: number): Effect[] {
    const effects: Effect[] = []
    this.leaving = true
    this.self.incarnation++
    this.members.setState(this.self, 'left', nowMs, effects)
    this.broadcasts.enqueue(updateOf(this.self))
    // Tell several members directly rather than waiting for the next gossip round.
    for (const to of this.pick(Math.max(this.config.gossipNodes, this.config.indirectChecks), m => m.state === 'alive' || m.state === 'suspect')) {
      effects.push({ type: 'send', to, message: { type: 'gossip', updates: this.broadcasts.piggyback(to, this.members.liveCount) } })
    }
    return effects
  }

  /** True once the leave announcement has been sent as often as any update is retransmitted. */
  leaveDisseminated (): boolean {
    return this.leaving && !this.broadcasts.has(this.self.id)
  }

  /** Sets this member's metadata and announces it. */
  setMeta (meta: Meta): void {
    this.checkMeta(meta)
    this.self.meta = meta
    this.self.incarnation++
    this.broadcasts.enqueue(updateOf(this.self))
  }

  tick (nowMs: number): Effect[] {
    const effects: Effect[] = []
    if (this.leaving) {
      if (nowMs >= this.nextGossipMs) this.gossip(nowMs, effects)
      return effects
    }
    this.probeTimers(nowMs, effects)
    if (this.probe === null && nowMs >= this.nextProbeMs) this.startProbe(nowMs, effects)
    this.members.expireSuspicions(nowMs, effects)
    for (const [seq, relay] of this.relays) {
      if (relay.expiresMs <= nowMs) {
        this.relays.delete(seq)
        effects.push({ type: 'send', to: relay.origin, message: { type: 'nack', seq: relay.originSeq, updates: this.broadcasts.piggyback(relay.origin, this.members.liveCount) } })
      }
    }
    if (nowMs >= this.nextGossipMs) this.gossip(nowMs, effects)
    if (nowMs >= this.nextPushPullMs) {
      this.nextPushPullMs = nowMs + this.config.pushPullIntervalMs
      const [to] = this.pick(1, m => m.state === 'alive' || m.state === 'suspect' || (m.state === 'dead' && nowMs - m.sinceMs < this.config.deadReconnectMs))
      if (to !== undefined) effects.push({ type: 'send', to, message: { type: 'push-pull', join: false, reply: false, members: this.members.fullState() } })
      this.members.forget(nowMs)
    }
    return effects
  }

  private scaled (ms: number): number {
    return ms * (this.awareness + 1)
  }

  private startProbe (nowMs: number, effects: Effect[]): void {
    this.nextProbeMs = nowMs + this.scaled(this.config.probeIntervalMs)
    const target = this.nextTarget()
    if (target === undefined) return
    const seq = ++this.seq
    this.probe = {
      target,
      seq,
      timeoutAtMs: nowMs + this.scaled(this.config.probeTimeoutMs),
      endAtMs: nowMs + this.scaled(this.config.probeIntervalMs),
      acked: false,
      indirectSent: false,
      expectedNacks: 0,
      nacks: 0
    }
    this.stats.probes++
    const updates = this.broadcasts.piggyback(target, this.members.liveCount)
    // Lifeguard's buddy system: a member we ping while suspecting it hears about it first.
    const m = this.members.get(target)!
    const buddy = m.state === 'suspect' ? [updateOf(m, this.self.id), ...updates.filter(u => u.id !== target)].slice(0, this.config.piggybackMax) : updates
    effects.push({ type: 'send', to: target, message: { type: 'ping', seq, updates: buddy } })
  }

  private probeTimers (nowMs: number, effects: Effect[]): void {
    const p = this.probe
    if (p === null) return
    if (!p.acked && !p.indirectSent && nowMs >= p.timeoutAtMs) {
      p.indirectSent = true
      const relays = this.pick(this.config.indirectChecks, m => m.state === 'alive' && m.id !== p.target)
      p.expectedNacks = relays.length
      this.stats.indirectProbes++
      for (const to of relays) effects.push({ type: 'send', to, message: { type: 'ping-req', seq: p.seq, target: p.target, updates: this.broadcasts.piggyback(to, this.members.liveCount) } })
    }
    if (nowMs < p.endAtMs && !p.acked) return
    this.probe = null
    if (p.acked) {
      this.adjustAwareness(-1)
      return
    }
    // Lifeguard: missing nacks mean *we* may be the slow one; no relays at all counts as one miss.
    this.adjustAwareness(p.expectedNacks > 0 ? p.expectedNacks - p.nacks : 1)
    this.stats.probesFailed++
    const m = this.members.get(p.target)
    if (m !== undefined && m.state === 'alive') this.members.suspect(m, m.incarnation, this.self.id, nowMs, effects)
    // Already suspected by someone else: our own failed probe is an independent confirmation (Lifeguard).
    else if (m !== undefined && m.state === 'suspect' && this.members.confirm(m, this.self.id)) this.broadcasts.enqueue(updateOf(m, this.self.id))
  }

  private adjustAwareness (delta: number): void {
    this.awareness = Math.max(0, Math.min(this.config.awarenessMax - 1, this.awareness + delta))
    this.stats.awareness = this.awareness
  }

  private nextTarget (): string | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.probeIndex < this.probeOrder.length) {
        const id = this.probeOrder[this.probeIndex++]!
        const m = this.members.get(id)
        if (m !== undefined && m !== this.self && (m.state === 'alive' || m.state === 'suspect')) return id
      }
      // A round is over: reshuffle (SWIM's round-robin probing bounds time to first detection).
      this.probeOrder = this.shuffle([...this.members.keys()].filter(id => id !== this.self.id))
      this.probeIndex = 0
    }
    return undefined
  }

  private shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.rng.next() * (i + 1))
      const t = items[i]!
      items[i] = items[j]!
      items[j] = t
    }
    return items
  }

  /** Up to `count` distinct random members other than self that satisfy `accept`. */
  private pick (count: number, accept: (m: Member) => boolean): string[] {
    if (count <= 0) return []
    const candidates: string[] = []
    for (const m of this.members.values()) if (m !== this.self && accept(m) && !this.refused.has(m.id)) candidates.push(m.id)
    if (candidates.length <= count) return this.shuffle(candidates)
    // Partial Fisher-Yates: O(count) random draws.
    for (let i = 0; i < count; i++) {
      const j = i + Math.floor(this.rng.next() * (candidates.length - i))
      const t = candidates[i]!
      candidates[i] = candidates[j]!
      candidates[j] = t
    }
    return candidates.slice(0, count)
  }

  private gossip (nowMs: number, effects: Effect[]): void {
    this.nextGossipMs = nowMs + this.config.gossipIntervalMs
    if (this.broadcasts.size === 0) return
    // Gossip also reaches recently dead members, so a wrongly declared one learns it and refutes.
    const targets = this.pick(this.config.gossipNodes, m => m.state === 'alive' || m.state === 'suspect' || (m.state === 'dead' && nowMs - m.sinceMs < this.config.probeIntervalMs * 10))
    for (const to of targets) {
      const updates = this.broadcasts.piggyback(to, this.members.liveCount)
      if (updates.length > 0) effects.push({ type: 'send', to, message: { type: 'gossip', updates } })
    }
  }

  // ---------------------------------------------------------------- receiving

  receive (from: string, message: SwimMessage, nowMs: number): Effect[] {
    this.stats.messagesReceived++
    const effects: Effect[] = []
    const updates = message.type === 'push-pull' ? message.members : message.updates
    if (this.compatibility !== undefined && from !== this.self.id && this.refuseSender(from, message, nowMs, effects)) return effects
    for (const u of updates) {
      if (this.compatibility !== undefined && u.id !== this.self.id && this.refuseUpdate(u, nowMs, effects)) continue
      const outcome = this.members.apply(u, nowMs, effects)
      // Others' news about us: refuted, unless we are leaving anyway.
      if (outcome === 'refute' && !this.leaving) this.refute(u.incarnation)
      // A new member joins the current probe round at a random place, so it is probed this round.
      else if (outcome === 'joined') this.probeOrder.splice(this.probeIndex + Math.floor(this.rng.next() * (this.probeOrder.length - this.probeIndex + 1)), 0, u.id)
    }
    if (this.leaving && message.type !== 'push-pull') return effects
    switch (message.type) {
      case 'ping':
        effects.push({ type: 'send', to: from, message: { type: 'ack', seq: message.seq, updates: this.broadcasts.piggyback(from, this.members.liveCount) } })
        break
      case 'ping-req': {
        if (this.relays.size >= RELAYS_MAX || message.target === this.self.id) break
        const seq = ++this.seq
        this.relays.set(seq, { origin: from, originSeq: message.seq, expiresMs: nowMs + this.scaled(this.config.probeTimeoutMs) * NACK_FRACTION })
        effects.push({ type: 'send', to: message.target, message: { type: 'ping', seq, updates: this.broadcasts.piggyback(message.target, this.members.liveCount) } })
        break
      }
      case 'ack': {
        const relay = this.relays.get(message.seq)
        if (relay !== undefined) {
          this.relays.delete(message.seq)
          effects.push({ type: 'send', to: relay.origin, message: { type: 'ack', seq: relay.originSeq, updates: this.broadcasts.piggyback(relay.origin, this.members.liveCount) } })
        } else if (this.probe !== null && message.seq === this.probe.seq) {
          this.probe.acked = true
          this.probeTimers(nowMs, effects)
        }
        break
      }
      case 'nack':
        if (this.probe !== null && message.seq === this.probe.seq) this.probe.nacks++
        break
      case 'gossip':
        break
      case 'push-pull':
        if (!message.reply) effects.push({ type: 'send', to: from, message: { type: 'push-pull', join: false, reply: true, members: this.members.fullState() } })
        break
    }
    return effects
  }

  /**
   * Whether a message must be ignored because its sender is refused. A push-pull carries the sender's own
   * record, which decides afresh (a member restarted with agreeing settings is readmitted); a refused one
   * is answered, unless it is itself an answer, with this member's own record only, so the sender can
   * report why. Any other message from a refused member is ignored whole.
   */
  private refuseSender (from: string, message: SwimMessage, nowMs: number, effects: Effect[]): boolean {
    const own = message.type === 'push-pull' ? message.members.find(u => u.id === from && (u.state === 'alive' || u.state === 'suspect')) : undefined
    if (own === undefined) {
      if (!this.refused.has(from)) return false
      this.stats.incompatibleIgnored++
      return true
    }
    const reason = this.compatibility!(own.meta)
    if (reason === null) {
      this.refused.delete(from)
      return false
    }
    this.recordRefusal(own, reason, true, nowMs, effects)
    this.stats.incompatibleIgnored++
    if (message.type === 'push-pull' && !message.reply && !this.leaving) {
      effects.push({ type: 'send', to: from, message: { type: 'push-pull', join: false, reply: true, members: [updateOf(this.self)] } })
    }
    return true
  }

  /**
   * Whether an update must be dropped because it would admit (or replace the record of) a member that fails
   * the compatibility check. Only news that would be applied is checked: about an unknown member, or at a
   * higher incarnation; departures always pass (they only take a member out). A member this one knew that
   * comes back refused (restarted with other settings) is marked left here and not announced: it is out of
   * the ring at once, and every other member of this build refuses it on its own.
   */
  private refuseUpdate (u: Update, nowMs: number, effects: Effect[]): boolean {
    if (u.state === 'dead' || u.state === 'left') return false
    const m = this.members.get(u.id)
    const refusedAt = this.refused.get(u.id)
    if (m !== undefined && u.incarnation <= m.incarnation && refusedAt === undefined) return false
    if (refusedAt !== undefined && u.incarnation <= refusedAt.incarnation) {
      this.stats.incompatibleIgnored++
      return true
    }
    const reason = this.compatibility!(u.meta)
    if (reason === null) {
      this.refused.delete(u.id)
      return false
    }
    this.recordRefusal(u, reason, false, nowMs, effects)
    this.stats.incompatibleIgnored++
    return true
  }

  /** Remembers a refusal, reports it if it is news, and takes a member this one knew out of the ring. */
  private recordRefusal (u: Update, reason: string, direct: boolean, nowMs: number, effects: Effect[]): void {
    const m = this.members.get(u.id)
    if (m !== undefined && (m.state === 'alive' || m.state === 'suspect')) this.members.setState(m, 'left', nowMs, effects)
    const previous = this.refused.get(u.id)
    this.refused.delete(u.id) // re-inserted last: the map forgets the longest-refused first
    this.refused.set(u.id, { reason, incarnation: Math.max(u.incarnation, previous?.incarnation ?? 0) })
    if (this.refused.size > REFUSED_MAX) this.refused.delete(this.refused.keys().next().value!)
    if (previous?.reason === reason) return
    this.stats.incompatible++
    effects.push({ type: 'refused', id: u.id, meta: u.meta, reason, direct })
  }

  private refute (incarnation: number): void {
    this.self.incarnation = Math.max(this.self.incarnation, incarnation) + 1
    this.stats.refutations++
    this.adjustAwareness(1) // being suspected hints that we are slow to answer
    this.broadcasts.enqueue(updateOf(this.self))
  }
}
