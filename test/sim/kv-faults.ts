/**
 * A seeded, fault-injecting simulation of replicas: each runs the replication state machine
 * (src/core/replication/replication.ts) directly — the simulator is its host and performs its effects —
 * over a real storage engine on a memory WAL whose syncs complete some simulated time later, with the real
 * ring and wire codec, and a network that loses, delays, duplicates and reorders messages, partitions peers,
 * and crashes them (losing what was not durable) and restarts them from their volumes. Timeouts are the
 * machines' ticks, run every TICK_MS of simulated time. Everything runs off one seeded Rng and one queue of
 * timed events; the only async code is the storage engine's, which runs in between as microtasks (no real
 * timers or I/O), so a seed replays a run exactly.
 *
 * Failure detection is perfect and instant (a node sees as up exactly the nodes that are up and on its side
 * of the partition), as SWIM would be after detection.
 */
import { loadHash64, loadRingHash } from '../../src/adapters/hash-xxhash.js'
import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { Writer } from '../../src/core/codec.js'
import { ManualClock, SeededRng, silentLogger } from '../../src/core/env.js'
import { OverloadedError, UnreachableError, WalFailedError } from '../../src/core/errors.js'
import { type KvConfig, defaultKvConfig } from '../../src/core/kv/config.js'
import { type KvReply, type KvRequest, decodeMessage, encodeReply, encodeRequest } from '../../src/core/kv/messages.js'
import type { ClientOp } from '../../src/core/kv/node.js'
import type { Effect, Message, PersistToken, RequestTicket } from '../../src/core/replication/flow.js'
import { type Call, Replication } from '../../src/core/replication/replication.js'
import type { GetResult, KvEvents, KvStats, PutResult, ReadOptions, SyncResult, WriteOptions } from '../../src/core/replication/types.js'
import { Emitter } from '../../src/core/emitter.js'
import { OpLatencies } from '../../src/services/peer-info.js'
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
  /** A request with no reply by then fails with TimeoutError (the machines' requestTimeoutMs). */
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

/** A peer's request as the simulator hands it to a machine: whom to answer, under which of its ids. */
interface Origin { readonly from: string; readonly incarnation: number; readonly rid: RequestTicket }

interface Settle { resolve: (value: never) => void; reject: (error: Error) => void }

/** Simulated ms between two ticks of every machine (its request timeouts). */
export const TICK_MS = 10

/**
 * The host of one incarnation of a replica's state machine: starts client operations and background turns
 * as calls, and performs the machine's effects on the simulated network and log.
 */
export class SimHost {
  readonly machine: Replication
  /** Set to make `persist` effects complete without waiting for the log (the skip-fsync bug). */
  skipPersist = false
  /** Changes the machine made (writes it coordinated, expiries). */
  readonly events = new Emitter<KvEvents>(error => { throw error })

  constructor (private readonly sim: FaultSim, readonly node: FaultNode, readonly incarnation: number, engine: StorageEngine) {
    const describe = (): string => JSON.stringify(node.figures.info(this, engine))
    this.machine = new Replication(sim.ring, { engine, config: sim.config, hash64: sim.hash64, log: silentLogger, describe }, sim.clock.nowMs(), null)
  }

  get id (): string { return this.machine.id }
  get stats (): KvStats { return this.machine.stats }
  private get current (): boolean { return this.node.incarnation === this.incarnation && this.node.up }

  put (key: string, value: Uint8Array, options: WriteOptions = {}): Promise<PutResult> { return this.timed('put', this.call({ type: 'put', key, value, options })) }
  delete (key: string, options: WriteOptions = {}): Promise<PutResult> { return this.timed('delete', this.call({ type: 'delete', key, options })) }
  get (key: string, options: ReadOptions = {}): Promise<GetResult> { return this.timed('get', this.call({ type: 'get', key, options })) }
  handoff (): Promise<{ delivered: number; dropped: number; reaped: number }> { return this.call({ type: 'handoff' }) }
  syncRound (peer?: string): Promise<SyncResult | null> { return this.call({ type: 'sync', ...(peer === undefined ? {} : { peer }) }) }

  /** Records a client operation's simulated latency in the node's dashboard figures. */
  private timed<T> (name: ClientOp, op: Promise<T>): Promise<T> {
    const start = this.sim.clock.nowMs()
    const record = (): void => { this.node.figures.record(name, this.sim.clock.nowMs() - start, null, undefined) }
    op.then(record, record)
    return op
  }

  /** One TTL sweep turn now. */
  sweep (): void {
    this.perform(() => this.machine.sweep(this.sim.clock.nowMs()))
  }

