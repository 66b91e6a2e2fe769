/**
 * A seeded, fault-injecting simulation of KvNodes (toward issue 11): real storage engines on memory WALs
 * whose syncs complete some simulated time later, the real ring and wire codec, and a network that loses,
 * delays, duplicates and reorders messages, partitions peers, and crashes them (losing what was not durable)
 * and restarts them from their volumes. Everything runs off one seeded Rng and one queue of timed events;
 * the nodes' async code runs in between, as microtasks only (no real timers or I/O), so a seed replays a run
 * exactly.
 *
 * Failure detection is perfect and instant (a node sees as up exactly the nodes that are up and on its side
 * of the partition), as SWIM would be after detection.
 */
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { Writer } from '../../src/core/codec.js'
import { ManualClock, SeededRng, silentLogger } from '../../src/core/env.js'
import { TimeoutError, UnreachableError, WalFailedError } from '../../src/core/errors.js'
import { type KvConfig, defaultKvConfig } from '../../src/core/kv/config.js'
import { type KvReply, type KvRequest, decodeMessage, encodeReply, encodeRequest } from '../../src/core/kv/messages.js'
import { KvNode } from '../../src/core/kv/node.js'
import { Ring, type RingHash } from '../../src/core/ring/ring.js'
import { StorageEngine } from '../../src/core/storage/engine.js'
import type { WalAdapter, WalListing } from '../../src/core/storage/wal-adapter.js'

const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024 }
const VNODES = 32

export interface Faults {
  /** Probability that a message (request or reply) is lost. */
  loss: number
  /** Probability that a request is delivered twice. */
  duplicate: number
  /** Message delay range in simulated ms (random within it, so messages reorder). */
  delayMs: readonly [number, number]
  /** A request with no reply by then fails with TimeoutError. */
  timeoutMs: number
  /** Range of simulated ms an fdatasync takes. */
  syncMs: readonly [number, number]
}

export const NO_FAULTS: Faults = { loss: 0, duplicate: 0, delayMs: [1, 1], timeoutMs: 100, syncMs: [0, 0] }

/**
 * A memory WAL whose syncs complete on the simulation's queue (so a crash can come between a write and its
 * durability), and which a crash fences: the crashed incarnation's late writes fail instead of landing on
 * the volume its successor uses.
 */
class SimWal implements WalAdapter {
  fenced = false
  private readonly inner: MemoryWal

  constructor (volume: MemoryVolume, name: string, private readonly later: (fn: () => void) => void) {
    this.inner = new MemoryWal(volume, name)
  }

  get location (): string { return this.inner.location }
  private check (): void { if (this.fenced) throw new WalFailedError(this.location, new Error('crashed')) }
  open (): Promise<WalListing> { return this.inner.open() }
  readSegment (id: number): Promise<Uint8Array> { return this.inner.readSegment(id) }
  readSnapshot (id: number): AsyncIterable<Uint8Array> { return this.inner.readSnapshot(id) }
  startSegment (id: number): void { this.check(); this.inner.startSegment(id) }
  append (bytes: Uint8Array): void { this.check(); this.inner.append(bytes) }
  sync (): Promise<void> {
    this.check()
    // What was appended by now becomes durable when the simulated fdatasync completes (not if a crash comes
    // first: the crash fences this adapter, so the completion never syncs the volume).
    return new Promise((resolve, reject) => {
      this.later(() => {
        if (this.fenced) { reject(new WalFailedError(this.location, new Error('crashed'))); return }
        this.inner.sync().then(resolve, reject)
      })
    })
  }

  nextTurn (): Promise<void> { return this.inner.nextTurn() }
  truncateSegment (id: number, length: number): Promise<void> { this.check(); return this.inner.truncateSegment(id, length) }
  writeSnapshot (id: number, chunks: Iterable<Uint8Array>): Promise<void> { this.check(); return this.inner.writeSnapshot(id, chunks) }
  dropBefore (id: number): Promise<void> { this.check(); return this.inner.dropBefore(id) }
  close (): Promise<void> { return this.inner.close() }
  describe (kind: 'segment' | 'snapshot', id: number): string { return this.inner.describe(kind, id) }
}

