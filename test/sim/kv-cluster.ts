/**
 * The scenario tests' view of the fault simulator (kv-faults.ts) with no faults: every message delivered
 * after 1 ms through the wire codec, log syncs at once, and the replication state machines hosted by the
 * simulator. Each operation a test awaits runs the simulation until it completes, so a test reads like a
 * client's story; membership is the test's to set (each node sees as up the members that are up and on its
 * side of the partition, as SWIM would after detection). Time is a ManualClock; background rounds run when
 * the test calls them, so runs are deterministic.
 */
import type { KvConfig } from '../../src/core/kv/config.js'
import type { ListOptions, ListResult } from '../../src/core/kv/listing.js'
import type { KvReply, KvRequest } from '../../src/core/kv/messages.js'
import type { Ring } from '../../src/core/ring/ring.js'
import type { Call } from '../../src/core/replication/replication.js'
import type { GetResult, KvEvents, KvStats, PutResult, ReadOptions, ReplicaView, SyncResult, WriteOptions } from '../../src/core/replication/types.js'
import type { Emitter } from '../../src/core/emitter.js'
import type { StorageEngine } from '../../src/core/storage/engine.js'
import type { KeyState } from '../../src/core/version/dvv.js'
import type { OpLatencies } from '../../src/services/peer-info.js'
import { HEALTH_LOOP_DELAY_MS } from '../../src/core/replication/health.js'
import { type FaultNode, FaultSim, NO_FAULTS, type SimOptions } from './kv-faults.js'

const VNODES = 64
const SEED = 1

/** A node's store as a test uses it: each call runs the simulation until it completes. */
export class ScenarioKv {
  constructor (private readonly sim: FaultSim, private readonly node: FaultNode) {}

  get id (): string { return this.node.id }
  get stats (): KvStats { return this.node.kv.stats }
  get events (): Emitter<KvEvents> { return this.node.kv.events }

  put (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<PutResult> { return this.sim.run(this.node.kv.put(key, value, options)) }
  delete (key: string, options: WriteOptions = {}): Promise<PutResult> { return this.sim.run(this.node.kv.delete(key, options)) }
  get (key: string, options: ReadOptions = {}): Promise<GetResult> { return this.sim.run(this.node.kv.get(key, options)) }
  handoff (): Promise<{ delivered: number; dropped: number; reaped: number }> { return this.sim.run(this.node.kv.handoff()) }
  syncRound (peer?: string): Promise<SyncResult | null> { return this.sim.run(this.node.kv.syncRound(peer)) }
  placement (key: string): Promise<{ replicas: ReplicaView[] }> { return this.call({ type: 'placement', key }) }
  handOffAll (ringWithout: Ring, progress: (done: number, total: number) => void, hintsOnly = false): Promise<{ delivered: number; failed: number }> { return this.call({ type: 'hand-off-all', ring: ringWithout, progress, hintsOnly }) }
  ask (to: string, request: KvRequest): Promise<KvReply> { return this.call({ type: 'ask', to, request }) }
  list (options: ListOptions = {}): Promise<ListResult> { return this.call({ type: 'list', options }) }
  handle (from: string, request: KvRequest): Promise<KvReply> { return this.sim.run(this.node.kv.handle(from, request)) }
  /** One TTL sweep turn, and what it starts runs to the end. */
  async sweep (): Promise<void> {
    this.node.kv.sweep()
    await this.sim.settle()
  }

  private call<T> (call: Call): Promise<T> { return this.sim.run(this.node.kv.call<T>(call)) }
}

export interface SimNode {
  readonly id: string
  readonly engine: StorageEngine
  readonly kv: ScenarioKv
  readonly figures: OpLatencies
}

export class KvSim {
  readonly nodes = new Map<string, SimNode>()

  private constructor (readonly faults: FaultSim) {}

