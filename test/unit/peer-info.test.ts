import { describe, expect, it } from 'vitest'
import type { KvStats } from '../../src/core/replication/types.js'
import { parseInfo } from '../../src/services/peer-info.js'

describe('a member\'s figures (info reply)', () => {
  it('keeps every counter a peer reports, and makes missing or malformed ones 0', () => {
    const stats: KvStats = { puts: 1, gets: 2, deletes: 3, forwarded: 4, quorumFailures: 5, readRepairs: 6, hintsPending: 7, handedOff: 8, dropped: 9, syncRounds: 10, syncRepairs: 11, reaped: 12, badRequests: 13, hedged: 14, expiryPostponedDegraded: 15, refreshes: 16, expiryChecksWaiting: 17 }
    const info = parseInfo('p', JSON.stringify({ keys: 5, walBytes: 6, stats, ops: 7, latency: { samples: 1, p50: 2, p99: 3 } }))
    expect(info.stats).toEqual(stats)
    const bad = parseInfo('p', JSON.stringify({ stats: { puts: 'many', hedged: null, evil: 1 } }))
    expect(bad.stats.puts).toBe(0)
    expect(bad.stats.hedged).toBe(0)
    expect(Object.keys(bad.stats).sort()).toEqual(Object.keys(stats).sort())
  })
})
