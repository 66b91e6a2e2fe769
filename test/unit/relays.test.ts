// The relay choice of src/core/ring/relays.ts: the serving peer first, then distinct locations, then a
// rendezvous hash that spreads tabs evenly over relays and moves only the tabs of a relay that leaves.
// And heldRelays (src/services/relays.ts), which reads a peer's reservations from its own addresses.
import fc from 'fast-check'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { type RelayCandidate, rankRelays } from '../../src/core/ring/relays.js'
import { heldRelays } from '../../src/services/relays.js'

const relay = (id: string, location: string): RelayCandidate => ({ id, location })

describe('rankRelays', () => {
  it('puts the preferred relay first, then a new location before a repeated one', () => {
    const candidates = [relay('a', 'host1'), relay('b', 'host1'), relay('c', 'host2'), relay('d', 'host3')]
    const ranked = rankRelays('tab', candidates, [], new Set(['b'])).map(r => r.id)
    expect(ranked[0]).toBe('b')
    // After b (host1), the next two are at host2 and host3, and a (host1 again) comes last.
    expect(new Set(ranked.slice(1, 3))).toEqual(new Set(['c', 'd']))
    expect(ranked[3]).toBe('a')
  })

  it('counts the locations of relays already held, and never ranks a held relay or the tab itself', () => {
    const candidates = [relay('a', 'host1'), relay('b', 'host2'), relay('tab', 'x')]
    const ranked = rankRelays('tab', candidates, [relay('h', 'host1')]).map(r => r.id)
    expect(ranked).toEqual(['b', 'a'])
    expect(rankRelays('tab', [relay('h', 'host1')], [relay('h', 'host1')])).toEqual([])
  })

  it('keeps the distinct-location rule and the order of members does not matter (property)', () => {
    const arb = fc.record({
      tab: fc.string({ minLength: 1, maxLength: 8 }),
      relays: fc.uniqueArray(fc.record({ id: fc.string({ minLength: 1, maxLength: 6 }), location: fc.constantFrom('', 'l1', 'l2', 'l3') }), { selector: r => r.id, minLength: 0, maxLength: 10 })
    })
    fc.assert(fc.property(arb, fc.infiniteStream(fc.double()), ({ tab, relays }, noise) => {
      const ranked = rankRelays(tab, relays, [])
      const shuffled = [...relays].sort(() => noise.next().value - 0.5)
      expect(rankRelays(tab, shuffled, []).map(r => r.id)).toEqual(ranked.map(r => r.id))
      expect(ranked.length).toBe(relays.filter(r => r.id !== tab).length)
      // Every distinct known location appears before any location repeats.
      const locations = new Set(ranked.map(r => r.location).filter(l => l !== ''))
      const seen = new Set<string>()
      for (const r of ranked) {
        if (r.location === '') continue
        if (seen.has(r.location)) expect(seen.size).toBe(locations.size)
        seen.add(r.location)
      }
    }), { seed: 7, numRuns: 300 })
  })

  it('spreads tabs over relays evenly and moves only the tabs of a relay that leaves', () => {
    const relays = Array.from({ length: 5 }, (_, i) => relay(`relay-${i}`, `host-${i}`))
    const tabs = Array.from({ length: 1000 }, (_, i) => `tab-${i}`)
    const first = new Map(tabs.map(t => [t, rankRelays(t, relays, []).slice(0, 2).map(r => r.id)]))
    const load = new Map<string, number>()
    for (const pair of first.values()) for (const id of pair) load.set(id, (load.get(id) ?? 0) + 1)
    // 2,000 reservations over 5 relays: 400 each on average.
    for (const n of load.values()) expect(n).toBeGreaterThan(300)
    const without = relays.filter(r => r.id !== 'relay-0')
    for (const t of tabs) {
      const before = first.get(t)!
      const after = rankRelays(t, without, []).slice(0, 2).map(r => r.id)
      if (!before.includes('relay-0')) expect(after).toEqual(before)
    }
  })
})

describe('heldRelays', () => {
  it('reads the relays of /p2p-circuit addresses and ignores the rest', () => {
    const r1 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
    const me = '12D3KooWNvSZnPi3RrhrTwEY4LuuBeB6K6facKUnJ5R3sTMmyLdc'
    const held = heldRelays([
      multiaddr(`/ip4/127.0.0.1/tcp/4002/ws/p2p/${r1}/p2p-circuit/p2p/${me}`),
      multiaddr(`/ip4/127.0.0.1/tcp/4002/ws/p2p/${r1}/p2p-circuit/webrtc/p2p/${me}`),
      multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${me}`)
    ])
    expect([...held]).toEqual([r1])
  })
})
