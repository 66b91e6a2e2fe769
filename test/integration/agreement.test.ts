/**
 * Mesh-wide agreement with real processes: a peer started with `--n 5` (or another `--min-durable`) that
 * joins a two-peer mesh of N=3 is refused. Both sides log why, naming both values; the mesh counts the
 * refusal in /stats; no member of the mesh ever lists it, it never lists them, and it exits with status 1.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const swimFlags = ['--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60', '--push-pull-interval-ms', '2000']
const group = peerGroup('meshkv-agreement-', swimFlags)
afterAll(async () => { await group.stopAll() })

/** Resolves with the exit of `p`, or fails after `timeoutMs`. */
async function exitOf (p: PeerProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p.exited, new Promise<never>((resolve, reject) => { timer = setTimeout(() => { reject(new Error(`peer did not exit within ${timeoutMs} ms:\n${p.output.join('\n')}`)) }, timeoutMs) })])
  } finally {
    clearTimeout(timer)
  }
}

async function incompatibleCount (p: PeerProcess): Promise<number> {
  const stats = await (await fetch(`${p.http}/stats`, { signal: AbortSignal.timeout(5000) })).json() as { swim: { incompatible: number } }
  return stats.swim.incompatible
}

/** Lines of `p`'s output that report a membership change of member `id` (the CLI logs every one). */
const changesOf = (p: PeerProcess, id: string): string[] => p.output.filter(line => line.includes(`member ${id} `))

describe('mesh-wide agreement (node processes)', () => {
  it('refuses a peer with --n 5 or another --min-durable joining a mesh of N=3: both sides log both values, and it never enters the ring', async () => {
    const boot = await group.start('boot', ['--bootstrap'])
    const p1 = await group.start('p1', ['--join', boot.tcp])
    const mesh = [boot, p1]
    await waitUntil(async () => {
      for (const p of mesh) if ((await members(p)).filter(m => m.state === 'alive').length !== 2) return false
      return true
    }, 30_000, 'the N=3 mesh forms')

    const bad = await group.start('bad-n', ['--join', boot.tcp, '--n', '5'])
    // The joiner is told why, logs both values and exits rather than serve a ring of its own.
    expect((await exitOf(bad, 60_000)).code).toBe(1)
    expect(bad.output.some(line => /join refused/.test(line) && line.includes('n=5 here, n=3 there')), bad.output.join('\n')).toBe(true)
    expect(bad.output.some(line => line.includes(boot.id) && line.includes('n=5 here, n=3 there'))).toBe(true)
    // The member it reached logs the refusal with both values, and counts it.
    await waitUntil(async () => boot.output.some(line => line.includes(`refusing member ${bad.id}`) && line.includes('n=3 here, n=5 there')), 10_000, 'the bootstrap logs the refusal')
    expect(await incompatibleCount(boot)).toBeGreaterThanOrEqual(1)

    // Another --min-durable is refused the same way, through the other member.
    const badDurable = await group.start('bad-md', ['--join', p1.tcp, '--min-durable', '2'])
    expect((await exitOf(badDurable, 60_000)).code).toBe(1)
    expect(badDurable.output.some(line => /join refused/.test(line) && line.includes('minDurable=2 here, minDurable=1 there')), badDurable.output.join('\n')).toBe(true)
    await waitUntil(async () => p1.output.some(line => line.includes(`refusing member ${badDurable.id}`) && line.includes('minDurable=1 here, minDurable=2 there')), 10_000, 'p1 logs the refusal')
    expect(await incompatibleCount(p1)).toBeGreaterThanOrEqual(1)

    // A peer with the mesh's settings still joins through p1 and is gossiped to the bootstrap; by then the
    // refused peers have exited, so nothing more can be learned of them: they never appeared in any member's
    // list, and they never listed a member of the mesh.
    const good = await group.start('good', ['--join', p1.tcp])
    await waitUntil(async () => {
      for (const p of [...mesh, good]) if ((await members(p)).filter(m => m.state === 'alive').length !== 3) return false
      return true
    }, 30_000, 'a compatible peer joins')
    await waitUntil(async () => boot.output.some(line => line.includes(`member ${good.id} `)), 10_000, 'the bootstrap logs the compatible join')
    for (const p of [...mesh, good]) {
      const ids = (await members(p)).map(m => m.id)
      expect(ids).not.toContain(bad.id)
      expect(ids).not.toContain(badDurable.id)
      expect(changesOf(p, bad.id)).toEqual([])
      expect(changesOf(p, badDurable.id)).toEqual([])
    }
    for (const refused of [bad, badDurable]) {
      for (const p of [...mesh, good]) expect(changesOf(refused, p.id), refused.output.join('\n')).toEqual([])
    }
  }, 240_000)
})