  /** A request handed in directly (not through the network), answered to the caller. */
  handle (from: string, request: KvRequest): Promise<KvReply> {
    return new Promise(resolve => {
      this.perform(() => this.machine.receive(from, { type: 'request', rid: resolve, request }, this.sim.clock.nowMs()))
    })
  }

  call<T> (call: Call): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const op: Settle = { resolve: resolve as (value: never) => void, reject }
      this.perform(() => this.machine.call(op, call, this.sim.clock.nowMs()))
    })
  }

  /** A peer's request arrives. */
  accept (from: string, incarnation: number, rid: RequestTicket, request: KvRequest): void {
    const origin: Origin = { from, incarnation, rid }
    this.perform(() => this.machine.receive(from, { type: 'request', rid: origin, request }, this.sim.clock.nowMs()))
  }

  /** A reply (or a failure) for one of this machine's requests arrives. */
  deliver (from: string, message: Message): void {
    this.perform(() => this.machine.receive(from, message, this.sim.clock.nowMs()))
  }

  /** Ticks the machine; false if that did nothing (no request timed out). */
  tick (): boolean {
    let any = false
    this.perform(() => {
      const effects = this.machine.tick(this.sim.clock.nowMs())
      any = effects.length > 0
      return effects
    })
    return any
  }

  /** Runs a machine call and performs its effects; a crashed incarnation does nothing. */
  perform (run: () => Effect[]): void {
    if (!this.current) return
    let effects: Effect[]
    try {
      effects = run()
    } catch (error) {
      this.sim.stats.handlerErrors++
      throw error
    }
    const tokens: PersistToken[] = []
    for (const effect of effects) {
      switch (effect.type) {
        case 'send': this.sim.transmit(this, effect.to, effect.channel, effect.rid, effect.request); break
        case 'reply': {
          // A request from a peer carries its origin; one a test handed in, the function that takes the reply.
          const origin = effect.rid as Origin | ((reply: KvReply) => void)
          if (typeof origin === 'function') origin(effect.reply)
          else this.sim.answer(this, origin.from, origin.incarnation, origin.rid, effect.reply)
          break
        }
        case 'persist': tokens.push(effect.token); break
        case 'complete': {
          const settle = effect.op as Settle
          if (effect.ok) settle.resolve(effect.value as never)
          else settle.reject(effect.value as Error)
          break
        }
        case 'change': this.events.emit('change', effect.event); break
      }
    }
    if (tokens.length === 0) return
    const settle = (error: Error | undefined): void => {
      this.perform(() => tokens.flatMap(t => this.machine.persisted(t, error, this.sim.clock.nowMs())))
    }
    if (this.skipPersist) this.sim.schedule(0, () => { settle(undefined) })
    else this.node.engine.durable().then(() => { settle(undefined) }, (error: unknown) => { settle(error as Error) })
  }
}

export interface FaultNode {
  readonly id: string
  readonly volume: MemoryVolume
  engine: StorageEngine
  /** The running incarnation's host: client operations and background turns start here. */
  kv: SimHost
  wal: SimWal
  up: boolean
  /** Bumped by every crash: messages of an earlier incarnation are never delivered. */
  incarnation: number
  /** The dashboard's figures of this node (its answer to `info`). */
  readonly figures: OpLatencies
}

export interface SimOptions {
  /** Ring tokens per member. Default 32. */
  vnodes?: number
  /** Log syncs complete at once (in a microtask) instead of some simulated time later. */
  instantSync?: boolean
  /** Where each member lives and whether it is durable (default: durable, at a location of its own); a
   * volatile member owns a quarter of the tokens, as a tab does. */
  placement?: (id: string) => { location: string; durable: boolean }
}

/** An event's action; false means it did nothing (so no continuation needs to run after it). */
type Action = () => void | boolean

interface Event { at: number; order: number; run: Action; tick: boolean }

export class FaultSim {
  readonly clock = new ManualClock(1_700_000_000_000)
  readonly rng: SeededRng
  readonly nodes = new Map<string, FaultNode>()
  /** Partition: node id -> side; nodes on different sides cannot talk. */
  side = new Map<string, number>()
  faults: Faults
  readonly stats = { events: 0, messages: 0, lost: 0, duplicated: 0, crashes: 0, diskLosses: 0, handlerErrors: 0, unsupported: 0 }
  private readonly queue: Event[] = []
  private readonly writer = new Writer(1024)
  private ringNow: Ring | null = null
  /** Run on every node as it boots, before it takes a request: to watch its engine, or to inject a bug. */
  readonly onBoot: Array<(node: FaultNode) => void> = []

