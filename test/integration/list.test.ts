/**
 * Key listing with real processes: four `node node/peer.js` peers (N=2, so each holds about half the keys),
 * 250 keys under one prefix and 100 under another written through different peers, 40 of the first
 * deleted. Listed page by page through HTTP with a small limit, the union is exactly the live keys under the
 * prefix; `local=1` lists what one peer holds (checked against the key's placement); bad input gets 400 with
 * a code; `node node/kv.js ls PREFIX` prints the same keys, following cursors or one page at a time; and with
 * a peer SIGKILLed the listing stays complete and names it while it is still counted up.
 */
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const group = peerGroup('meshkv-list-', ['--n', '2', '--probe-interval-ms', '300', '--probe-timeout-ms', '150', '--gossip-interval-ms', '60', '--push-pull-interval-ms', '2000'])
let peers: PeerProcess[] = []
const live = new Set<string>()

interface Page { keys: string[]; cursor: string | null; membersAsked: number; membersFailed: string[]; scope: string }

async function getJson (p: PeerProcess, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${p.http}${path}`, { signal: AbortSignal.timeout(30_000) })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

/** Every page of GET /kv?prefix= through `p`, following cursors. */
async function listAll (p: PeerProcess, prefix: string, limit: number, local = false): Promise<{ keys: string[]; pages: Page[] }> {
  const keys: string[] = []
  const pages: Page[] = []
  let cursor: string | null = null
  for (let i = 0; i < 1000; i++) {
    const query = new URLSearchParams({ prefix, limit: String(limit) })
    if (cursor !== null) query.set('cursor', cursor)
    if (local) query.set('local', '1')
    const { status, body } = await getJson(p, `/kv?${query}`)
    expect(status, JSON.stringify(body)).toBe(200)
    const page = body as unknown as Page
    expect(page.keys.length).toBeLessThanOrEqual(limit)
    pages.push(page)
    keys.push(...page.keys)
    cursor = page.cursor
    if (cursor === null) return { keys, pages }
  }
  throw new Error('the listing did not end')
}

/** Runs `node node/kv.js` and collects its output and exit code. */
function kvCli (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['node/kv.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

beforeAll(async () => {
  const a = await group.start('a', ['--bootstrap'])
  peers = [a, ...await Promise.all(['b', 'c', 'd'].map(async name => await group.start(name, ['--join', a.tcp])))]
  await waitUntil(async () => {
    for (const p of peers) if ((await members(p)).filter(m => m.state === 'alive').length !== 4) return false
    return true
  }, 60_000, 'four peers alive')
  const keys = [...Array.from({ length: 250 }, (_, i) => `alpha/${String(i).padStart(3, '0')}`), ...Array.from({ length: 100 }, (_, i) => `beta/${i}`)]
  // Eight writers at a time, each key through a different peer.
  for (let i = 0; i < keys.length; i += 8) {
    await Promise.all(keys.slice(i, i + 8).map(async (key, j) => {
      const res = await fetch(`${peers[(i + j) % 4]!.http}/kv/${encodeURIComponent(key)}`, { method: 'PUT', body: `value of ${key}`, signal: AbortSignal.timeout(30_000) })
      expect(res.status, key).toBe(204)
      live.add(key)
    }))
  }
  for (let i = 0; i < 250; i += 6) {
    const key = `alpha/${String(i).padStart(3, '0')}`
    // With the context of a read: a delete without one would stand beside the value as a sibling.
    const read = await fetch(`${peers[(i + 1) % 4]!.http}/kv/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(30_000) })
    await read.arrayBuffer()
    const context = read.headers.get('x-meshkv-context') ?? ''
    const res = await fetch(`${peers[i % 4]!.http}/kv/${encodeURIComponent(key)}`, { method: 'DELETE', headers: { 'x-meshkv-context': context }, signal: AbortSignal.timeout(30_000) })
    expect(res.status, key).toBe(204)
    live.delete(key)
  }
}, 240_000)
afterAll(async () => { await group.stopAll() })

const liveUnder = (prefix: string): string[] => [...live].filter(k => k.startsWith(prefix)).sort()