export interface FaultNode {
  readonly id: string
  readonly volume: MemoryVolume
  engine: StorageEngine
  kv: KvNode
  wal: SimWal
  up: boolean
  /** Bumped by every crash: messages of an earlier incarnation are never delivered. */
  incarnation: number
}

/** An event's action; false means it did nothing (so no continuation needs to run after it). */
type Action = () => void | boolean

interface Event { at: number; order: number; run: Action }

export class FaultSim {
  readonly clock = new ManualClock(1_700_000_000_000)
  readonly rng: SeededRng
  readonly nodes = new Map<string, FaultNode>()
  /** Partition: node id -> side; nodes on different sides cannot talk. */
  side = new Map<string, number>()
  faults: Faults
  readonly stats = { events: 0, messages: 0, lost: 0, duplicated: 0, timeouts: 0, crashes: 0, diskLosses: 0, handlerErrors: 0 }
  private readonly queue: Event[] = []
  private readonly writer = new Writer(1024)
  private ringNow: Ring | null = null
  /** Run on every node as it boots, before it takes a request: to watch its engine, or to inject a bug. */
  readonly onBoot: Array<(node: FaultNode) => void> = []

  private constructor (readonly seed: number, readonly config: KvConfig, faults: Faults, private readonly ringHash: RingHash, private readonly hash64: (s: string) => bigint) {
    this.rng = new SeededRng(seed)
    this.faults = faults
  }

  static async create (seed: number, ids: readonly string[], faults: Faults, config: Partial<KvConfig> = {}): Promise<FaultSim> {
    const sim = new FaultSim(seed, { ...defaultKvConfig(), ...config }, faults, await loadRingHash(), await loadHash64())
    sim.ringNow = Ring.build(ids.map(id => ({ id, vnodes: VNODES })), sim.ringHash)
    for (const id of ids) {
      const volume = new MemoryVolume()
      const node = { id, volume, up: true, incarnation: 0 } as FaultNode
      sim.nodes.set(id, node)
      await sim.boot(node)
    }
    sim.refresh()
    return sim
  }

  get ring (): Ring { return this.ringNow! }

  /** A random integer in [lo, hi]. */
  between (lo: number, hi: number): number { return lo + Math.floor(this.rng.next() * (hi - lo + 1)) }

