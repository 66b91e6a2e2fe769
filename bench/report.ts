/**
 * Benchmark output: one JSON object per result on stdout (for scripts), progress on stderr (for people).
 * A result carries its same-run baseline and the ratio to it when there is one; figures from another run
 * are never used as a baseline.
 */
export interface Result {
  suite: string
  metric: string
  value: number
  unit: string
  baseline?: number
  baselineMetric?: string
  ratio?: number
  [extra: string]: unknown
}

export function emit (result: Result): void {
  const out: Result = { ...result, value: round(result.value) }
  if (result.baseline !== undefined) {
    out.baseline = round(result.baseline)
    out.ratio = Math.round((result.value / result.baseline) * 1000) / 1000
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

export function progress (message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

function round (v: number): number {
  return v >= 100 ? Math.round(v) : round3(v)
}

/** Rounded to three decimals, as figures are printed. */
export function round3 (v: number): number { return Math.round(v * 1000) / 1000 }

export function median (values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/**
 * Runs `round` (which does `ops` operations and returns how long it took in ms) `rounds` times after one
 * warm-up, and returns the median rate in ops/s. Medians resist the noise of a shared machine.
 */
export async function rate (ops: number, rounds: number, round: () => Promise<number> | number): Promise<number> {
  await round()
  const rates: number[] = []
  for (let i = 0; i < rounds; i++) rates.push(ops / ((await round()) / 1000))
  return median(rates)
}
