/**
 * A deterministic cluster simulator for the pure SWIM machine: virtual time, an event queue, and a network
 * with seeded loss, delay and partitions. Every random choice — delays, drops, each member's own Rng — comes
 * from the seed, so a failing run replays exactly with the seed it prints.
 */
import { SeededRng } from '../../src/core/env.js'
import type { SwimConfig } from '../../src/core/membership/config.js'
import { type Effect, type MemberState, type Meta, Swim, type SwimMessage, type SwimOptions } from '../../src/core/membership/swim.js'

export interface SimOptions {
  seed: number
  size: number
  config: SwimConfig
  /** Probability that any message is dropped. */
  loss?: number
  /** One-way delay range in ms. */
  delayMs?: readonly [number, number]
  /** What each member publishes and how it checks others (default: `kind` and `vnodes`, no check). */
  member?: (id: string) => SimMember
}

export interface SimMember { meta: Meta; options?: SwimOptions }

export interface Refusal { at: number; observer: string; id: string; reason: string; direct: boolean }

interface Event { at: number; seq: number; run: () => void }

class Heap {
  private items: Event[] = []
  get size (): number { return this.items.length }
  push (e: Event): void {
    const a = this.items
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (less(a[p]!, a[i]!)) break
      ;[a[p], a[i]] = [a[i]!, a[p]!]
      i = p
    }
  }

  pop (): Event | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && less(a[l]!, a[m]!)) m = l
        if (r < a.length && less(a[r]!, a[m]!)) m = r
        if (m === i) break
        ;[a[m], a[i]] = [a[i]!, a[m]!]
        i = m
      }
    }
    return top
  }

  peek (): Event | undefined { return this.items[0] }
}

function less (a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

export interface Change { at: number; observer: string; id: string; state: MemberState; previous: MemberState | null; incarnation: number }

export class SimCluster {
  readonly rng: SeededRng
  now = 0
  readonly nodes = new Map<string, { swim: Swim; up: boolean; wakeAt: number }>()
  readonly changes: Change[] = []
  readonly refusals: Refusal[] = []
  messages = 0
  dropped = 0
  private readonly queue = new Heap()
  private seq = 0
  private partition: Map<string, number> | null = null
  loss: number
  private readonly delay: readonly [number, number]

  constructor (readonly options: SimOptions) {
    this.rng = new SeededRng(options.seed)
    this.loss = options.loss ?? 0
    this.delay = options.delayMs ?? [1, 5]
    for (let i = 0; i < options.size; i++) this.add(SimCluster.idOf(i))
  }

  static idOf (i: number): string { return `m${String(i).padStart(4, '0')}` }

  get ids (): string[] { return [...this.nodes.keys()] }

  /** Starts a member (new, or restarted with a higher incarnation) and joins it through `seeds`. */
  add (id: string, incarnation = 0, seeds: readonly string[] = [], member: SimMember = this.options.member?.(id) ?? { meta: { kind: 'node', vnodes: 256 } }): Swim {
    const swim = new Swim(id, member.meta, incarnation, this.options.config, new SeededRng(Math.floor(this.rng.next() * 2 ** 32)), this.now, member.options)
    this.nodes.set(id, { swim, up: true, wakeAt: Infinity })
    this.perform(id, swim.join(seeds))
    this.schedule(id)
    return swim
  }

  /** Bootstraps a cluster in which everyone already knows everyone (as after a completed join). */
  static formed (options: SimOptions): SimCluster {
    const sim = new SimCluster(options)
    const ids = sim.ids
    for (const id of ids) {
      const swim = sim.nodes.get(id)!.swim
      const members = ids.map(other => ({ id: other, incarnation: 0, state: 'alive' as const, meta: sim.nodes.get(other)!.swim.view(other)!.meta }))
      swim.receive(ids[0]!, { type: 'push-pull', join: false, reply: true, members }, 0)
    }
    sim.changes.length = 0
    return sim
  }

  crash (id: string): void {
    this.nodes.get(id)!.up = false
  }

  /** Drops every message between members of different groups (members not listed form their own group). */
  split (...groups: string[][]): void {
    this.partition = new Map()
    groups.forEach((g, i) => { for (const id of g) this.partition!.set(id, i) })
  }

  heal (): void {
    this.partition = null
  }

  private at (at: number, run: () => void): void {
    this.queue.push({ at, seq: this.seq++, run })
  }

  private schedule (id: string): void {
    const node = this.nodes.get(id)!
    if (!node.up) return
    const at = Math.max(this.now, node.swim.nextWakeMs())
    if (at >= node.wakeAt) return
    node.wakeAt = at
    const swim = node.swim
    this.at(at, () => {
      const current = this.nodes.get(id)
      if (current === undefined || current.swim !== swim || !current.up || current.wakeAt !== at) return
      current.wakeAt = Infinity
      this.perform(id, swim.tick(this.now))
      this.schedule(id)
    })
  }

  private perform (from: string, effects: Effect[]): void {
    for (const e of effects) {
      if (e.type === 'change') {
        this.changes.push({ at: this.now, observer: from, id: e.member.id, state: e.member.state, previous: e.previous, incarnation: e.member.incarnation })
        continue
      }
      if (e.type === 'send') this.send(from, e.to, e.message)
      else this.refusals.push({ at: this.now, observer: from, id: e.id, reason: e.reason, direct: e.direct })
    }
  }

  private send (from: string, to: string, message: SwimMessage): void {
    this.messages++
    const blocked = this.partition !== null && (this.partition.get(from) ?? -1) !== (this.partition.get(to) ?? -1)
    if (blocked || this.rng.next() < this.loss) { this.dropped++; return }
    const [lo, hi] = this.delay
    const sender = this.nodes.get(from)!.swim
    this.at(this.now + lo + this.rng.next() * (hi - lo), () => {
      const node = this.nodes.get(to)
      if (node === undefined || !node.up || this.nodes.get(from)?.swim !== sender) return
      this.perform(to, node.swim.receive(from, message, this.now))
      this.schedule(to)
    })
  }

  /** Runs events until `until` ms of virtual time. */
  run (untilMs: number): void {
    for (;;) {
      const next = this.queue.peek()
      if (next === undefined || next.at > untilMs) break
      this.queue.pop()
      this.now = next.at
      next.run()
    }
    this.now = untilMs
  }

  /** Runs until `done()` holds (checked after every event), or throws after `maxMs` of virtual time. */
  runUntil (done: () => boolean, maxMs: number, what: string): number {
    const deadline = this.now + maxMs
    while (!done()) {
      const next = this.queue.pop()
      if (next === undefined || next.at > deadline) {
        throw new Error(`${what}: not reached within ${maxMs} ms of simulated time (seed ${this.options.seed})`)
      }
      this.now = next.at
      next.run()
    }
    return this.now
  }

  stateOf (observer: string, id: string): MemberState | undefined {
    return this.nodes.get(observer)!.swim.view(id)?.state
  }

  /** Live members (up) other than `except`. */
  upIds (...except: string[]): string[] {
    return [...this.nodes].filter(([id, n]) => n.up && !except.includes(id)).map(([id]) => id)
  }
}
