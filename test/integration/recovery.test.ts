/**
 * A real peer with a large log restarts (issue 10: a peer that had taken about 150,000 writes since its
 * last snapshot crash-looped on "Maximum call stack size exceeded"). One `node node/peer.js` (N=1, sync
 * durability) takes 300,000 writes over HTTP, all into one log segment, is SIGKILLed while more writes are in
 * flight, restarts from its data directory, and serves every acknowledged write over HTTP.
 */
import * as http from 'node:http'
import { afterAll, expect, it } from 'vitest'
import { peerGroup } from '../helpers/peers.js'

const KEYS = 300_000
const IN_FLIGHT = 64
const group = peerGroup('meshkv-recovery-', ['--n', '1', '--r', '1', '--w', '1'])
afterAll(group.stopAll)

// Short values keep all 300,000 records in the first 64 MiB segment, below the compaction threshold, so the
// restart replays them from the log (the case that failed), not from a snapshot.
const valueOf = (key: string): string => `v-${key}`

/** One HTTP request on a keep-alive agent; resolves with the status and body. */
function request (agent: http.Agent, base: URL, method: 'GET' | 'PUT', key: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, path: `/kv/${key}`, method, agent, timeout: 30_000 }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`${method} /kv/${key} timed out`)) })
    req.on('error', reject)
    req.end(method === 'PUT' ? valueOf(key) : undefined)
  })
}

/** Runs `op` over keys [from, to) with IN_FLIGHT outstanding, until done or `stop()` says so. */
async function pool (from: number, to: number, op: (i: number) => Promise<void>, stop: () => boolean = () => false): Promise<void> {
  let next = from
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < to && !stop()) await op(next++)
  }))
}

it(`a peer holding ${KEYS} keys in one log segment is SIGKILLed, restarts and serves every one`, async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT })
  try {
    const first = await group.start('peer', ['--bootstrap'])
    const base = new URL(first.http)
    const acked: string[] = []
    let progress = 0
    await pool(0, KEYS, async i => {
      const { status, body } = await request(agent, base, 'PUT', `k${i}`)
      if (status !== 204) throw new Error(`PUT k${i}: ${status} ${body}`)
      acked.push(`k${i}`)
      if (++progress % 50_000 === 0) console.log(`recovery test: ${progress} keys written`)
    })
    // More writes in flight when the process dies: those acknowledged must survive too.
    let killed = false
    let twoThousandMore!: () => void
    const reached = new Promise<void>(resolve => { twoThousandMore = resolve })
    const tail = pool(KEYS, KEYS + 100_000, async i => {
      try {
        const { status } = await request(agent, base, 'PUT', `k${i}`)
        if (status === 204 && !killed) acked.push(`k${i}`)
        if (acked.length >= KEYS + 2_000) twoThousandMore()
      } catch { /* the process died under this request */ }
    }, () => killed)
    // Kill once 2,000 more are acknowledged (if the tail ends first, the peer stopped taking writes: fail).
    await Promise.race([reached, tail.then(() => { throw new Error(`the peer acknowledged only ${acked.length - KEYS} more writes`) })])
    first.proc.kill('SIGKILL')
    killed = true
    expect((await first.exited).signal).toBe('SIGKILL')
    await tail

    const start = performance.now()
    const second = await group.start('peer', ['--bootstrap'], 120_000)
    const line = second.output.find(l => l.startsWith('data: '))!
    console.log(`recovery test: restarted in ${Math.round(performance.now() - start)} ms: ${line}`)
    const [, recovered, replayed] = /\((\d+) keys recovered, (\d+) log records replayed/.exec(line)!
    expect(Number(recovered)).toBeGreaterThanOrEqual(acked.length)
    expect(Number(replayed)).toBeGreaterThanOrEqual(acked.length) // from the log: no snapshot was written
    const base2 = new URL(second.http)
    const missing: string[] = []
    const reader = new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT })
    await pool(0, acked.length, async i => {
      const key = acked[i]!
      const { status, body } = await request(reader, base2, 'GET', key)
      if (status !== 200 || body !== valueOf(key)) missing.push(`${key} (${status})`)
    }).finally(() => { reader.destroy() })
    expect(missing.slice(0, 10), `${missing.length} of ${acked.length} acknowledged keys not served`).toEqual([])
    console.log(`recovery test: all ${acked.length} acknowledged keys served after the restart`)
  } finally {
    agent.destroy()
  }
}, 600_000)