  /** Nodes cut off from everyone, though running (a test's "down", as SWIM would see it). */
  readonly isolated = new Set<string>()
  /** Nodes that silently drop every message sent to them while the others still list them up (a tab that
   * vanished before SWIM noticed). */
  readonly silent = new Set<string>()
  /** Extra delay (ms) of every request sent to a node: a replica that is slow but answers. */
  readonly slow = new Map<string, number>()
  /**
   * Nodes that run an older version, with the request types it does not know: each answers those with an
   * ERR_UNSUPPORTED error reply, as rpc.ts does for a type its decoder does not know (a mixed-version mesh).
   */
  readonly older = new Map<string, ReadonlySet<KvRequest['type']>>()
  /** Nodes that refuse the given request types as overloaded (an ERR_OVERLOADED reply, as admission control sends). */
  readonly overloaded = new Map<string, ReadonlySet<KvRequest['type']>>()
  /**
   * Nodes to which every sender's own link is full, with the request types that fail: such a request fails
   * at once at the sender with OverloadedError, never sent (src/services/rpc.ts past its in-flight bound).
   */
  readonly linkFull = new Map<string, ReadonlySet<KvRequest['type']>>()
  /** Members in the ring (joined and not left). */
  private readonly members: string[] = []

  private constructor (readonly seed: number, readonly config: KvConfig, faults: Faults, private readonly ringHash: RingHash, readonly hash64: (s: string) => bigint, private readonly options: SimOptions) {
    this.rng = new SeededRng(seed)
    this.faults = faults
  }

  static async create (seed: number, ids: readonly string[], faults: Faults, config: Partial<KvConfig> = {}, options: SimOptions = {}): Promise<FaultSim> {
    const sim = new FaultSim(seed, { ...defaultKvConfig(), requestTimeoutMs: faults.timeoutMs, ...config }, faults, await loadRingHash(), await loadHash64(), options)
    sim.members.push(...ids)
    sim.ringNow = sim.buildRing()
    for (const id of ids) await sim.addNode(id)
    sim.refresh()
    sim.schedule(TICK_MS, function tick (this: void): boolean {
      let any = false
      for (const node of sim.nodes.values()) if (node.up && node.kv.tick()) any = true
      sim.schedule(TICK_MS, tick, true)
      return any
    }, true)
    return sim
  }

  get ring (): Ring { return this.ringNow! }

  /** Whether `id` is in the ring (joined and not left). */
  isMember (id: string): boolean { return this.members.includes(id) }

  private buildRing (): Ring {
    const vnodes = this.options.vnodes ?? VNODES
    return Ring.build(this.members.map(id => {
      const place = this.options.placement?.(id)
      return place === undefined ? { id, vnodes } : { id, vnodes: place.durable ? vnodes : Math.max(1, vnodes >> 2), ...place }
    }), this.ringHash, { minDurable: this.config.minDurable })
  }

  private async addNode (id: string): Promise<FaultNode> {
    const node = { id, volume: new MemoryVolume(), up: true, incarnation: 0, figures: new OpLatencies() } as FaultNode
    this.nodes.set(id, node)
    await this.boot(node)
    return node
  }

  /** A new member joins the ring. */
  async join (id: string): Promise<FaultNode> {
    const node = await this.addNode(id)
    this.members.push(id)
    this.ringNow = this.buildRing()
    this.refresh()
    return node
  }

  /** A member leaves the ring (a completed graceful leave): it is cut off and owns nothing. */
  leave (id: string): void {
    this.members.splice(this.members.indexOf(id), 1)
    this.isolated.add(id)
    this.ringNow = this.buildRing()
    this.refresh()
  }

  /** A random integer in [lo, hi]. */
  between (lo: number, hi: number): number { return lo + Math.floor(this.rng.next() * (hi - lo + 1)) }

