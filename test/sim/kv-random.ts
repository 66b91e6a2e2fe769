/**
 * Randomized KV runs on the fault-injecting simulator (kv-faults.ts): five replicas (N=3, R=2, W=2, sync
 * durability), clients putting, getting and deleting a few hot keys with and without contexts, while 5% of
 * messages are lost and 5% duplicated, every message is delayed 1-10 ms (so they reorder), one partition
 * comes and goes, one replica crashes and later every replica at once (a power cut), each losing what was
 * not durable, and restarts. Then the network heals, every replica restarts, and background rounds run
 * until the primaries agree. The checker requires:
 *
 * - the primaries of every key hold identical states (convergence);
 * - every value read at the end was written by some client (nothing invented);
 * - every acknowledged put's value is still there, unless some write whose context covered it replaced it
 *   (nothing acknowledged lost; concurrent writes stay as siblings);
 * - no value survives that an acknowledged write's context covered (contexts are honoured).
 *
 * A failure names its seed; `MESHKV_SIM_SEED=<n>` replays that one seed exactly. `MESHKV_SIM_SEEDS` (default
 * 200), `MESHKV_SIM_FIRST_SEED` (1) and `MESHKV_SIM_STEPS` (default 2,000 events) make longer runs.
 * `MESHKV_SIM_BUG` injects a known bug to show the checker fails: `skip-fsync` (coordinators and replicas
 * acknowledge before the record is durable), `ignore-context` (coordinators drop the put's context) or
 * `drop-write` (replicas acknowledge merges without applying them). `MESHKV_SIM_DISK_LOSS=1` also destroys
 * one replica's disk mid-run (it restarts empty, as a replaced machine would): exploratory, not part of the
 * default run (see the README's known limits).
 */
import { decodeContext } from '../../src/core/version/context.js'
import { type KeyState, stateEquals, valuesOf } from '../../src/core/version/dvv.js'
import { type VersionVector, vvGet } from '../../src/core/version/vv.js'
import { type FaultNode, FaultSim, NO_FAULTS, flush } from './kv-faults.js'

export const SEEDS = Number(process.env.MESHKV_SIM_SEEDS ?? 200)
export const STEPS = Number(process.env.MESHKV_SIM_STEPS ?? 2_000)
export const ONE_SEED = process.env.MESHKV_SIM_SEED
export const BUG = process.env.MESHKV_SIM_BUG
const DISK_LOSS = process.env.MESHKV_SIM_DISK_LOSS === '1'
export const FIRST_SEED = Number(process.env.MESHKV_SIM_FIRST_SEED ?? 1)

const IDS = ['n0', 'n1', 'n2', 'n3', 'n4']
const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

interface Write {
  key: string
  /** null for a delete. */
  value: string | null
  context: VersionVector
  acked: boolean | null
  /** The put's dot, found on the replicas when it was acknowledged. */
  dot: readonly [string, number] | null
}

function injectBug (node: FaultNode): void {
  const engine = node.engine
  if (BUG === 'skip-fsync') {
    // Acknowledge before the record is durable, as a coordinator and as a replica: every persist effect
    // completes without waiting for the log.
    node.kv.skipPersist = true
  } else if (BUG === 'drop-write') {
    // Replicas acknowledge merges without applying them.
    engine.mergeNow = (key, state) => ({ key, state, context: state.vv, changed: false })
  } else if (BUG === 'ignore-context') {
    const writeLocal = engine.writeLocal.bind(engine)
    engine.writeLocal = (key, value, options) => writeLocal(key, value, value === null ? options : { ...options, context: undefined, contextTs: null })
  } else throw new Error(`unknown MESHKV_SIM_BUG ${BUG}`)
}

/**
 * Records each put's dots as coordinators apply it (values are unique, so a value names its write; a
 * duplicated or retried forward can apply one put twice, under two dots).
 */
