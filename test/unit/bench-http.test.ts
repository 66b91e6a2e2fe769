/** The HTTP benchmark's CPU budget: what the machine leaves the peers per request at a target rate. */
import { describe, expect, it } from 'vitest'
import { peerCpuBudget } from '../../bench/http.js'

describe('peerCpuBudget', () => {
  it('is every core\'s time less the client\'s, per request', () => {
    // 2 cores at 5,000 requests/s: 0.4 CPU-ms each; a client at 0.08 CPU-ms leaves the peers 0.32.
    expect(peerCpuBudget(2, 5000, 0.08)).toBeCloseTo(0.32, 10)
    expect(peerCpuBudget(4, 5000, 0.08)).toBeCloseTo(0.72, 10)
  })

  it('goes negative when the client alone needs more than the machine at that rate', () => {
    expect(peerCpuBudget(2, 30_000, 0.08)).toBeLessThan(0)
  })
})
