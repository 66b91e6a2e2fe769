/**
 * What the pure core needs from its surroundings, injected so that the same code runs in Node, in a browser
 * and in the deterministic simulator: wall-clock time, randomness and a logger. Nothing in src/core reads a
 * clock, draws a random number or prints on its own.
 */

/** Milliseconds since the Unix epoch; a simulator supplies its own virtual time. */
export interface Clock {
  nowMs(): number
  /**
   * Optional: a monotonic, sub-millisecond time in ms from an arbitrary origin, for measuring durations
   * (operation latencies for metrics); `nowMs` is used without it. Node and browsers: `performance.now()`.
   */
  monotonicMs?(): number
}

/** Uniform floats in [0, 1); seeded in the simulator so a failing run replays exactly. */
export interface Rng {
  next(): number
}

/** Levelled logging; `info` is for operators, `debug` for developers. Arguments are formatted by the sink. */
export interface Logger {
  debug(message: string, ...args: unknown[]): void
  info(message: string, ...args: unknown[]): void
  warn(message: string, ...args: unknown[]): void
  error(message: string, ...args: unknown[]): void
}

const noop = (): void => {}

/** A logger that drops everything: the default for libraries and tests. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/** A clock the caller moves by hand: unit tests and the simulator. */
export class ManualClock implements Clock {
  constructor (private now = 0) {}
  nowMs (): number { return this.now }
  set (ms: number): void { this.now = ms }
  advance (ms: number): void { this.now += ms }
}

/** Small, fast, seedable PRNG (mulberry32) for tests and the simulator; not for anything secret. */
export class SeededRng implements Rng {
  private state: number
  constructor (readonly seed: number) { this.state = seed >>> 0 }
  next (): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
