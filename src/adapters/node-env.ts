/** The real clock and a console logger, for Node processes (the CLI, benchmarks, test children). */
/* eslint-disable no-console -- this is the logger's sink */
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