  static async create (ids: string[], config: Partial<KvConfig> = {}, options: SimOptions = {}): Promise<KvSim> {
    const sim = new KvSim(await FaultSim.create(SEED, ids, NO_FAULTS, config, { vnodes: VNODES, instantSync: true, ...options }))
    for (const node of sim.faults.nodes.values()) sim.wrap(node)
    return sim
  }

  private wrap (node: FaultNode): SimNode {
    const view: SimNode = { id: node.id, get engine () { return node.engine }, kv: new ScenarioKv(this.faults, node), figures: node.figures }
    this.nodes.set(node.id, view)
    return view
  }

  get clock (): FaultSim['clock'] { return this.faults.clock }
  get config (): KvConfig { return this.faults.config }
  ring (): Ring { return this.faults.ring }
  node (id: string): SimNode { return this.nodes.get(id)! }

  /** A new member joins the ring. */
  async add (id: string): Promise<SimNode> {
    return this.wrap(await this.faults.join(id))
  }

  /** Removes a member from the ring (a completed graceful leave). */
  remove (id: string): void { this.faults.leave(id) }

  /** Takes a node off the network (it keeps running) or puts it back. */
  setUp (id: string, up: boolean): void {
    if (up) this.faults.isolated.delete(id)
    else this.faults.isolated.add(id)
    this.faults.refresh()
  }

  partition (...sides: string[][]): void { this.faults.partition(sides) }
  heal (): void { this.faults.heal() }
  refresh (): void { this.faults.refresh() }

  /** Waits until no message or log sync is under way (read repair and expiries included). */
  async settle (): Promise<void> { await this.faults.settle() }

  /** Every up node runs one handoff turn and one anti-entropy round. */
  async backgroundRound (): Promise<void> {
    // Time passes between rounds (a replica forgets a key only once the clock is past its counter).
    this.clock.advance(10)
    for (const node of this.nodes.values()) {
      if (this.faults.isolated.has(node.id)) continue
      await node.kv.handoff()
      await node.kv.syncRound().catch(() => null)
    }
  }

  /** Which nodes hold `key`, with their states. */
  holders (key: string): Map<string, KeyState> {
    const out = new Map<string, KeyState>()
    for (const node of this.nodes.values()) {
      const state = node.engine.state(key)
      if (state !== undefined) out.set(node.id, state)
    }
    return out
  }

  primaries (key: string): readonly string[] { return this.faults.primaries(key) }
}

/** Member ids peer-0 .. peer-(n-1). */
export const simIds = (n: number): string[] => Array.from({ length: n }, (_, i) => `peer-${i}`)

/**
 * A 3-member simulated mesh and `key`'s three replicas in preference order, with the ids of the replicas
 * that expired it, in the order they did (the TTL scenarios of kv.test.ts and refresh.test.ts).
 */
export async function replicasOf (key: string): Promise<{ sim: KvSim; a: SimNode; b: SimNode; c: SimNode; expired: string[] }> {
  const sim = await KvSim.create(simIds(3))
  const [a, b, c] = sim.primaries(key).map(id => sim.node(id)) as [SimNode, SimNode, SimNode]
  const expired: string[] = []
  for (const n of [a, b, c]) n.kv.events.on('change', e => { if (e.type === 'expired') expired.push(n.id) })
  return { sim, a, b, c, expired }
}

/** `id`'s own failure detector goes degraded now (its event loop stalled 3 s), for HEALTH_RECOVERY_MS. */
export function degrade (sim: KvSim, id: string): void {
  sim.faults.nodes.get(id)!.kv.machine.health.note('event-loop delay', 3000, HEALTH_LOOP_DELAY_MS, sim.clock.nowMs())
}

/** Advances the clock a second at a time, every node sweeping, until `expired` has an entry or `seconds` passed. */
export async function sweepUntilExpired (sim: KvSim, nodes: readonly SimNode[], expired: readonly string[], seconds: number): Promise<void> {
  for (let i = 0; i < seconds && expired.length === 0; i++) {
    sim.clock.advance(1000)
    for (const n of nodes) await n.kv.sweep()
    await sim.settle()
  }
}