function watchDots (node: FaultNode, dots: Map<string, Array<readonly [string, number]>>): void {
  const engine = node.engine
  const writeLocal = engine.writeLocal.bind(engine)
  engine.writeLocal = (key, value, options) => {
    const result = writeLocal(key, value, options)
    if (value !== null) {
      const list = dots.get(dec(value)) ?? []
      list.push([engine.replicaId, vvGet(result.state.vv, engine.replicaId)])
      dots.set(dec(value), list)
    }
    return result
  }
}

/** Runs the simulation until `promise` settles (at most `maxEvents` events). */
async function drive<T> (sim: FaultSim, promise: Promise<T>, maxEvents = 100_000): Promise<T | undefined> {
  let settled = false
  let value: T | undefined
  promise.then(v => { settled = true; value = v }, () => { settled = true })
  for (let i = 0; i < maxEvents && !settled; i++) {
    if (!await sim.step()) { sim.clock.advance(1); await flush() }
  }
  return value
}

export async function runSeed (seed: number): Promise<{ violations: string[]; stats: FaultSim['stats']; writes: number; acked: number }> {
  const sim = await FaultSim.create(seed, IDS, { loss: 0.05, duplicate: 0.05, delayMs: [1, 10], timeoutMs: 60, syncMs: [0, 3] }, { n: 3, r: 2, w: 2 })
  const dots = new Map<string, Array<readonly [string, number]>>()
  sim.onBoot.push(node => { watchDots(node, dots) })
  if (BUG !== undefined) sim.onBoot.push(injectBug)
  // The nodes booted already: watch (and break) them too.
  for (const node of sim.nodes.values()) for (const hook of sim.onBoot) hook(node)
  const rng = sim.rng
  const writes: Write[] = []
  const contexts = new Map<string, string[]>()
  const remember = (key: string, context: string): void => {
    const list = contexts.get(key) ?? []
    list.push(context)
    if (list.length > 8) list.shift()
    contexts.set(key, list)
  }
  let valueSeq = 0
  const upNodes = (): FaultNode[] => [...sim.nodes.values()].filter(n => n.up)
  const clientOp = (): void => {
    const via = upNodes()
    if (via.length === 0) return
    const node = via[Math.floor(rng.next() * via.length)]!
    const key = KEYS[Math.floor(rng.next() * KEYS.length)]!
    const known = contexts.get(key) ?? []
    const context = known.length > 0 && rng.next() < 0.7 ? known[known.length - 1 - Math.floor(rng.next() * Math.min(3, known.length))]! : ''
    const roll = rng.next()
    if (roll < 0.45) {
      const value = `v${seed}-${valueSeq++}`
      const write: Write = { key, value, context: decodeContext(context).vv, acked: null, dot: null }
      writes.push(write)
      node.kv.put(key, enc(value), context === '' ? {} : { context }).then(r => {
        write.acked = true
        // The execution that answered: its coordinator's entry in the context it returned is its dot.
        const vv = decodeContext(r.context).vv
        write.dot = dots.get(value)?.find(([id, n]) => vvGet(vv, id) === n) ?? null
        remember(key, r.context)
      }, () => { write.acked = false })
    } else if (roll < 0.6) {
      const write: Write = { key, value: null, context: decodeContext(context).vv, acked: null, dot: null }
      writes.push(write)
      node.kv.delete(key, { context }).then(() => { write.acked = true }, () => { write.acked = false })
    } else {
      node.kv.get(key).then(r => { if (r.context !== '') remember(key, r.context) }, () => {})
    }
  }

  // The faults of this seed: two crash-restarts — one replica, then every replica at once (a power cut) —
  // one partition (and with DISK_LOSS one lost disk).
  const crashAt = [sim.between(200, STEPS / 2), sim.between(STEPS / 2, STEPS - 200)]
  const partitionAt = sim.between(100, STEPS - 300)
  const diskLossAt = DISK_LOSS ? sim.between(300, STEPS - 300) : -1
  const down: Array<{ id: string; until: number }> = []
  let healAt = -1
  for (let step = 0; step < STEPS; step++) {
    if (rng.next() < 0.3) clientOp()
    if (step === crashAt[0] || step === diskLossAt) {
      const candidates = upNodes()
      const victim = candidates[Math.floor(rng.next() * candidates.length)]!
      if (step === diskLossAt) sim.loseDisk(victim.id)
      else sim.crash(victim.id)
      down.push({ id: victim.id, until: step + sim.between(50, 300) })
    }
    if (step === crashAt[1]) {
      const until = step + sim.between(20, 100)
      for (const node of upNodes()) { sim.crash(node.id); down.push({ id: node.id, until }) }
    }
    for (const d of down.filter(d => d.until === step)) await sim.restart(d.id)
    if (step === partitionAt) {
      const shuffled = [...IDS].sort(() => rng.next() - 0.5)
      sim.partition([shuffled.slice(0, 2), shuffled.slice(2)])
      healAt = step + sim.between(50, 200)
    }
    if (step === healAt) sim.heal()
    if (step % 100 === 0) {
      for (const node of upNodes()) {
        node.kv.handoff().catch(() => {})
        node.kv.syncRound().catch(() => {})
      }
    }
    if (!await sim.step()) { sim.clock.advance(1); await flush() }
  }

  // Heal: no more faults, everyone back, let what is in flight finish, then background rounds until the
  // primaries agree (bounded).
  sim.faults = NO_FAULTS
  sim.heal()
  for (const node of sim.nodes.values()) await sim.restart(node.id)
  await drive(sim, new Promise<void>(resolve => { sim.schedule(200, resolve) }))
  let converged = false
  for (let round = 0; round < 40 && !converged; round++) {
    sim.clock.advance(10)
    for (const node of sim.nodes.values()) {
      await drive(sim, node.kv.handoff())
      await drive(sim, node.kv.syncRound())
    }
    converged = KEYS.every(key => {
      const states = sim.primaries(key).map(id => sim.nodes.get(id)!.engine.state(key))
      return states.every(s => s === states[0] || (s !== undefined && states[0] !== undefined && stateEquals(s, states[0])))
    })
  }

  const violations: string[] = []
  if (!converged) violations.push('primaries did not converge within 40 background rounds')
  if (sim.stats.handlerErrors > 0) violations.push(`${sim.stats.handlerErrors} request handlers threw`)
  const written = new Set(writes.flatMap(w => (w.value === null ? [] : [w.value])))
  for (const key of KEYS) {
    const state: KeyState | undefined = sim.nodes.get(sim.primaries(key)[0]!)!.engine.state(key)
    const live = state === undefined ? [] : valuesOf(state)
    const values = new Set(live.map(s => dec(s.value!)))
    for (const v of values) if (!written.has(v)) violations.push(`${key}: value ${v} that nobody wrote`)
    for (const w of writes) {
      if (w.key !== key) continue
      if (w.acked === true && w.value !== null && !values.has(w.value)) {
        const dot = w.dot
        const replaced = dot !== null && writes.some(o => o.key === key && vvGet(o.context, dot[0]) >= dot[1])
        if (!replaced) violations.push(`${key}: acknowledged ${w.value}${dot === null ? ' (dot not found at ack)' : ` (dot ${dot[0]}:${dot[1]})`} lost`)
      }
      if (w.acked === true) {
        for (const s of live) {
          if (vvGet(w.context, s.id) >= s.n) violations.push(`${key}: ${dec(s.value!)} (dot ${s.id}:${s.n}) survived an acknowledged ${w.value === null ? 'delete' : `put of ${w.value}`} whose context covered it`)
        }
      }
    }
  }
  return { violations, stats: sim.stats, writes: writes.length, acked: writes.filter(w => w.acked === true).length }
}

