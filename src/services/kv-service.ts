/**
 * The replicated store on a libp2p node: the KvNode facade over the replication state machine
 * (src/core/kv/node.ts) plus what it needs from the platform — the ring and who is up, from SWIM;
 * request/reply streams for /meshkv/kv/1.0.0 and /meshkv/sync/1.0.0 (rpc.ts); the dashboard's figures
 * (peer-info.ts); and one timer that ticks the machine when it next has work: request timeouts and its
 * background loops (handoff and reaping every `handoffIntervalMs`, anti-entropy every `syncIntervalMs`, the
 * storage engine's TTL sweep every `sweepPeriodMs`; each turn waits for the previous one to finish).
 */
import type { Clock, Logger } from '../core/env.js'
import type { KvConfig } from '../core/kv/config.js'
import type { Hash64 } from '../core/kv/digest.js'
import type { KvReply, KvRequest } from '../core/kv/messages.js'
import { type Channel, KvNode, type OpObserver, byId } from '../core/kv/node.js'
import { OpLatencies, type PeerInfo, peerInfo } from './peer-info.js'
import type { MemberView } from '../core/membership/swim.js'
import { DEFAULT_VNODES, Ring, type RingHash, type RingMember } from '../core/ring/ring.js'
import type { StorageEngine } from '../core/storage/engine.js'
import type { MeshLibp2p } from './mesh-node.js'
import { type Handshake, RpcEndpoint, type RpcStats, requestWorstCaseMs } from './rpc.js'
import type { SwimService } from './swim-service.js'

export const KV_PROTOCOL = '/meshkv/kv/1.0.0'
export const SYNC_PROTOCOL = '/meshkv/sync/1.0.0'
/** Bounds of the wait between two ticks of the replication machine. */
export const TICK_MIN_MS = 5
export const TICK_MAX_MS = 1000

export interface KvServiceInit {
  engine: StorageEngine
  config: KvConfig
  ringHash: RingHash
  hash64: Hash64
  clock: Clock
  log: Logger
  /** The private mesh's handshake (from SwimService); undefined for an open mesh. */
  handshake?: Handshake
  /** Told of every client operation (metrics: src/cli/metrics.ts), after the dashboard's latency window. */
  observeOp?: OpObserver
}

/**
 * Members that own ring tokens: everyone not gone, with vnodes > 0 (client-only members publish 0), with
 * their location and durability class (a member that publishes none is durable, at a location of its own).
 * A member that announced its leave is down at once (out of every preference list: fallbacks take its
 * share). A durable one leaves the ring at once too; a volatile one (a tab's `pagehide`) keeps its tokens
 * for `leaveGraceMs` after the leave (by `nowMs`, the clock membership runs on), so a reload, or the
 * browser opening the page again, comes back to the ring it left and nothing moves. A dead member keeps
 * its tokens until membership forgets it.
 */
export function ringMembersOf (members: readonly MemberView[], nowMs: number, leaveGraceMs: number): RingMember[] {
  const out: RingMember[] = []
  for (const m of members) {
    if (m.state === 'left' && !inLeaveGrace(m, nowMs, leaveGraceMs)) continue
    const vnodes = typeof m.meta.vnodes === 'number' ? m.meta.vnodes : DEFAULT_VNODES
    if (vnodes <= 0) continue
    const location = typeof m.meta.location === 'string' && m.meta.location !== '' ? m.meta.location : m.id
    out.push({ id: m.id, vnodes, location, durable: m.meta.durability !== 'volatile' })
  }
  return out.sort(byId)
}

/** A volatile member that left less than `leaveGraceMs` ago. */
function inLeaveGrace (m: MemberView, nowMs: number, leaveGraceMs: number): boolean {
  return m.state === 'left' && m.meta.durability === 'volatile' && nowMs - m.sinceMs < leaveGraceMs
}

/** When the first leave grace still running ends (ms by the same clock), or null if none runs. */
export function leaveGraceEndsMs (members: readonly MemberView[], nowMs: number, leaveGraceMs: number): number | null {
  let first: number | null = null
  for (const m of members) {
    if (!inLeaveGrace(m, nowMs, leaveGraceMs)) continue
    const ends = m.sinceMs + leaveGraceMs
    if (first === null || ends < first) first = ends
  }
  return first
}

export class KvService {
  readonly kv: KvNode
  readonly kvRpc: RpcEndpoint
  readonly syncRpc: RpcEndpoint
  private ringSignature = ''
  private timer: ReturnType<typeof setTimeout> | null = null
  private running = false
  private readonly latencies = new OpLatencies()
  /** The longest the machine goes untended: its shortest loop period, and at most a second. */
  private readonly tickMaxMs: number
  private offChange: (() => void) | null = null
  private refreshQueued = false
  /** Refreshes the ring when a leave grace ends (at most one timer). */
  private graceTimer: ReturnType<typeof setTimeout> | null = null
  private readonly isUp = (id: string): boolean => this.swim.isUp(id)

