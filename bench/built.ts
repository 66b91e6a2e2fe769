/**
 * The built code (dist/, from `npm run build`) of the modules a benchmark runs in its own process: the
 * in-process peer, the storage engine and its log, the ring. `node node/peer.js` runs dist/, as the
 * benchmark's child peers do, so the benchmark process measures the same code. The benchmarks themselves
 * run under tsx, whose transform keeps function names by wrapping each named closure in a defineProperty
 * call every time one is made: on that code the in-process peer spent 6-8% more CPU per quorum put at 64
 * in flight than on the built code (four interleaved runs, 2026-12-07). Types still come from src/, which
 * dist/ is built from: `built<typeof import('../src/x.js')>('src/x.js')`.
 */
import * as fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const DIST = new URL('../dist/', import.meta.url)

/** Imports dist/<module> (a path such as 'src/peer.js'); tells to build first when it is missing. */
export async function built<M> (module: string): Promise<M> {
  const url = new URL(module, DIST)
  if (!fs.existsSync(url)) throw new Error(`${fileURLToPath(url)} is missing: run \`npm run build\` first (benchmarks run the built code, as node node/peer.js does)`)
  return await import(url.href) as M
}
