/** The real clock and a console logger, for Node processes (the CLI, benchmarks, test children). */
/* eslint-disable no-console -- this is the logger's sink */
import * as v8 from 'node:v8'
import type { Clock, Logger } from '../core/env.js'

export const systemClock: Clock = { nowMs: () => Date.now(), monotonicMs: () => performance.now() }

/** Logs to stderr with a component prefix; `debug` only when MESHKV_DEBUG is set. */
export function consoleLogger (component: string): Logger {
  const debug = process.env.MESHKV_DEBUG !== undefined && process.env.MESHKV_DEBUG !== ''
  const prefix = `[${component}]`
  return {
    debug: (m, ...a) => { if (debug) console.error(prefix, m, ...a) },
    info: (m, ...a) => { console.error(prefix, m, ...a) },
    warn: (m, ...a) => { console.error(prefix, 'warning:', m, ...a) },
    error: (m, ...a) => { console.error(prefix, 'error:', m, ...a) }
  }
}

/** V8's heap limit in bytes (raised with node --max-old-space-size). */
export function heapLimitBytes (): number {
  return v8.getHeapStatistics().heap_size_limit
}

/** The store's default memory budget in a Node peer: half the heap limit, leaving the rest to everything
 * else a peer keeps (streams, queues, the replication index's garbage). */
export function storeBudgetDefaultBytes (): number {
  return Math.floor(heapLimitBytes() / 2)
}
