/**
 * A simulated mesh of KvNodes: real storage engines (memory-only), the real ring and codec, and a network
 * that delivers every message through the wire encoding, asynchronously, and refuses messages across a
 * partition. Membership is the test's to set: each node sees as up the members that are up and on its side
 * of the partition, as SWIM would after detection. Time is a ManualClock; background loops run when the
 * test calls them, so runs are deterministic.
 */
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { Writer } from '../../src/core/codec.js'
import { ManualClock, silentLogger } from '../../src/core/env.js'
import { UnreachableError } from '../../src/core/errors.js'
import { type KvConfig, defaultKvConfig } from '../../src/core/kv/config.js'
import { type KvReply, type KvRequest, decodeMessage, encodeReply, encodeRequest } from '../../src/core/kv/messages.js'
import { type Channel, KvNode } from '../../src/core/kv/node.js'
import { Ring, type RingHash } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'
import { OpLatencies } from '../../src/services/peer-info.js'
import type { KeyState } from '../../src/core/version/dvv.js'
import { sidesOf } from './kv-faults.js'

const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024 }
const VNODES = 64

export interface SimNode {
  readonly id: string
  engine: StorageEngine
  kv: KvNode
  /** The dashboard's figures of this node (its answer to `info`). */
  figures: OpLatencies
  up: boolean
}

export class KvSim {
  readonly clock = new ManualClock(1_700_000_000_000)
  readonly nodes = new Map<string, SimNode>()
  /** Members in the ring (joined and not left). */
  readonly ringMembers = new Set<string>()
  /** Partition: node id -> side. Nodes on different sides cannot talk. */
  side = new Map<string, number>()
  messages = 0
  /** Deliveries under way (requests and their replies), for settle(). */
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly writer = new Writer(1024)

  private constructor (readonly config: KvConfig, private readonly ringHash: RingHash, private readonly hash64: (s: string) => bigint) {}

  static async create (ids: string[], config: Partial<KvConfig> = {}): Promise<KvSim> {
    const sim = new KvSim({ ...defaultKvConfig(), ...config }, await loadRingHash(), await loadHash64())
    for (const id of ids) await sim.add(id)
    return sim
  }

  reachable (from: string, to: string): boolean {
    const a = this.nodes.get(from)
    const b = this.nodes.get(to)
    return a !== undefined && b !== undefined && a.up && b.up && (this.side.get(from) ?? 0) === (this.side.get(to) ?? 0)
  }

  ring (): Ring {
    return Ring.build([...this.ringMembers].map(id => ({ id, vnodes: VNODES })), this.ringHash)
  }

  /** Pushes the current ring and each node's view of who is up to every node. */
  refresh (): void {
    const ring = this.ring()
    for (const node of this.nodes.values()) node.kv.setMembership(ring, id => this.reachable(node.id, id))
  }

  async add (id: string): Promise<SimNode> {
    const engine = await StorageEngine.open({ replicaId: id, clock: this.clock })
    const figures = new OpLatencies()
    const kv: KvNode = new KvNode(this.ring(), {
      describe: () => JSON.stringify(figures.info(kv, engine)),
      observeOp: figures.record,
      engine,
      config: this.config,
      hash64: this.hash64,
      clock: this.clock,
      log: silentLogger,
      transport: {
        request: async (to, channel, req) => {
          const delivery = this.deliver(id, to, channel, req)
          this.inFlight.add(delivery)
          void delivery.catch(() => {}).finally(() => { this.inFlight.delete(delivery) })
          return await delivery
        }
      }
    })
    const node: SimNode = { id, engine, kv, figures, up: true }
    this.nodes.set(id, node)
    this.ringMembers.add(id)
    this.refresh()
    return node
  }

  /** Removes a member from the ring (a completed graceful leave). */
  remove (id: string): void {
    this.ringMembers.delete(id)
    this.nodes.get(id)!.up = false
    this.refresh()
  }

  setUp (id: string, up: boolean): void {
    this.nodes.get(id)!.up = up
    this.refresh()
  }

  partition (...sides: string[][]): void {
    this.side = sidesOf(sides)
    this.refresh()
  }

  heal (): void {
    this.side = new Map()
    this.refresh()
  }

  private async deliver (from: string, to: string, _channel: Channel, req: KvRequest): Promise<KvReply> {
    await Promise.resolve()
    if (!this.reachable(from, to)) throw new UnreachableError(to, 'partitioned or down')
    this.messages++
    const decoded = decodeMessage(encodeRequest(this.writer, 1, req), LIMITS)
    if (decoded.kind !== 'request') throw new Error('codec returned a reply for a request')
    const reply = await this.nodes.get(to)!.kv.handle(from, decoded.request)
    await Promise.resolve()
    if (!this.reachable(from, to)) throw new UnreachableError(to, 'partitioned or down')
    const back = decodeMessage(encodeReply(this.writer, 1, reply), LIMITS)
    if (back.kind !== 'reply') throw new Error('codec returned a request for a reply')
    return back.reply
  }

  node (id: string): SimNode { return this.nodes.get(id)! }

  /**
   * Waits until no message is under way — including those that work in the background (read repair,
   * expiries and their checks) starts once the ones before it are answered.
   */
  async settle (): Promise<void> {
    for (let quiet = 0; quiet < 2;) {
      if (this.inFlight.size > 0) {
        quiet = 0
        await Promise.allSettled([...this.inFlight])
      } else {
        quiet++
        await new Promise(resolve => setImmediate(resolve)) // let continuations start their next message
      }
    }
  }

  /** Every up node runs one handoff turn and one anti-entropy round. */
  async backgroundRound (): Promise<void> {
    // Time passes between rounds (a replica forgets a key only once the clock is past its counter).
    this.clock.advance(10)
    for (const node of this.nodes.values()) {
      if (!node.up) continue
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

  primaries (key: string): string[] {
    const ring = this.ring()
    return ring.primaries(ring.position(key), this.config.n)
  }
}
