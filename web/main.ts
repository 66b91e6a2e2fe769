/**
 * The dashboard. Opening it makes this tab a mesh peer (WebSockets to the peer that served the page, WebRTC
 * to the others, relayed signalling) — a full replica on IndexedDB, or a client-only member — and shows the
 * mesh live: the ring and its members (ring-view.ts), key lookup and writes (key-view.ts), the membership
 * timeline, activity charts (activity-view.ts), heartbeat services and the change feed (services-view.ts).
 * Everything from users or the network is shown as text.
 *
 * The bootstrap address comes from the serving peer's /api/info; a page served elsewhere (npm run dev) takes
 * it from `?bootstrap=<multiaddr>`. `?join=false` connects to the bootstrap (and so gets a relay reservation
 * and a WebRTC address) without joining the membership: for connection tests and debugging.
 *
 * Placement: a tab publishes its browser profile as its location (an id kept in this origin's
 * localStorage, so every tab of one browser shares it) and is `volatile`: it owns DEFAULT_VOLATILE_VNODES
 * tokens, every key it holds also lives on a durable Node peer, and no write is acknowledged by tabs alone.
 * `?durable=1` makes it `durable` (a full share of tokens) only if the browser grants persistent storage
 * (navigator.storage.persist()), so that IndexedDB is not evicted under storage pressure.
 */
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { claimTabIdentity } from '../src/adapters/browser-identity.js'
import { IndexedDbWal } from '../src/adapters/wal-indexeddb.js'
import { browserSwimConfig } from '../src/core/membership/config.js'
import type { MemberView } from '../src/core/membership/swim.js'
import { DEFAULT_VNODES, DEFAULT_VOLATILE_VNODES } from '../src/core/ring/ring.js'
import { createPeer } from '../src/peer.js'
import { ACTIVITY_PERIOD_MS, ActivityView } from './activity-view.js'
import { $, el, shortId } from './dom.js'
import { KeyView } from './key-view.js'
import { RingView } from './ring-view.js'
import { ServicesView } from './services-view.js'

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

const MODE_KEY = 'meshkv-mode'
const PROFILE_KEY = 'meshkv-profile'

/** This browser profile's id: created once, shared by every tab of the origin (localStorage). */
function browserProfile (): string {
  let id = localStorage.getItem(PROFILE_KEY)
  if (id === null || !/^[0-9a-f-]{36}$/.test(id)) {
    id = crypto.randomUUID()
    localStorage.setItem(PROFILE_KEY, id)
  }
  return `browser/${id}`
}

/** Durable only when asked for (?durable=1) and the browser promises not to evict this origin's storage. */
async function durableStorage (): Promise<boolean> {
  if (new URLSearchParams(location.search).get('durable') !== '1') return false
  try {
    return await navigator.storage.persist()
  } catch {
    return false
  }
}
const TIMELINE_MAX = 300

/** Full replica (holds its share of keys in IndexedDB) or client-only member (no ring tokens, no data). */
function mode (): 'replica' | 'client' {
  const fromQuery = new URLSearchParams(location.search).get('mode')
  if (fromQuery === 'client' || fromQuery === 'replica') return fromQuery
  return localStorage.getItem(MODE_KEY) === 'client' ? 'client' : 'replica'
}

/** One line of the membership timeline for a state change, or null if it is not one worth a line. */
function timelineEntry (member: MemberView, previous: string | null): { kind: string; text: string } | null {
  const who = `${shortId(member.id)} (${String(member.meta.kind ?? '?')})`
  if (member.state === 'alive' && (previous === null || previous === 'dead' || previous === 'left')) return { kind: 'join', text: `${who} joined${previous === null ? '' : ' again'}, incarnation ${member.incarnation}` }
  if (member.state === 'alive' && previous === 'suspect') return { kind: 'refute', text: `${who} refuted its suspicion (incarnation ${member.incarnation})` }
  if (member.state === 'suspect') return { kind: 'suspect', text: `${who} is suspected` }
  if (member.state === 'dead') return { kind: 'dead', text: `${who} was declared dead` }
  if (member.state === 'left') return { kind: 'left', text: `${who} left` }
  return null
}

