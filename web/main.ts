/**
 * The dashboard. Opening it makes this tab a mesh peer (WebSockets to the peer that served the page, WebRTC
 * to the others, relayed signalling) — a full replica on IndexedDB, or a client-only member — and shows the
 * mesh live: the ring and its members (ring-view.ts), key lookup and writes (key-view.ts), the membership
 * timeline, activity charts (activity-view.ts), heartbeat services and the change feed (services-view.ts).
 * Everything from users or the network is shown as text.
 *
 * It joins through the peer that served it (its /api/info) and holds relay reservations on two Node peers
 * (src/services/relays.ts), taking another when one goes away. When the serving peer is down, the service
 * worker (public/sw.js) still loads the page, which then joins through the relays it saw last (connect.ts).
 * A page served elsewhere (npm run dev) takes `?bootstrap=<multiaddr>`. `?join=false` connects to the
 * bootstrap (and so gets a relay reservation and a WebRTC address) without joining the membership: for
 * connection tests and debugging. A private mesh's key comes from `#key=` or the page's form, and lives in
 * sessionStorage only (connect.ts).
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
import { RelayKeeper, type RelayStatus } from '../src/services/relays.js'
import { IndexedDbWal } from '../src/adapters/wal-indexeddb.js'
import { type TabLinkTransport, tabLink, tabLinkAddress } from '../src/adapters/tab-link.js'
import { browserSwimConfig } from '../src/core/membership/config.js'
import type { MemberView } from '../src/core/membership/swim.js'
import { DEFAULT_VNODES, DEFAULT_VOLATILE_VNODES } from '../src/core/ring/ring.js'
import { createMeshPeer } from '../src/peer.js'
import { ACTIVITY_PERIOD_MS, ActivityView } from './activity-view.js'
import { ChaosView } from './chaos-view.js'
import { askMeshKey, forgetMeshKey, keepPageOffline, meshEntry, meshKeyFromPage, rememberRelays } from './connect.js'
import { $, el, shortId } from './dom.js'
import { KeyView } from './key-view.js'
import { RingView } from './ring-view.js'
import { SERVICES_PERIOD_MS, ServicesView } from './services-view.js'

const log = {
  debug: () => {},
  info: (m: string, ...a: unknown[]) => { console.info('[meshkv]', m, ...a) },
  warn: (m: string, ...a: unknown[]) => { console.warn('[meshkv]', m, ...a) },
  error: (m: string, ...a: unknown[]) => { console.error('[meshkv]', m, ...a) }
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
  return id
}

/** Tabs of this browser reach each other through it (src/adapters/tab-link.ts) unless `?tab-link=off`,
 * which leaves them WebRTC, as tabs of different browsers (tests of WebRTC itself). */
