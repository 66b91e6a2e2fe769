/**
 * The benchmarks' closed-loop client: a fixed number of operations in flight for a fixed time, with their
 * latencies.
 */

function percentile (sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

export interface LoopResult {
  rate: number
  ops: number
  p50Ms: number
  p99Ms: number
  errors: number
  /** Operations issued (ops + errors): the next `first` for a phase that continues this one's numbering. */
  attempts: number
  firstError?: string
}

/**
 * `inFlight` workers, each issuing its next `op` when the previous one finishes, until `ms` have passed.
 * The deadline is checked with a clock read per operation (read anyway for the latency), so the loop ends
 * even if every operation fails without ever yielding to the event loop. Operations are numbered from
 * `first`. An operation that throws counts as an error, not in the rate or the latencies.
 */
export async function closedLoop (inFlight: number, ms: number, op: (i: number) => Promise<unknown>, first = 0): Promise<LoopResult> {
  let latencies = new Float64Array(1 << 16)
  let ops = 0
  let next = first
  let errors = 0
  let firstError: string | undefined
  const start = performance.now()
  const deadline = start + ms
  await Promise.all(Array.from({ length: inFlight }, async () => {
    for (let t = performance.now(); t < deadline;) {
      try {
        await op(next++)
      } catch (error) {
        errors++
        firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        t = performance.now()
        continue
      }
      const end = performance.now()
      if (ops === latencies.length) { const grown = new Float64Array(ops * 2); grown.set(latencies); latencies = grown }
      latencies[ops++] = end - t
      t = end
    }
  }))
  const elapsed = performance.now() - start
  const sorted = latencies.subarray(0, ops).sort()
  return { rate: ops / (elapsed / 1000), ops, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), errors, attempts: next - first, ...(firstError === undefined ? {} : { firstError }) }
}