async function main (): Promise<void> {
  const identity = await claimTabIdentity()
  const replica = mode() === 'replica'
  const durable = replica && await durableStorage()
  const peer = await createPeer({
    kind: 'browser',
    privateKey: identity.privateKey,
    listen: ['/p2p-circuit', '/webrtc'],
    swim: { ...browserSwimConfig(), metaBytesMax: 2048 },
    incarnation: identity.incarnation,
    // A client-only member owns no ring tokens, so it holds no keys; it still coordinates requests.
    vnodes: replica ? (durable ? DEFAULT_VNODES : DEFAULT_VOLATILE_VNODES) : 0,
    location: browserProfile(),
    durable,
    clock: { nowMs: () => Date.now() },
    rng: { next: Math.random },
    log,
    // A full replica: its share of the ring persists in this origin's IndexedDB, one database per identity.
    ...(replica ? { wal: new IndexedDbWal(`meshkv-wal-${peerIdFromPrivateKey(identity.privateKey).toString()}`) } : {})
  })
  // Closing the tab: announce the leave (others take it out of preference lists at once) and hand off what
  // can be sent before the page is gone. An optimisation only: a durable replica holds every acknowledged
  // write, and the other replicas' anti-entropy restores the rest on the key's next owner.
  addEventListener('pagehide', () => { void peer.leave() })
  // For tests and the curious (devtools): the peer, and multiaddr() to build addresses to dial.
  ;(window as unknown as { meshkv: unknown }).meshkv = { peer, slot: identity.slot, multiaddr }
  $('self').textContent = `this tab: ${peer.id} (slot ${identity.slot}, incarnation ${identity.incarnation}, ${durable ? 'durable' : 'volatile'}, ${peer.engine.size} keys from IndexedDB)`
  const modeBox = $('mode-replica') as HTMLInputElement
  modeBox.checked = replica
  modeBox.addEventListener('change', () => {
    localStorage.setItem(MODE_KEY, modeBox.checked ? 'replica' : 'client')
    location.reload()
  })

  const ringView = new RingView(peer)
  new KeyView(peer, position => { ringView.markKey(position) }) // it wires itself to the page
  const services = new ServicesView(peer)
  const activity = new ActivityView(peer, ringView.figures, () => { ringView.render(); void services.render() })
  let queued = false
  const rerender = (): void => {
    if (queued) return
    queued = true
    requestAnimationFrame(() => { queued = false; ringView.render() })
  }
  peer.on('member', ({ member, previous }) => {
    rerender()
    const entry = timelineEntry(member, previous)
    if (entry === null) return
    const list = $('timeline')
    list.prepend(el('li', { 'data-kind': entry.kind, 'data-id': member.id }, el('time', {}, new Date().toLocaleTimeString()), ' ', entry.text))
    while (list.childElementCount > TIMELINE_MAX) list.lastElementChild!.remove()
  })
  peer.on('warning', w => { log.warn(w.message) })
  ringView.render()
  const tick = (): void => { void activity.sample().finally(() => { setTimeout(tick, ACTIVITY_PERIOD_MS) }) }
  setTimeout(tick, ACTIVITY_PERIOD_MS)

  const addrs = (await bootstrapAddrs()).map(a => multiaddr(a))
  if (new URLSearchParams(location.search).get('join') === 'false') {
    await peer.libp2p.dial(addrs, { signal: AbortSignal.timeout(30_000) })
    $('self').textContent += ' — connected, not joined (?join=false)'
    return
  }
  await peer.join(addrs)
  ringView.render()
}

main().catch((error: unknown) => {
  $('error').textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  console.error(error)
})