  constructor (private readonly node: MeshLibp2p, private readonly swim: SwimService, private readonly init: KvServiceInit) {
    const ring = Ring.build(ringMembersOf(swim.members(), init.clock.nowMs(), init.config.leaveGraceMs), init.ringHash, { minDurable: init.config.minDurable })
    // Straight through (kv.handle reports every failure by its promise): no async wrapper per request.
    const handler = (from: string, request: KvRequest): Promise<KvReply> => this.kv.handle(from, request)
    const limits = { keyBytesMax: init.engine.config.keyBytesMax, valueBytesMax: init.engine.config.valueBytesMax }
    const rpc = (protocol: string): RpcEndpoint => new RpcEndpoint(node, {
      protocol,
      limits,
      messageBytesMax: init.config.messageBytesMax,
      requestTimeoutMs: init.config.requestTimeoutMs,
      inFlightMax: init.config.inFlightMax,
      handler,
      // Refreshes wait up to kv.refresh-coalesce-ms for company: many beats' refreshes share a frame.
      ...(init.config.refreshCoalesceMs === 0 ? {} : { deferMs: (request: KvRequest) => request.type === 'refresh' ? init.config.refreshCoalesceMs : 0 }),
      ...(init.handshake === undefined ? {} : { handshake: init.handshake }),
      log: init.log
    })
    this.kvRpc = rpc(KV_PROTOCOL)
    this.syncRpc = rpc(SYNC_PROTOCOL)
    this.kv = new KvNode(ring, {
      engine: init.engine,
      config: init.config,
      hash64: init.hash64,
      clock: init.clock,
      log: init.log,
      describe: () => JSON.stringify(this.info()),
      // The machine's deadline is a backstop above the RPC layer's own bounds (see requestWorstCaseMs).
      requestDeadlineMs: requestWorstCaseMs(init.config.requestTimeoutMs),
      observeOp: init.observeOp === undefined ? this.latencies.record : this.latencies.recordAnd(init.observeOp),
      background: { handoffMs: init.config.handoffIntervalMs, syncMs: init.config.syncIntervalMs, sweepMs: init.engine.config.sweepPeriodMs },
      transport: {
        request: (to: string, channel: Channel, request: KvRequest, signal?: AbortSignal) =>
          (channel === 'kv' ? this.kvRpc : this.syncRpc).request(to, request, signal)
      }
    })
    this.tickMaxMs = Math.max(TICK_MIN_MS, Math.min(TICK_MAX_MS, init.config.handoffIntervalMs, init.config.syncIntervalMs, init.engine.config.sweepPeriodMs))
    this.refresh()
  }

  /** This peer's figures for dashboards. */
  info (): PeerInfo { return this.latencies.info(this.kv, this.init.engine) }

  /** Another member's figures (or this peer's). */
  async peerInfo (id: string, signal?: AbortSignal): Promise<PeerInfo> {
    return await peerInfo(this.kv, () => this.info(), id, signal)
  }

  get config (): KvConfig { return this.init.config }

  async start (): Promise<void> {
    this.running = true
    await this.kvRpc.start()
    await this.syncRpc.start()
    this.offChange = this.swim.events.on('change', () => {
      // Several changes arrive together (a full-state exchange): rebuild once.
      if (this.refreshQueued) return
      this.refreshQueued = true
      queueMicrotask(() => { this.refreshQueued = false; this.refresh() })
    })
    this.schedule()
  }

  /** Ticks the machine when it next has work (a deadline or a loop turn), at least every `tickMaxMs`. */
  private schedule (): void {
    if (!this.running) return
    const waitMs = Math.min(this.tickMaxMs, Math.max(TICK_MIN_MS, this.kv.nextWakeMs() - this.init.clock.nowMs()))
    const dueMs = this.init.clock.nowMs() + waitMs
    this.timer = setTimeout(() => {
      // How late this timer fired is the event loop's delay: the failure detector's own health.
      this.kv.noteLoopDelay(this.init.clock.nowMs() - dueMs)
      try {
        this.kv.tick()
      } catch (error) {
        this.init.log.error('kv tick failed', error)
      }
      this.schedule()
    }, waitMs)
  }

  /** The ring from the current members (rebuilt only when its members change) and who is up. */
  private refresh (): void {
    const nowMs = this.init.clock.nowMs()
    const all = this.swim.members()
    const members = ringMembersOf(all, nowMs, this.init.config.leaveGraceMs)
    // A tab's leave grace ends with no membership change to say so: the ring is refreshed then.
    const graceEnds = leaveGraceEndsMs(all, nowMs, this.init.config.leaveGraceMs)
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.graceTimer = graceEnds === null || !this.running ? null : setTimeout(() => { this.graceTimer = null; this.refresh() }, graceEnds - nowMs + 1)
    const signature = members.map(m => `${m.id}/${m.vnodes}/${m.durable === false ? 'v' : 'd'}/${m.location ?? ''}`).join(',')
    const ring = signature === this.ringSignature ? this.kv.ring : Ring.build(members, this.init.ringHash, { minDurable: this.init.config.minDurable })
    this.ringSignature = signature
    this.kv.setMembership(ring, this.isUp)
  }

  /**
   * Where a graceful leave sends what this peer holds: everything, to its owners in the ring as it will be
   * without this peer; or, for a volatile member the others keep in the ring for the leave grace, only the
   * keys it holds for others, by the current ring (its own ranges would come straight back on a reload).
   */
  leaveHandoff (): { ring: Ring; hintsOnly: boolean } {
    const ring = this.kv.ring
    if (ring.member(this.kv.id)?.durable === false && this.init.config.leaveGraceMs > 0) return { ring, hintsOnly: true }
    return { ring: Ring.build(ringMembersOf(this.swim.members(), this.init.clock.nowMs(), this.init.config.leaveGraceMs).filter(m => m.id !== this.kv.id), this.init.ringHash, { minDurable: this.init.config.minDurable }), hintsOnly: false }
  }

  stats (): { kv: KvNode['stats']; admission: KvNode['admission']; rpc: RpcStats; sync: RpcStats } {
    return { kv: this.kv.stats, admission: this.kv.admission, rpc: this.kvRpc.stats, sync: this.syncRpc.stats }
  }

  async stop (): Promise<void> {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.graceTimer = null
    this.offChange?.()
    await this.kvRpc.stop()
    await this.syncRpc.stop()
  }
}