  /** Runs `fn` `delayMs` of simulated time from now; events at the same time run in a random order. */
  schedule (delayMs: number, fn: Action, tick = false): void {
    const event = { at: this.clock.nowMs() + delayMs, order: this.rng.next(), run: fn, tick }
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

  /** Runs events until `promise` settles (at most `maxEvents`); its value, or undefined if it failed or ran out. */
  async drive<T> (promise: Promise<T>, maxEvents = 100_000): Promise<T | undefined> {
    let settled = false
    let value: T | undefined
    promise.then(v => { settled = true; value = v }, () => { settled = true })
    await flush()
    for (let i = 0; i < maxEvents && !settled; i++) await this.step()
    return value
  }

  /**
   * Runs events until `promise` settles, then returns its value or throws its error; fails if it is still
   * pending after `maxEvents` events (a stalled simulation, never a silent hang).
   */
  async run<T> (promise: Promise<T>, maxEvents = 1_000_000): Promise<T> {
    let settled = false
    promise.then(() => { settled = true }, () => { settled = true })
    await flush()
    for (let i = 0; !settled; i++) {
      if (i >= maxEvents) throw new Error(`simulation stalled: an operation is still pending after ${maxEvents} events`)
      await this.step()
    }
    return await promise
  }

  /** Runs events until only the machines' ticks are queued: every message and log sync under way is done. */
  async settle (maxEvents = 1_000_000): Promise<void> {
    await flush()
    for (let i = 0; this.queue.some(e => !e.tick); i++) {
      if (i >= maxEvents) throw new Error(`simulation stalled: work still queued after ${maxEvents} events`)
      await this.step()
    }
  }

  get pending (): number { return this.queue.length }

  reachable (from: string, to: string): boolean {
    const a = this.nodes.get(from)
    const b = this.nodes.get(to)
    return a !== undefined && b !== undefined && a.up && b.up && !this.isolated.has(from) && !this.isolated.has(to) && (this.side.get(from) ?? 0) === (this.side.get(to) ?? 0)
  }

  refresh (): void {
    for (const node of this.nodes.values()) {
      if (node.up) node.kv.machine.setMembership(this.ring, id => this.reachable(node.id, id))
    }
  }

  private async boot (node: FaultNode): Promise<void> {
    const later = this.options.instantSync === true ? queueMicrotask : (fn: () => void): void => { this.schedule(this.between(...this.faults.syncMs), fn) }
    const wal = new SimWal(node.volume, node.id, later)
    const engine = await StorageEngine.open({ replicaId: node.id, clock: this.clock, rng: new SeededRng(this.between(1, 1e9)), wal })
    node.wal = wal
    node.engine = engine
    node.kv = new SimHost(this, node, node.incarnation, engine)
    for (const hook of this.onBoot) hook(node)
  }

  /** A request from `host` to `to`, through the faulty network; its reply or failure comes back to `host`. */
  transmit (host: SimHost, to: string, _channel: string, rid: RequestTicket, req: KvRequest): void {
    const from = host.node.id
    if (!this.reachable(from, to)) {
      this.schedule(1, () => { host.deliver(to, { type: 'failed', rid, error: new UnreachableError(to, 'partitioned or down') }) })
      return
    }
    if (this.linkFull.get(to)?.has(req.type) === true) {
      this.schedule(1, () => { host.deliver(to, { type: 'failed', rid, error: new OverloadedError(`requests to ${to}`, this.config.inFlightMax) }) })
      return
    }
    if (this.silent.has(to)) return
    const bytes = encodeRequest(this.writer, 1, req).slice()
    const copies = this.rng.next() < this.faults.duplicate ? 2 : 1
    if (copies === 2) this.stats.duplicated++
    for (let c = 0; c < copies; c++) {
      if (this.rng.next() < this.faults.loss) { this.stats.lost++; continue }
      this.schedule(this.between(...this.faults.delayMs) + (this.slow.get(to) ?? 0), () => {
        if (!this.reachable(from, to)) return false // lost on the way
        this.stats.messages++
        const decoded = decodeMessage(bytes, LIMITS)
        if (decoded.kind !== 'request') throw new Error('codec returned a reply for a request')
        const target = this.nodes.get(to)!
        if (this.older.get(to)?.has(decoded.request.type) === true) {
          this.stats.unsupported++
          this.answer(target.kv, from, host.incarnation, rid, { type: 'error', code: 'ERR_UNSUPPORTED', message: `request type ${decoded.request.type} is unknown to this peer (an older version)`, acked: 0, required: 0 })
          return
        }
        if (this.overloaded.get(to)?.has(decoded.request.type) === true) {
          this.answer(target.kv, from, host.incarnation, rid, { type: 'error', code: 'ERR_OVERLOADED', message: 'refused: overloaded', acked: 0, required: 0 })
          return
        }
        target.kv.accept(from, host.incarnation, rid, decoded.request)
      })
    }
  }

  /** `host`'s reply to request `rid` of `to` (in its incarnation `incarnation`), through the faulty network. */
  answer (host: SimHost, to: string, incarnation: number, rid: RequestTicket, reply: KvReply): void {
    const from = host.node.id
    const back = encodeReply(this.writer, 1, reply).slice()
    if (this.rng.next() < this.faults.loss) { this.stats.lost++; return }
    this.schedule(this.between(...this.faults.delayMs), () => {
      const target = this.nodes.get(to)!
      if (!this.reachable(from, to) || target.incarnation !== incarnation) return false
      const decoded = decodeMessage(back, LIMITS)
      if (decoded.kind !== 'reply') throw new Error('codec returned a request for a reply')
      target.kv.deliver(from, { type: 'reply', rid, reply: decoded.reply })
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

  primaries (key: string): readonly string[] {
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