describe('key listing (real processes)', () => {
  it('pages through exactly the live keys under a prefix, merged from every peer', async () => {
    const alpha = liveUnder('alpha/')
    expect(alpha.length).toBe(250 - 42)
    const { keys, pages } = await listAll(peers[1]!, 'alpha/', 13)
    expect(keys).toEqual(alpha)
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(alpha.length / 13))
    for (const p of pages) expect(p).toMatchObject({ scope: 'mesh', membersAsked: 4, membersFailed: [] })
    // The other prefix, in one page of the default size (100), through another peer.
    const beta = await getJson(peers[3]!, '/kv?prefix=beta%2F')
    expect(beta.body.keys).toEqual(liveUnder('beta/'))
    expect(beta.body.cursor).toBe(null)
    // No prefix: everything.
    expect((await listAll(peers[2]!, '', 1000)).keys).toEqual([...live].sort())
  })

  it('local=1 lists the keys one peer holds, and the peers together hold them all', async () => {
    const alpha = liveUnder('alpha/')
    const union = new Set<string>()
    for (const p of peers) {
      const { keys, pages } = await listAll(p, 'alpha/', 50, true)
      for (const page of pages) expect(page).toMatchObject({ scope: 'local', membersAsked: 1, membersFailed: [] })
      expect(keys.length).toBeGreaterThan(0)
      expect(keys.length).toBeLessThan(alpha.length) // N=2 of 4
      for (const k of keys) expect(live.has(k), k).toBe(true)
      for (const k of keys) union.add(k)
      // A few of them: the key's placement shows this peer holding a live version.
      for (const k of keys.slice(0, 3)) {
        const { body } = await getJson(p, `/kv/${encodeURIComponent(k)}/placement`)
        const mine = (body.replicas as Array<{ id: string; version?: { siblings: Array<{ deleted: boolean }> } | null }>).find(r => r.id === p.id)
        expect(mine?.version?.siblings.some(s => !s.deleted), `${k} on ${p.id}`).toBe(true)
      }
    }
    expect([...union].sort()).toEqual(alpha)
  })

  it('refuses bad bounds, cursors and methods with 400 (or 405) and a code', async () => {
    const p = peers[0]!
    const bad = async (path: string, status: number, code?: string): Promise<void> => {
      const res = await fetch(`${p.http}${path}`, { method: path.startsWith('POST ') ? 'POST' : 'GET', signal: AbortSignal.timeout(10_000) })
      expect(res.status, path).toBe(status)
      const body = await res.json() as { code?: string; error: string }
      if (code !== undefined) expect(body.code, path).toBe(code)
    }
    await bad('/kv?limit=0', 400, 'ERR_CONFIG')
    await bad('/kv?limit=1001', 400, 'ERR_CONFIG')
    await bad('/kv?limit=ten', 400, 'ERR_CONFIG')
    await bad('/kv?local=maybe', 400, 'ERR_CONFIG')
    await bad(`/kv?prefix=${'x'.repeat(1025)}`, 400, 'ERR_CONFIG')
    await bad('/kv?cursor=%25%25', 400, 'ERR_INVALID_CURSOR')
    // A cursor from a listing of another prefix.
    const first = await getJson(p, '/kv?prefix=beta%2F&limit=1')
    await bad(`/kv?prefix=alpha%2F&cursor=${first.body.cursor as string}`, 400, 'ERR_INVALID_CURSOR')
    // A POST a form could not send reaches the route, which takes GET only; one without a content type is
    // refused before any route (the HTTP guard).
    const post = await fetch(`${p.http}/kv?prefix=a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(10_000) })
    expect(post.status).toBe(405)
    expect((await fetch(`${p.http}/kv?prefix=a`, { method: 'POST', signal: AbortSignal.timeout(10_000) })).status).toBe(415)
    // The key routes are unchanged: /kv/ is still a (bad, empty) key.
    expect((await fetch(`${p.http}/kv/`, { method: 'PUT', body: 'x', signal: AbortSignal.timeout(10_000) })).status).toBe(400)
    expect((await getJson(p, '/health')).status).toBe(200)
  })

  it('node node/kv.js ls PREFIX prints every key, following cursors; --one-page prints one page and its cursor', async () => {
    const alpha = liveUnder('alpha/')
    const all = await kvCli(['ls', 'alpha/', '--peer', peers[2]!.http, '--limit', '17'])
    expect(all.code, all.stderr).toBe(0)
    expect(all.stdout).toBe(alpha.map(k => k + '\n').join(''))
    // Past ten pages, progress on stderr.
    expect(all.stderr).toMatch(/listed 208 keys in \d+ pages/)
    const one = await kvCli(['ls', 'alpha/', '--peer', peers[0]!.http, '--limit', '5', '--one-page'])
    expect(one.code, one.stderr).toBe(0)
    expect(one.stdout.split('\n').filter(Boolean)).toEqual(alpha.slice(0, 5))
    const cursor = /^cursor: (\S+)$/m.exec(one.stderr)?.[1]
    expect(cursor).toBeDefined()
    const next = await kvCli(['ls', 'alpha/', '--peer', peers[0]!.http, '--limit', '5', '--one-page', '--cursor', cursor!])
    expect(next.stdout.split('\n').filter(Boolean)).toEqual(alpha.slice(5, 10))
    const local = await kvCli(['ls', 'beta/', '--peer', peers[1]!.http, '--local', '--json'])
    expect(local.code).toBe(0)
    const localKeys = local.stdout.split('\n').filter(Boolean).map(line => JSON.parse(line) as string)
    expect(localKeys.length).toBeGreaterThan(0)
    expect(localKeys.length).toBeLessThan(100)
    expect(localKeys.every(k => k.startsWith('beta/'))).toBe(true)
    expect((await kvCli(['ls', 'alpha/', '--peer', peers[0]!.http, '--limit', '0'])).code).toBe(2)
    const refused = await kvCli(['ls', 'alpha/', '--peer', peers[0]!.http, '--cursor', '%%'])
    expect(refused.code).toBe(4)
    expect(refused.stderr).toMatch(/^400: invalid listing cursor/)
  })

  it('with a peer SIGKILLed, still lists every key (N=2: another replica holds it) and names the peer until it is known dead', async () => {
    const victim = peers[3]!
    victim.proc.kill('SIGKILL')
    await victim.exited
    // At once: the others still count it up (SWIM has not confirmed its death), so it is asked and fails;
    // on a slow machine it may already be out of the ring. Either way the page is complete and says so.
    const { body } = await getJson(peers[0]!, '/kv?prefix=alpha%2F&limit=1000')
    expect(body.keys).toEqual(liveUnder('alpha/'))
    if (body.membersAsked === 4) expect(body.membersFailed).toEqual([victim.id])
    else expect(body).toMatchObject({ membersAsked: 3, membersFailed: [] })
  })
})