  /** Runs `fn` `delayMs` of simulated time from now; events at the same time run in a random order. */
  schedule (delayMs: number, fn: Action): void {
    const event = { at: this.clock.nowMs() + delayMs, order: this.rng.next(), run: fn }
    // Binary insertion keeps the queue sorted by (at, order).
    let lo = 0
    let hi = this.queue.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const e = this.queue[mid]!
      if (e.at < event.at || (e.at === event.at && e.order < event.order)) lo = mid + 1
      else hi = mid
    }
    this.queue.splice(lo, 0, event)
  }

  /** Runs the next event, then lets every continuation it started run. False when nothing is queued. */
  async step (): Promise<boolean> {
    const event = this.queue.shift()
    if (event === undefined) return false
    if (event.at > this.clock.nowMs()) this.clock.set(event.at)
    this.stats.events++
    if (event.run() !== false) await flush()
    return true
  }

  get pending (): number { return this.queue.length }

  reachable (from: string, to: string): boolean {
    const a = this.nodes.get(from)
    const b = this.nodes.get(to)
    return a !== undefined && b !== undefined && a.up && b.up && (this.side.get(from) ?? 0) === (this.side.get(to) ?? 0)
  }

  refresh (): void {
    for (const node of this.nodes.values()) {
      if (node.up) node.kv.setMembership(this.ring, id => this.reachable(node.id, id))
    }
  }

  private async boot (node: FaultNode): Promise<void> {
    const wal = new SimWal(node.volume, node.id, fn => { this.schedule(this.between(...this.faults.syncMs), fn) })
    const engine = await StorageEngine.open({ replicaId: node.id, clock: this.clock, rng: new SeededRng(this.between(1, 1e9)), wal })
    node.wal = wal
    node.engine = engine
    const incarnation = node.incarnation
    node.kv = new KvNode(this.ring, {
      engine,
      config: this.config,
      hash64: this.hash64,
      clock: this.clock,
      log: silentLogger,
      transport: { request: async (to, _channel, req) => await this.send(node.id, incarnation, to, req) }
    })
    for (const hook of this.onBoot) hook(node)
  }

  /** A request from `from` (in incarnation `incarnation`) to `to`, through the faulty network. */
  private send (from: string, incarnation: number, to: string, req: KvRequest): Promise<KvReply> {
    return new Promise((resolve, reject) => {
      let done = false
      const finish = (reply: KvReply | null, error: Error | null): void => {
        if (done) return
        done = true
        if (reply !== null) resolve(reply)
        else reject(error!)
      }
      this.schedule(this.faults.timeoutMs, () => {
        if (done) return false
        this.stats.timeouts++
        finish(null, new TimeoutError(`request to ${to}`, this.faults.timeoutMs))
      })
      const sender = this.nodes.get(from)!
      if (sender.incarnation !== incarnation || !sender.up) return // a crashed process sends nothing
      if (!this.reachable(from, to)) {
        this.schedule(1, () => { finish(null, new UnreachableError(to, 'partitioned or down')) })
        return
      }
      const bytes = encodeRequest(this.writer, 1, req).slice()
      const copies = this.rng.next() < this.faults.duplicate ? 2 : 1
      if (copies === 2) this.stats.duplicated++
      for (let c = 0; c < copies; c++) {
        if (this.rng.next() < this.faults.loss) { this.stats.lost++; continue }
        this.schedule(this.between(...this.faults.delayMs), () => {
          const target = this.nodes.get(to)!
          if (!this.reachable(from, to)) return false // lost on the way
          this.stats.messages++
          const decoded = decodeMessage(bytes, LIMITS)
          if (decoded.kind !== 'request') throw new Error('codec returned a reply for a request')
          const targetIncarnation = target.incarnation
          target.kv.handle(from, decoded.request).then(reply => {
            // A reply from a process that crashed since it took the request is never sent.
            if (target.incarnation !== targetIncarnation || !target.up) return
            const back = encodeReply(this.writer, 1, reply).slice()
            if (this.rng.next() < this.faults.loss) { this.stats.lost++; return }
            this.schedule(this.between(...this.faults.delayMs), () => {
              if (done || !this.reachable(from, to) || sender.incarnation !== incarnation) return false
              const decodedReply = decodeMessage(back, LIMITS)
              if (decodedReply.kind !== 'reply') throw new Error('codec returned a request for a reply')
              finish(decodedReply.reply, null)
            })
          }, () => { this.stats.handlerErrors++ })
        })
      }
    })
  }

  /** Kills a node: what its log had not made durable is lost; its in-flight work never lands. */
  crash (id: string): void {
    const node = this.nodes.get(id)!
    if (!node.up) return
    node.up = false
    node.incarnation++
    node.wal.fenced = true
    node.volume.crash()
    this.stats.crashes++
    this.refresh()
  }

  /** Kills a node and destroys its disk: it restarts empty, as a replaced machine would. */
  loseDisk (id: string): void {
    const node = this.nodes.get(id)!
    this.crash(id)
    node.volume.segments.clear()
    node.volume.snapshots.clear()
    node.volume.newSegments.clear()
    this.stats.diskLosses++
  }

  /** Restarts a crashed node from its volume. */
  async restart (id: string): Promise<void> {
    const node = this.nodes.get(id)!
    if (node.up) return
    await this.boot(node)
    node.up = true
    this.refresh()
  }

  partition (sides: ReadonlyArray<readonly string[]>): void {
    this.side = sidesOf(sides)
    this.refresh()
  }

  heal (): void {
    this.side = new Map()
    this.refresh()
  }

  primaries (key: string): string[] {
    return this.ring.primaries(this.ring.position(key), this.config.n)
  }
}

/** Node id -> the index of its side of a partition. */
export function sidesOf (sides: ReadonlyArray<readonly string[]>): Map<string, number> {
  const side = new Map<string, number>()
  sides.forEach((ids, i) => { for (const id of ids) side.set(id, i) })
  return side
}

/** Lets every pending continuation run (a macrotask boundary; the simulation uses no timers itself). */
export function flush (): Promise<void> {
  return new Promise(resolve => { setImmediate(resolve) })
}
