// node/wal.js, as an operator runs it (from the built package): stats on a healthy directory, a clear
// error naming file and offset on a corrupt one, --skip-corrupt to get past it, and compact to repair.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { FileWal } from '../../src/adapters/wal-file.js'
import { systemClock } from '../../src/adapters/node-env.js'
import { cryptoRng } from '../../src/adapters/random.js'
import { StorageEngine } from '../../src/core/storage/engine.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-waltool-'))
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }) })

function tool (...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['node/wal.js', ...args], { encoding: 'utf8' })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

it('node/wal.js reports a store, names the damaged file and offset, and skips damage when asked', async () => {
  const engine = await StorageEngine.open({ replicaId: 'r', clock: systemClock, rng: cryptoRng, wal: new FileWal(dir, { backgroundSyncMs: 0 }) })
  for (let i = 0; i < 100; i++) await engine.put(`k${i}`, new TextEncoder().encode(`value ${i}`))
  await engine.close()

  const ok = tool('stats', dir)
  expect(ok.status).toBe(0)
  expect(JSON.parse(ok.stdout).stats.keys).toBe(100)

  const segment = fs.readdirSync(dir).filter(f => f.endsWith('.wal')).map(f => path.join(dir, f)).find(f => fs.statSync(f).size > 1000)!
  const bytes = fs.readFileSync(segment)
  // Damage one key's record (inside its value), wherever the log's layout put it.
  const at = bytes.indexOf('value 50')
  expect(at).toBeGreaterThan(0)
  bytes[at + 2] = bytes[at + 2]! ^ 0xff
  fs.writeFileSync(segment, bytes)

  const bad = tool('stats', dir)
  expect(bad.status).toBe(1)
  expect(bad.stderr).toContain(segment)
  expect(bad.stderr).toMatch(/at offset \d+/)

  const skipped = tool('stats', dir, '--skip-corrupt')
  expect(skipped.status).toBe(0)
  const report = JSON.parse(skipped.stdout)
  expect(report.recovery.skipped).toHaveLength(1)
  expect(report.stats.keys).toBe(99)

  // Skipping does not repair the file: the damage is still there until a compaction rewrites the store.
  expect(tool('stats', dir).status).toBe(1)
  expect(tool('compact', dir, '--skip-corrupt').status).toBe(0)
  expect(fs.readdirSync(dir).some(f => f.endsWith('.snap'))).toBe(true)
  const repaired = tool('stats', dir)
  expect(repaired.status).toBe(0)
  expect(JSON.parse(repaired.stdout).stats.keys).toBe(99)
  expect(tool('frobnicate', dir).status).toBe(2)
})
