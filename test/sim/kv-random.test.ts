// The randomized KV runs (kv-random.ts, which describes them and the environment variables).
import { describe, expect, it } from 'vitest'
import { BUG, FIRST_SEED, ONE_SEED, SEEDS, STEPS, runSeed } from './kv-random.js'

describe('kv: randomized runs on the fault-injecting simulator', () => {
  const seeds = ONE_SEED !== undefined ? [Number(ONE_SEED)] : Array.from({ length: SEEDS }, (_, i) => FIRST_SEED + i)
  it(`${seeds.length} seeds x ${STEPS} events: 5% loss and duplication, reordering, a partition, a replica's crash and a power cut each${BUG === undefined ? '' : ` (bug injected: ${BUG})`}`, async () => {
    const failed: Array<{ seed: number; violations: string[] }> = []
    let events = 0
    let acked = 0
    for (const seed of seeds) {
      const result = await runSeed(seed)
      events += result.stats.events
      acked += result.acked
      if (result.violations.length > 0) failed.push({ seed, violations: result.violations })
    }
    const report = failed.map(f => `seed ${f.seed} (replay: MESHKV_SIM_SEED=${f.seed}): ${f.violations.slice(0, 3).join('; ')}`)
    console.log(`kv random: ${seeds.length} seeds, ${events} events, ${acked} acknowledged writes; ${failed.length} seeds failed${failed.length > 0 ? `: ${failed.slice(0, 300).map(f => f.seed).join(', ')}${failed.length > 300 ? ', …' : ''}` : ''}`)
    expect(report).toEqual([])
  }, 600_000)
})
