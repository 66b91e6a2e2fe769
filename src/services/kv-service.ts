/**
 * The replicated store on a libp2p node: the pure KvNode (src/core/kv/node.ts) plus what it needs from the
 * platform — the ring and who is up, from SWIM; request/reply streams for /meshkv/kv/1.0.0 and
 * /meshkv/sync/1.0.0 (rpc.ts); and the timers that run its loops (handoff and reaping every
 * `handoffIntervalMs`, anti-entropy every `syncIntervalMs`, the storage engine's TTL sweep every
 * `sweepPeriodMs`). Each loop waits for its previous turn to finish before the next starts.
 */
import type { Clock, Logger } from '../core/env.js'
import type { KvConfig } from '../core/kv/config.js'
import type { Hash64 } from '../core/kv/digest.js'
import type { KvReply, KvRequest } from '../core/kv/messages.js'
import { type Channel, KvNode, byId } from '../core/kv/node.js'
import type { MemberView } from '../core/membership/swim.js'
import { DEFAULT_VNODES, Ring, type RingHash, type RingMember } from '../core/ring/ring.js'
import type { StorageEngine } from '../core/storage/engine.js'
import type { MeshLibp2p } from './mesh-node.js'
import { type Handshake, RpcEndpoint, type RpcStats } from './rpc.js'
import type { SwimService } from './swim-service.js'
import { errorMessage } from '../core/errors.js'

export const KV_PROTOCOL = '/meshkv/kv/1.0.0'
export const SYNC_PROTOCOL = '/meshkv/sync/1.0.0'

export interface KvServiceInit {
  engine: StorageEngine
  config: KvConfig
  ringHash: RingHash
  hash64: Hash64
  clock: Clock
  log: Logger
  /** The private mesh's handshake (from SwimService); undefined for an open mesh. */
  handshake?: Handshake
}

/** Members that own ring tokens: everyone not gone, with vnodes > 0 (client-only members publish 0). */
export function ringMembersOf (members: readonly MemberView[]): RingMember[] {
  const out: RingMember[] = []
  for (const m of members) {
    if (m.state === 'left') continue
    const vnodes = typeof m.meta.vnodes === 'number' ? m.meta.vnodes : DEFAULT_VNODES
    if (vnodes > 0) out.push({ id: m.id, vnodes })
  }
  return out.sort(byId)
}

export class KvService {
  readonly kv: KvNode
  readonly kvRpc: RpcEndpoint
  readonly syncRpc: RpcEndpoint
  private ringSignature = ''
  private readonly timers: Array<ReturnType<typeof setTimeout>> = []
  private running = false
  private offChange: (() => void) | null = null
  private refreshQueued = false
  private readonly isUp = (id: string): boolean => this.swim.isUp(id)

  constructor (private readonly node: MeshLibp2p, private readonly swim: SwimService, private readonly init: KvServiceInit) {
    const ring = Ring.build(ringMembersOf(swim.members()), init.ringHash)
    const handler = async (from: string, request: KvRequest): Promise<KvReply> => await this.kv.handle(from, request)
    const limits = { keyBytesMax: init.engine.config.keyBytesMax, valueBytesMax: init.engine.config.valueBytesMax }
    const rpc = (protocol: string): RpcEndpoint => new RpcEndpoint(node, {
      protocol,
      limits,
      messageBytesMax: init.config.messageBytesMax,
      requestTimeoutMs: init.config.requestTimeoutMs,
      inFlightMax: init.config.inFlightMax,
      handler,
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
      transport: {
        request: async (to: string, channel: Channel, request: KvRequest, signal?: AbortSignal) =>
          await (channel === 'kv' ? this.kvRpc : this.syncRpc).request(to, request, signal)
      }
    })
    this.refresh()
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
    this.loop('handoff', this.init.config.handoffIntervalMs, async () => { await this.kv.handoff() })
    this.loop('anti-entropy', this.init.config.syncIntervalMs, async () => { await this.kv.syncRound() })
    this.loop('sweep', this.init.engine.config.sweepPeriodMs, async () => { this.init.engine.sweep() })
  }

  /** The ring from the current members (rebuilt only when its members change) and who is up. */
  private refresh (): void {
    const members = ringMembersOf(this.swim.members())
    const signature = members.map(m => `${m.id}/${m.vnodes}`).join(',')
    const ring = signature === this.ringSignature ? this.kv.ring : Ring.build(members, this.init.ringHash)
    this.ringSignature = signature
    this.kv.setMembership(ring, this.isUp)
  }

  /** The ring as it will be once this peer has left. */
  ringWithoutSelf (): Ring {
    return Ring.build(ringMembersOf(this.swim.members()).filter(m => m.id !== this.kv.id), this.init.ringHash)
  }

  private loop (name: string, periodMs: number, turn: () => Promise<void>): void {
    const index = this.timers.length
    const run = (): void => {
      if (!this.running) return
      turn().catch(error => { this.init.log.debug(`${name} turn failed: ${errorMessage(error)}`) }).finally(() => {
        if (this.running) this.timers[index] = setTimeout(run, periodMs)
      })
    }
    this.timers.push(setTimeout(run, periodMs))
  }

  stats (): { kv: KvNode['stats']; rpc: RpcStats; sync: RpcStats } {
    return { kv: this.kv.stats, rpc: this.kvRpc.stats, sync: this.syncRpc.stats }
  }

  async stop (): Promise<void> {
    this.running = false
    for (const t of this.timers) clearTimeout(t)
    this.offChange?.()
    await this.kvRpc.stop()
    await this.syncRpc.stop()
  }
}
