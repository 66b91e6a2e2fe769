/**
 * Durability under SIGKILL, with a real process, real files and real fdatasync: a child appends with `sync`
 * durability and prints each acknowledgement; at a random moment it is killed; the recovered store must
 * hold every acknowledged write. Twenty rounds on one directory, so each round also recovers the torn tails,
 * segment rolls and compactions the earlier kills left behind.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'
import { FileWal } from '../../src/adapters/wal-file.js'
import { systemClock } from '../../src/adapters/node-env.js'
import { cryptoRng } from '../../src/adapters/random.js'
import { SeededRng } from '../../src/core/env.js'
import { StorageEngine } from '../../src/core/storage/engine.js'
import { spawnTs } from '../helpers/process.js'
import { valueFor } from './fixtures/values.js'

const child = fileURLToPath(new URL('./fixtures/append-child.ts', import.meta.url))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-crash-'))
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const ROUNDS = 20
const seed = Number(process.env.MESHKV_SEED ?? Date.now() % 1_000_000)

it(`every acknowledged sync write survives SIGKILL at a random moment (${ROUNDS} rounds, seed ${seed})`, async () => {
  const rng = new SeededRng(seed)
  const acked = new Map<string, number>()
  let tornTails = 0
  for (let round = 0; round < ROUNDS; round++) {
    const proc = spawnTs(child, [dir, String(round)])
    await proc.waitFor(/^ready /)
    // Wait for the first acknowledgement, then let it run a random while longer (up to ~2000 more acks).
    await proc.waitFor(/^ack /)
    const more = Math.floor(rng.next() * 2000)
    await proc.waitFor(new RegExp(`^ack r${round}/w\\d+/${more}\\b`)).catch(() => {})
    proc.kill('SIGKILL')
    const { signal } = await proc.exited
    expect(signal, `round ${round} (seed ${seed}): child should die by SIGKILL`).toBe('SIGKILL')
    for (const line of proc.lines) {
      const m = /^ack (\S+) (\d+)$/.exec(line)
      if (m !== null) acked.set(m[1]!, Number(m[2]))
    }
    const engine = await StorageEngine.open({ replicaId: 'verifier', clock: systemClock, rng: cryptoRng, wal: new FileWal(dir, { backgroundSyncMs: 0 }) })
    tornTails += engine.recovery!.tornTails.length
    const missing: string[] = []
    for (const [key, size] of acked) {
      const got = engine.get(key)
      if (got === undefined || got.values.length !== 1 || !Buffer.from(got.values[0]!.value!).equals(valueFor(key, size))) missing.push(key)
    }
    await engine.close()
    expect(missing, `round ${round} (seed ${seed}): acknowledged writes lost`).toEqual([])
  }
  expect(acked.size).toBeGreaterThan(ROUNDS)
  console.log(`crash test: ${acked.size} acknowledged writes over ${ROUNDS} SIGKILLs all recovered; ${tornTails} torn tails truncated (seed ${seed})`)
}, 600_000)
