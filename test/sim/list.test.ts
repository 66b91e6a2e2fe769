// Key listing across a simulated mesh (the replication machines hosted by the fault simulator, every
// message through the wire codec): pages merged from every member are exactly the live keys under a prefix,
// whatever the page size; a replica that missed a delete does not bring the key back into a listing; a
// member that does not answer is named, and the listing stays complete while another replica answers.
import { describe, expect, it } from 'vitest'
import { ConfigError, InvalidCursorError } from '../../src/core/errors.js'
import type { ListOptions, ListResult } from '../../src/core/kv/listing.js'
import { isDeleted } from '../../src/core/version/dvv.js'
import { KvSim, type SimNode } from './kv-cluster.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `peer-${i}`)

/** Every page of a listing through `node`, following cursors; checks each page's bounds on the way. */
async function listAll (node: SimNode, options: ListOptions): Promise<{ keys: string[]; pages: ListResult[] }> {
  const keys: string[] = []
  const pages: ListResult[] = []
  let cursor: string | null = null
  for (let i = 0; i < 10_000; i++) {
    const page = await node.kv.list({ ...options, cursor })
    expect(page.keys.length).toBeLessThanOrEqual(options.limit ?? 100)
    pages.push(page)
    keys.push(...page.keys)
    cursor = page.cursor
    if (cursor === null) return { keys, pages }
  }
  throw new Error('the listing did not end')
}

/** The live keys under `prefix` that `node` itself holds. */
function heldLive (node: SimNode, prefix: string): string[] {
  const out: string[] = []
  for (const [key, state] of node.engine.entries()) if (key.startsWith(prefix) && !isDeleted(state)) out.push(key)
  return out.sort()
}

describe('kv: key listing (simulated network, wire codec)', () => {
  it('lists exactly the live keys under a prefix, page by page, through any member and any page size', async () => {
    const sim = await KvSim.create(ids(5))
    const nodes = [...sim.nodes.values()]
    const live = new Set<string>()
    for (let i = 0; i < 150; i++) {
      const key = `a/${String(i).padStart(3, '0')}`
      await nodes[i % 5]!.kv.put(key, enc(`v${i}`))
      live.add(key)
      await nodes[(i + 2) % 5]!.kv.put(`b/${i}`, enc('other'))
    }
    for (let i = 0; i < 150; i += 4) {
      const key = `a/${String(i).padStart(3, '0')}`
      const got = await nodes[0]!.kv.get(key)
      await nodes[1]!.kv.delete(key, { context: got.context })
      live.delete(key)
    }
    await sim.settle()
    const want = [...live].sort()
    for (const [via, limit] of [[0, 7], [3, 1], [4, 1000]] as const) {
      const { keys, pages } = await listAll(nodes[via]!, { prefix: 'a/', limit })
      expect(keys, `through ${nodes[via]!.id}, limit ${limit}`).toEqual(want)
      for (const p of pages) expect(p).toMatchObject({ membersAsked: 5, membersFailed: [] })
      if (limit === 7) expect(pages.length).toBe(Math.ceil(want.length / 7))
    }
    // The empty prefix lists both prefixes; a prefix nobody uses lists nothing, in one page.
    expect((await listAll(nodes[2]!, { limit: 50 })).keys.length).toBe(want.length + 150)
    expect(await nodes[2]!.kv.list({ prefix: 'c/' })).toEqual({ keys: [], cursor: null, membersAsked: 5, membersFailed: [] })
  })

  it('a replica that missed a delete does not bring the key back; one that missed a put does not hide it', async () => {
    const sim = await KvSim.create(ids(4))
    const via = sim.node('peer-0')
    await via.kv.put('k/deleted', enc('x'))
    await via.kv.put('k/kept', enc('x'))
    await sim.settle()
    // One replica of each key is cut off while the delete and a new put happen, then comes back with its old
    // state (no anti-entropy ran): the tombstone on the others wins; the new key on the others is listed.
    const lagging = sim.primaries('k/deleted').find(id => id !== 'peer-0')!
    sim.setUp(lagging, false)
    const got = await via.kv.get('k/deleted')
    await via.kv.delete('k/deleted', { context: got.context })
    await via.kv.put('k/new', enc('y'))
    await sim.settle()
    sim.setUp(lagging, true)
    expect(heldLive(sim.node(lagging), 'k/')).toContain('k/deleted')
    const page = await via.kv.list({ prefix: 'k/' })
    expect(page.keys).toEqual(['k/kept', 'k/new'])
    // Listed from the lagging replica itself, as the mesh sees it.
    expect((await sim.node(lagging).kv.list({ prefix: 'k/' })).keys).toEqual(['k/kept', 'k/new'])
  })

  it('names a member that does not answer, and stays complete while other replicas answer', async () => {
    const sim = await KvSim.create(ids(5))
    const nodes = [...sim.nodes.values()]
    const want: string[] = []
    for (let i = 0; i < 60; i++) {
      const key = `p/${String(i).padStart(2, '0')}`
      await nodes[i % 5]!.kv.put(key, enc('v'))
      want.push(key)
    }
    await sim.settle()
    // Silent, but still up in everyone's view (SWIM has not noticed yet): its requests time out.
    sim.faults.silent.add('peer-3')
    const { keys, pages } = await listAll(sim.node('peer-0'), { prefix: 'p/', limit: 25 })
    expect(keys).toEqual(want)
    for (const p of pages) expect(p.membersFailed).toEqual(['peer-3'])
  })

  it('local lists only what the peer itself holds', async () => {
    const sim = await KvSim.create(ids(5))
    const nodes = [...sim.nodes.values()]
    for (let i = 0; i < 80; i++) await nodes[i % 5]!.kv.put(`l/${i}`, enc('v'))
    await nodes[0]!.kv.delete('l/1', { context: (await nodes[0]!.kv.get('l/1')).context })
    await sim.settle()
    let union = new Set<string>()
    for (const node of nodes) {
      const { keys, pages } = await listAll(node, { prefix: 'l/', limit: 9, local: true })
      expect(keys).toEqual(heldLive(node, 'l/'))
      expect(keys.length).toBeLessThan(79) // N=3 of 5: nobody holds everything
      for (const p of pages) expect(p).toMatchObject({ membersAsked: 1, membersFailed: [] })
      union = new Set([...union, ...keys])
    }
    expect(union.size).toBe(79)
  })

  it('refuses bad bounds and cursors with typed errors', async () => {
    const sim = await KvSim.create(ids(3))
    const node = sim.node('peer-0')
    await expect(node.kv.list({ limit: 0 })).rejects.toBeInstanceOf(ConfigError)
    await expect(node.kv.list({ limit: 1001 })).rejects.toBeInstanceOf(ConfigError)
    await expect(node.kv.list({ prefix: 'x'.repeat(1025) })).rejects.toBeInstanceOf(ConfigError)
    await expect(node.kv.list({ cursor: '%%%' })).rejects.toBeInstanceOf(InvalidCursorError)
  })
})
