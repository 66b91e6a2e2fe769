/**
 * The first page: this tab becomes a mesh peer (WebSockets to the peer that served the page, WebRTC to the
 * others, relayed signalling), joins through the serving peer, and lists the members live. The full
 * dashboard (ring, keys, timeline) builds on it in a later issue.
 *
 * The bootstrap address comes from the serving peer's /api/info; a page served elsewhere (npm run dev) takes
 * it from `?bootstrap=<multiaddr>`. `?join=false` connects to the bootstrap (and so gets a relay reservation
 * and a WebRTC address) without joining the membership: for connection tests and debugging.
 */
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { claimTabIdentity } from '../src/adapters/browser-identity.js'
import { IndexedDbWal } from '../src/adapters/wal-indexeddb.js'
import { browserSwimConfig } from '../src/core/membership/config.js'
import type { MemberView } from '../src/core/membership/swim.js'
import { DEFAULT_VNODES } from '../src/core/ring/ring.js'
import { createPeer, type Peer } from '../src/peer.js'

const $ = (id: string): HTMLElement => document.getElementById(id)!

const log = {
  debug: () => {},
  info: (m: string, ...a: unknown[]) => { console.info('[meshkv]', m, ...a) },
  warn: (m: string, ...a: unknown[]) => { console.warn('[meshkv]', m, ...a) },
  error: (m: string, ...a: unknown[]) => { console.error('[meshkv]', m, ...a) }
}

async function bootstrapAddrs (): Promise<string[]> {
  const fromQuery = new URLSearchParams(location.search).getAll('bootstrap')
  if (fromQuery.length > 0) return fromQuery
  const res = await fetch('/api/info', { signal: AbortSignal.timeout(10_000) })
  if (!res.ok) throw new Error(`GET /api/info: ${res.status}; open this page from a meshkv peer, or pass ?bootstrap=<multiaddr>`)
  const info = await res.json() as { browserBootstrap: string[] }
  return info.browserBootstrap
}

function cell (text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = text // member data comes from the network: text, never HTML
  if (className !== '') td.className = className
  return td
}

function render (peer: Peer): void {
  const rows = peer.members().map((m: MemberView) => {
    const tr = document.createElement('tr')
    if (m.id === peer.id) tr.className = 'me'
    tr.dataset.id = m.id
    tr.dataset.state = m.state
    tr.append(
      cell(`${m.id}${m.id === peer.id ? ' (this tab)' : ''}`, 'id'),
      cell(String(m.meta.kind ?? '?')),
      cell(m.state, m.state),
      cell(String(m.incarnation)),
      cell(new Date(m.sinceMs).toLocaleTimeString())
    )
    return tr
  })
  $('members').replaceChildren(...rows)
}

async function main (): Promise<void> {
  const identity = await claimTabIdentity()
  const peer = await createPeer({
    kind: 'browser',
    privateKey: identity.privateKey,
    listen: ['/p2p-circuit', '/webrtc'],
    swim: { ...browserSwimConfig(), metaBytesMax: 2048 },
    incarnation: identity.incarnation,
    vnodes: DEFAULT_VNODES,
    clock: { nowMs: () => Date.now() },
    rng: { next: Math.random },
    log,
    // A full replica: its share of the ring persists in this origin's IndexedDB, one database per identity.
    wal: new IndexedDbWal(`meshkv-wal-${peerIdFromPrivateKey(identity.privateKey).toString()}`)
  })
  // Closing the tab: announce the leave and hand off what can be sent before the page is gone; the other
  // replicas' anti-entropy restores the rest on the key's next owner.
  addEventListener('pagehide', () => { void peer.leave() })
  // For tests and the curious (devtools): the peer, and multiaddr() to build addresses to dial.
  ;(window as unknown as { meshkv: unknown }).meshkv = { peer, slot: identity.slot, multiaddr }
  $('self').textContent = `this tab: ${peer.id} (slot ${identity.slot}, incarnation ${identity.incarnation}, ${peer.engine.size} keys from IndexedDB)`
  peer.events.on('change', () => { render(peer) })
  peer.on('warning', w => { log.warn(w.message) })
  render(peer)
  const addrs = (await bootstrapAddrs()).map(a => multiaddr(a))
  if (new URLSearchParams(location.search).get('join') === 'false') {
    await peer.libp2p.dial(addrs, { signal: AbortSignal.timeout(30_000) })
    $('self').textContent += ' — connected, not joined (?join=false)'
    return
  }
  await peer.join(addrs)
  render(peer)
}

main().catch((error: unknown) => {
  $('error').textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  console.error(error)
})
