/**
 * --memory-max-mb on a real peer: filled past its budget it answers 507 ERR_STORE_FULL, keeps serving reads
 * and deletes, and restarts cleanly from its log (SIGKILL, then the same data directory).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { peerGroup } from '../helpers/peers.js'

const group = peerGroup('meshkv-memory-', ['--n', '1', '--r', '1', '--w', '1', '--memory-max-mb', '1'])
afterAll(async () => { await group.stopAll() })

const value = new Uint8Array(16 * 1024).fill(7)

describe('memory budget', () => {
  it('answers 507 past --memory-max-mb, keeps serving reads, and restarts cleanly', async () => {
    let peer = await group.start('full', ['--bootstrap'])
    expect(peer.output.join('\n')).toMatch(/memory: store budget 1 MB/)
    let stored = 0
    let refusal: { status: number; body: { code?: string; error?: string } } | null = null
    // 1 MiB holds about 60 values of 16 KiB: stop at the first refusal, at most 200 tries.
    for (let i = 0; i < 200 && refusal === null; i++) {
      const res = await fetch(`${peer.http}/kv/k${i}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(20_000) })
      if (res.status === 204) { stored++; await res.arrayBuffer() } else refusal = { status: res.status, body: await res.json() as { code?: string; error?: string } }
    }
    expect(stored).toBeGreaterThan(30)
    expect(refusal).toMatchObject({ status: 507, body: { code: 'ERR_STORE_FULL', error: expect.stringMatching(/the store is full/) } })
    const stats = await (await fetch(`${peer.http}/stats`)).json() as { storage: { memoryBytes: number; memoryBytesMax: number; storeFull: number } }
    expect(stats.storage).toMatchObject({ memoryBytesMax: 1024 * 1024, storeFull: 1 })
    expect(stats.storage.memoryBytes).toBeLessThanOrEqual(1024 * 1024)
    // Reads go on; a delete makes room.
    for (const i of [0, stored - 1]) expect((await fetch(`${peer.http}/kv/k${i}`)).status).toBe(200)
    const read = await fetch(`${peer.http}/kv/k0`)
    await read.arrayBuffer()
    expect((await fetch(`${peer.http}/kv/k0`, { method: 'DELETE', headers: { 'x-meshkv-context': read.headers.get('x-meshkv-context')! } })).status).toBe(204)
    expect((await fetch(`${peer.http}/kv/room`, { method: 'PUT', body: value })).status).toBe(204)

    peer.proc.kill('SIGKILL')
    await peer.exited
    peer = await group.start('full', ['--bootstrap'])
    expect(peer.output.join('\n')).toMatch(new RegExp(`data: .*\\(${stored + 1} keys recovered`))
    for (const key of ['k1', `k${stored - 1}`, 'room']) expect((await fetch(`${peer.http}/kv/${key}`)).status).toBe(200)
    expect((await fetch(`${peer.http}/kv/k0`)).status).toBe(404)
    const again = await fetch(`${peer.http}/kv/more`, { method: 'PUT', body: value })
    expect(again.status).toBe(507)
  }, 120_000)

  it('refuses a budget outside [1, heap limit] with a usage error', async () => {
    await expect(group.start('bad', ['--bootstrap', '--memory-max-mb', '0'])).rejects.toThrow(/--memory-max-mb: must be at least 1, got "0"/)
  })
})
