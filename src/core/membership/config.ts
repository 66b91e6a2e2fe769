/**
 * SWIM configuration in the manner of memberlist's config.go: each field states what it does, how it scales
 * and its default. Three profiles: `defaultSwimConfig()` for Node peers on a LAN, `browserSwimConfig()` with
 * wider timeouts because browsers throttle timers in background tabs (to once per second, or once per minute
 * after five minutes hidden in Chromium, which is why tabs hold a Web Lock or an audio-free keepalive — the
 * service's business, not this file's), and `testSwimConfig()` with short periods for the simulator.
 */
import { integer } from '../config.js'

export interface SwimConfig {
  /** Time between probes of one member each. With n members a crashed member is probed within
   * n * probeIntervalMs in the worst case (round-robin), ~probeIntervalMs * e/(e-1) on average. Default 1000. */
  probeIntervalMs: number
  /** How long to wait for a direct ack before asking others to probe (ping-req). Should exceed the 99th
   * percentile round trip. Scaled by local health. Default 500. */
  probeTimeoutMs: number
  /** Members asked to probe indirectly (k in the SWIM paper). Default 3. */
  indirectChecks: number
  /** Suspicion timeout = suspicionMult * max(1, log10(n)) * probeIntervalMs at least; a suspect not refuted by
   * then is declared dead. Default 4 (memberlist's LAN value). */
  suspicionMult: number
  /** Upper bound of the suspicion timeout as a multiple of its minimum (Lifeguard: the timeout starts here and
   * shrinks toward the minimum as independent members confirm the suspicion). Default 6. */
  suspicionMaxTimeoutMult: number
  /** Each update is retransmitted retransmitMult * ceil(log10(n + 1)) times (lambda log n). Default 4. */
  retransmitMult: number
  /** Period of the gossip round that pushes pending updates to `gossipNodes` random members. Default 200. */
  gossipIntervalMs: number
  gossipNodes: number
  /** Most updates piggybacked on one message (bounds message size). Default 12. */
  piggybackMax: number
  /** Period of the full-state exchange with one random member (also with recently dead ones, which is what
   * merges the halves of a healed partition). Default 30000. */
  pushPullIntervalMs: number
  /** Lifeguard local health: the probe timeout and interval stretch by up to this factor while this member
   * misses acks it should have had (its own slowness, not others' failure). Default 8. */
  awarenessMax: number
  /** Dead members are still offered push-pulls for this long, so a partition that heals within it merges on
   * its own. Default 1 hour. */
  deadReconnectMs: number
  /** Dead and left members are forgotten after this long. Default 24 hours. */
  deadForgetMs: number
  /** Largest membership table; updates about further members are dropped and counted. Default 4096, so a
   * full-state exchange (~700 bytes a member with addresses) stays within the 4 MiB message limit. */
  membersMax: number
  /** Largest member metadata, encoded. Default 512 bytes. */
  metaBytesMax: number
}

export function defaultSwimConfig (): SwimConfig {
  return {
    probeIntervalMs: 1000,
    probeTimeoutMs: 500,
    indirectChecks: 3,
    suspicionMult: 4,
    suspicionMaxTimeoutMult: 6,
    retransmitMult: 4,
    gossipIntervalMs: 200,
    gossipNodes: 3,
    piggybackMax: 12,
    pushPullIntervalMs: 30_000,
    awarenessMax: 8,
    deadReconnectMs: 3_600_000,
    deadForgetMs: 24 * 3_600_000,
    membersMax: 4096,
    metaBytesMax: 512
  }
}

/** Browsers: timers in background tabs fire at most once a second, so periods and timeouts widen. */
export function browserSwimConfig (): SwimConfig {
  return { ...defaultSwimConfig(), probeIntervalMs: 2000, probeTimeoutMs: 1500, suspicionMult: 6, gossipIntervalMs: 500 }
}

/** Short periods for tests and the simulator. */
export function testSwimConfig (): SwimConfig {
  return { ...defaultSwimConfig(), probeIntervalMs: 200, probeTimeoutMs: 80, gossipIntervalMs: 50, pushPullIntervalMs: 2000 }
}

/** The suspicion timeout bounds for a cluster of `n` members (memberlist's suspicionTimeout). */
export function suspicionTimeouts (config: SwimConfig, n: number): { minMs: number; maxMs: number } {
  const minMs = config.suspicionMult * Math.max(1, Math.log10(Math.max(1, n))) * config.probeIntervalMs
  return { minMs, maxMs: minMs * config.suspicionMaxTimeoutMult }
}

/** How many times each update is retransmitted in a cluster of `n` (lambda * log(n)). */
export function retransmitLimit (config: SwimConfig, n: number): number {
  return config.retransmitMult * Math.max(1, Math.ceil(Math.log10(n + 1)))
}

/**
 * The longest time from a crash to every survivor marking it dead that this configuration implies, for `n`
 * members, with local health at its best: the crashed member is probed within one round of probes
 * (n - 1 periods, round-robin), suspected after that period, and declared dead when an unconfirmed
 * suspicion times out; the dead update then spreads in a few gossip rounds. Tests wait for this bound.
 */
export function detectionBoundMs (config: SwimConfig, n: number): number {
  const round = Math.max(1, n - 1) * config.probeIntervalMs + config.probeIntervalMs
  const { maxMs } = suspicionTimeouts(config, n)
  const spread = retransmitLimit(config, n) * config.gossipIntervalMs
  return round + maxMs + spread
}

export function validateSwimConfig (c: SwimConfig): SwimConfig {
  integer('probeIntervalMs', c.probeIntervalMs, 10, 600_000)
  integer('probeTimeoutMs', c.probeTimeoutMs, 1, c.probeIntervalMs)
  integer('indirectChecks', c.indirectChecks, 0, 32)
  integer('suspicionMult', c.suspicionMult, 1, 100)
  integer('suspicionMaxTimeoutMult', c.suspicionMaxTimeoutMult, 1, 100)
  integer('retransmitMult', c.retransmitMult, 1, 100)
  integer('gossipIntervalMs', c.gossipIntervalMs, 1, 600_000)
  integer('gossipNodes', c.gossipNodes, 0, 64)
  integer('piggybackMax', c.piggybackMax, 1, 256)
  integer('pushPullIntervalMs', c.pushPullIntervalMs, 10, 86_400_000)
  integer('awarenessMax', c.awarenessMax, 1, 64)
  integer('deadReconnectMs', c.deadReconnectMs, 0, Number.MAX_SAFE_INTEGER)
  integer('deadForgetMs', c.deadForgetMs, 0, Number.MAX_SAFE_INTEGER)
  integer('membersMax', c.membersMax, 2, 1_000_000)
  integer('metaBytesMax', c.metaBytesMax, 16, 65_536)
  return c
}