function tabLinkWanted (): boolean {
  return new URLSearchParams(location.search).get('tab-link') !== 'off'
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

/** libp2p's liveness ping of each connection: 60 s in a tab instead of 10 s (SWIM probes members anyway, and
 * each ping opens and closes a WebRTC data channel). */
const TAB_PING_INTERVAL_MS = 60_000

/** Join rounds before the page stops and offers a retry (0.5 s doubling to 30 s apart: about 2.5 minutes). */
const JOIN_ATTEMPTS_MAX = 10

/** What a failed mesh-key handshake means for the person at the page. */
function refusalText (reason: string): string {
  if (reason === 'peer does not know the mesh key') return 'Refused: the mesh key is wrong (this mesh\'s peers prove a different key).'
  if (reason === 'peer requires a mesh key' || reason === 'peer is in a private mesh') return 'Refused: this mesh is private and needs its key.'
  if (reason === 'peer is not in a private mesh' || reason === 'peer has no mesh key') return 'Refused: this mesh is open and takes no key; the key given is wrong for it.'
  return `Refused: ${reason}`
}

function relayText (status: RelayStatus): string {
  const parts = status.relays.map(r => `${shortId(r.id)} ${r.state}${r.state === 'waiting' ? ` (try ${r.attempts + 1} in ${Math.ceil((r.retryInMs ?? 0) / 1000)} s: ${r.error ?? ''})` : ''}${r.state === 'failed' ? ` (${r.error ?? ''})` : ''}`)
  return `relays ${status.held.length}/${status.wanted}: ${parts.join(', ') || 'none known yet'}${status.exhausted ? ' — out of reservation attempts: reload the page' : ''}`
}

async function main (): Promise<void> {
  keepPageOffline(message => { log.warn(message) })
  const entry = await meshEntry()
  let meshKey = meshKeyFromPage()
  if (entry.private && meshKey === null) meshKey = await askMeshKey('This mesh is private: enter its key to join. It stays in this tab only (or open the page with #key=<key>).')
  const identity = await claimTabIdentity()
  const replica = mode() === 'replica'
  const durable = replica && await durableStorage()
  const profile = browserProfile()
  const linked = tabLinkWanted()
  let link: TabLinkTransport | undefined
  const peer = await createMeshPeer({
    kind: 'browser',
    privateKey: identity.privateKey,
    // Relay reservations (/p2p-circuit addresses) are the RelayKeeper's: two relays, failing over.
    // Tabs of this browser: the tab link, through the browser itself.
    listen: ['/webrtc', ...(linked ? [tabLinkAddress(profile)] : [])],
    ...(linked ? { extraTransports: [components => (link = tabLink({ profile })(components))] } : {}),
    connectionPingIntervalMs: TAB_PING_INTERVAL_MS,
    swim: { ...browserSwimConfig(), metaBytesMax: 2048 },
    incarnation: identity.incarnation,
    // The mesh's N, minDurable and durableAcks (its members refuse a tab with others); R and W within that N.
    ...(entry.settings === null ? {} : { kv: { ...entry.settings, r: Math.min(2, entry.settings.n), w: Math.min(2, entry.settings.n) } }),
    // A client-only member owns no ring tokens, so it holds no keys; it still coordinates requests.
    vnodes: replica ? (durable ? DEFAULT_VNODES : DEFAULT_VOLATILE_VNODES) : 0,
    location: `browser/${profile}`,
    durable,
    ...(meshKey === null ? {} : { meshKey }),
    clock: { nowMs: () => Date.now() },
    rng: { next: Math.random },
    log,
    // A full replica: its share of the ring persists in this origin's IndexedDB, one database per identity.
    // A volatile tab commits 'relaxed' (no disk flush per commit): its copy never counts as a durable ack.
    ...(replica ? { wal: new IndexedDbWal(`meshkv-wal-${peerIdFromPrivateKey(identity.privateKey).toString()}`, { durability: durable ? 'strict' : 'relaxed' }) } : {})
  })
  const addrs = entry.addrs.map(a => multiaddr(a))
  const keeper = new RelayKeeper(peer.libp2p, peer.membership, {
    seeds: addrs,
    // A browser dials WebSockets only (and WebRTC, which needs a relay first).
    dialable: a => /\/(ws|wss|tls\/ws)(\/|$)/.test(a),
    clock: { nowMs: () => Date.now() },
    rng: { next: Math.random },
    log
  })
  keeper.events.on('change', status => {
    $('relays').textContent = relayText(status)
    rememberRelays(keeper.knownAddrs())
  })
  keeper.start()
  let refused = false
  peer.membership.events.on('refused', ({ reason }) => {
    if (refused) return
    refused = true
    $('error').textContent = refusalText(reason)
    forgetMeshKey()
    void askMeshKey(`${refusalText(reason)} Enter the mesh key again:`).then(() => { location.reload() })
  })
  // Closing the tab: announce the leave (others take it out of preference lists at once) and hand off what
  // can be sent before the page is gone. An optimisation only: a durable replica holds every acknowledged
  // write, and the other replicas' anti-entropy restores the rest on the key's next owner.
  addEventListener('pagehide', () => { keeper.stop(); void peer.leave() })
  // For tests and the curious (devtools): the peer, and multiaddr() to build addresses to dial.
  ;(window as unknown as { meshkv: unknown }).meshkv = { peer, slot: identity.slot, multiaddr, relays: keeper, entry: entry.source, tabLink: () => link?.stats() }
  $('self').textContent = `this tab: ${peer.id} (slot ${identity.slot}, incarnation ${identity.incarnation}, ${durable ? 'durable' : 'volatile'}, ${peer.engine.size} keys from IndexedDB)`
  const modeBox = $('mode-replica') as HTMLInputElement
  modeBox.checked = replica
  modeBox.addEventListener('change', () => {
    localStorage.setItem(MODE_KEY, modeBox.checked ? 'replica' : 'client')
    location.reload()
  })

  const ringView = new RingView(peer)
  const keyView = new KeyView(peer, position => { ringView.markKey(position) }) // it wires itself to the page
  const services = new ServicesView(peer)
  const activity = new ActivityView(peer, ringView.figures, () => { ringView.render() })
  let queued = false
  const rerender = (): void => {
    if (queued) return
    queued = true
    requestAnimationFrame(() => { queued = false; ringView.render() })
  }
  const timeline = (kind: string, text: string, id = ''): void => {
    const list = $('timeline')
    list.prepend(el('li', { 'data-kind': kind, 'data-id': id }, el('time', {}, new Date().toLocaleTimeString()), ' ', text))
    while (list.childElementCount > TIMELINE_MAX) list.lastElementChild!.remove()
  }
  const chaos = entry.debugApi ? new ChaosView(peer, async () => { await keyView.refresh() }, timeline) : null
  peer.on('member', ({ member, previous }) => {
    rerender()
    chaos?.render()
    const line = timelineEntry(member, previous)
    if (line !== null) timeline(line.kind, line.text, member.id)
  })
  peer.on('warning', w => { log.warn(w.message) })
  ringView.render()
  // A hidden tab stays a full peer (SWIM, replication) but samples and draws nothing; it catches up when shown.
  const visible = (): boolean => document.visibilityState === 'visible'
  const tick = (): void => {
    if (!visible()) { setTimeout(tick, ACTIVITY_PERIOD_MS); return }
    void activity.sample().finally(() => { setTimeout(tick, ACTIVITY_PERIOD_MS) })
  }
  setTimeout(tick, ACTIVITY_PERIOD_MS)
  const servicesTick = (): void => {
    if (!visible()) { setTimeout(servicesTick, SERVICES_PERIOD_MS); return }
    void services.render().finally(() => { setTimeout(servicesTick, services.periodMs()) })
  }
  setTimeout(servicesTick, ACTIVITY_PERIOD_MS)
  document.addEventListener('visibilitychange', () => { if (visible()) { ringView.render(); void services.render() } })

  if (new URLSearchParams(location.search).get('join') === 'false') {
    await peer.libp2p.dial(addrs, { signal: AbortSignal.timeout(30_000) })
    $('self').textContent += ' — connected, not joined (?join=false)'
    return
  }
  const joinStatus = $('join-status')
  const via = entry.source === 'remembered' ? 'relays remembered from the last visit (the peer that served this page is unreachable)' : entry.source === 'query' ? '?bootstrap' : 'the peer that served this page'
  const join = async (): Promise<void> => {
    try {
      await peer.join(addrs, {
        attemptsMax: JOIN_ATTEMPTS_MAX,
        onAttempt: (attempt, retryInMs) => { if (!refused) joinStatus.textContent = `joining through ${via}: attempt ${attempt}/${JOIN_ATTEMPTS_MAX}, next in ${Math.ceil(retryInMs / 1000)} s` }
      })
      joinStatus.textContent = `joined through ${via}`
      ringView.render()
    } catch (error) {
      joinStatus.textContent = ''
      joinStatus.append(`${error instanceof Error ? error.message : String(error)} `, el('button', { id: 'join-retry', type: 'button' }, 'retry'))
      $('join-retry').addEventListener('click', () => { void join() }, { once: true })
    }
  }
  await join()
}

main().catch((error: unknown) => {
  $('error').textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  console.error(error)
})
