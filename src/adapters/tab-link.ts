/**
 * The tab link: a libp2p transport between tabs of one browser profile (one origin), through the browser
 * itself instead of WebRTC. Tabs of one browser share a machine, a process tree and a failure domain; a
 * WebRTC connection between them still costs a relayed signalling connection through a Node relay (its own
 * noise handshake on both tabs and the relay), ICE, DTLS, SCTP, a second noise handshake and a data channel
 * per stream. Measured on a 2-core machine, each tab-to-tab connection a reloaded tab re-made cost
 * 0.6-0.9 CPU-seconds over the machine: most of what a reload costs the mesh (README, Churn).
 *
 * How it works:
 * - Every tab listens on `/memory/meshkv-tabs.<profile>` (the profile id of web/main.ts, kept in the
 *   origin's storage). The tabs of that profile put each other's address in their peer stores when they
 *   learn of each other; SWIM metadata and discovery leave it out. Only a tab of the same profile dials it
 *   (`dialFilter`); any other peer that sees it (identify) has no transport for it and skips it.
 * - Presence: each tab instance holds a Web Lock named after its peer id and a random nonce for its
 *   lifetime. A starting tab lists the tabs already here from the locks held (before it dials anyone), then
 *   says `hello` on a BroadcastChannel of the profile; the others answer `here`, and a stopping tab says
 *   `bye`. Every tab queues a request for each other tab's lock: the browser grants it the moment that tab is
 *   gone, closed or crashed, and its links are reset at once. A tab that is not present is not dialled
 *   (`dialFilter`), so libp2p goes on to the peer's next address (WebRTC).
 * - A tab of this profile reached some other way (a link dial that failed or timed out while that tab was
 *   busy starting, or a WebRTC connection made before its presence was known) is moved onto the link: the
 *   tab with the smaller peer id dials the link (after LINK_UPGRADE_ATTEMPTS_MAX failed tries in a row,
 *   LINK_UPGRADE_RETRY_MS apart, it gives up on that tab instance), and each tab closes its other
 *   connections to a tab it is linked to, so the two end with one connection, through the browser.
 * - A connection is a BroadcastChannel of its own (a random name only its two tabs open), carrying the
 *   muxer's bytes (yamux) in order. There is no encryption: the two tabs are the same origin in the same
 *   browser, which already share storage and could read each other's keys; the remote peer id is the one
 *   its presence announced. Connection gating (the debug API's partitions) still applies.
 *
 * Bounds: at most TAB_LINK_PEERS_MAX tabs are tracked; control messages are checked and malformed ones
 * counted and dropped; a dial waits at most DIAL_ACCEPT_TIMEOUT_MS for the other tab's accept; a move onto
 * the link is given up after LINK_UPGRADE_ATTEMPTS_MAX failed tries in a row per tab instance. There is no
 * read backpressure (as for WebSockets): the muxer's windows bound what is in flight.
 */
import { ConnectionFailedError, serviceCapabilities, transportSymbol } from '@libp2p/interface'
import type { ComponentLogger, Connection, CreateListenerOptions, DialTransportOptions, Libp2pEvents, Listener, ListenerEvents, Logger, PeerId, PeerStore, Transport, TypedEventTarget, Upgrader } from '@libp2p/interface'
import { TypedEventEmitter } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { AbstractMultiaddrConnection } from '@libp2p/utils'
import type { SendResult } from '@libp2p/utils'
import { CODE_MEMORY, CODE_P2P, type Multiaddr, multiaddr } from '@multiformats/multiaddr'

/** The memory address value every tab of a profile listens on: `meshkv-tabs.<profile>`. */
export const TAB_LINK_ADDRESS_PREFIX = 'meshkv-tabs.'
/** Tabs of this profile tracked at once (a browser opening more gets WebRTC to the rest). */
export const TAB_LINK_PEERS_MAX = 256
/** How long a dial waits for the other tab to accept. */
export const DIAL_ACCEPT_TIMEOUT_MS = 5000
/** Failed tries in a row to move a tab reached another way onto the link (per tab instance); the wait between. */
export const LINK_UPGRADE_ATTEMPTS_MAX = 5
export const LINK_UPGRADE_RETRY_MS = 5000
/** How long one such try may take (the dial, its accept and the upgrade), and closing the old connection. */
export const LINK_UPGRADE_TIMEOUT_MS = 15_000
export const LINK_UPGRADE_CLOSE_MS = 2000
const CHANNEL_PREFIX = 'meshkv-tab-link/'
const ALIVE_LOCK_PREFIX = 'meshkv-tab-link-alive/'

/** The peer id a multiaddr ends in, if any. */
function peerIdOf (ma: Multiaddr): string | null {
  return ma.getComponents().findLast(c => c.code === CODE_P2P)?.value ?? null
}

/** The address every tab of `profile` listens on. */
export function tabLinkAddress (profile: string): string {
  return `/memory/${TAB_LINK_ADDRESS_PREFIX}${profile}`
}

/** Whether `addr` is a tab link address: only for tabs of one browser, so never announced to the mesh. */
export function isTabLinkAddress (addr: string): boolean {
  return addr.startsWith(`/memory/${TAB_LINK_ADDRESS_PREFIX}`)
}

export interface TabLinkInit {
  /** This browser profile's id: letters, digits and dashes (web/main.ts's profile UUID). */
  profile: string
}

/** What the transport needs of libp2p's connection manager: a peer's connections, and a forced dial. */
export interface TabLinkConnectionManager {
  getConnections: (peer?: PeerId) => Connection[]
  openConnection: (peer: Multiaddr, options: { force: boolean, signal: AbortSignal }) => Promise<Connection>
}

export interface TabLinkComponents { peerId: PeerId, peerStore: PeerStore, logger: ComponentLogger, events: TypedEventTarget<Libp2pEvents>, connectionManager: TabLinkConnectionManager }

export interface TabLinkStats {
  /** Tabs of this profile present now. */
  present: number
  /** Connections made (dialled and accepted) and reset because the other tab went away. */
  dialled: number
  accepted: number
  resetGone: number
  /**
   * Tabs of this profile reached another way: links dialled to move them onto it, tries that failed, and
   * other connections closed because a link to that tab was up.
   */
  upgraded: number
  upgradeFailed: number
  otherClosed: number
  /** Control messages dropped as malformed or not meant for this tab. */
  dropped: number
}

type Control =
  | { t: 'hello' | 'here' | 'bye', id: string, nonce: string }
  | { t: 'dial', link: string, from: string, fromNonce: string, to: string, toNonce: string }

type LinkMessage = { t: 'accept' } | { t: 'close' } | { t: 'reset' }

function isControl (m: unknown): m is Control {
  if (typeof m !== 'object' || m === null) return false
  const c = m as Record<string, unknown>
  if (c.t === 'hello' || c.t === 'here' || c.t === 'bye') return typeof c.id === 'string' && typeof c.nonce === 'string' && c.id.length < 128 && c.nonce.length < 64
  if (c.t === 'dial') return ['link', 'from', 'fromNonce', 'to', 'toNonce'].every(k => typeof c[k] === 'string' && (c[k] as string).length < 128)
  return false
}

/** One connection's bytes over its own BroadcastChannel. */
class TabLinkConnection extends AbstractMultiaddrConnection {
  readonly remoteNonce: string
  private readonly channel: BroadcastChannel
  private readonly onGone: (c: TabLinkConnection) => void
  private acceptResolve: (() => void) | null = null

  constructor (init: { channel: BroadcastChannel, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound', log: Logger, remoteNonce: string, onGone: (c: TabLinkConnection) => void }) {
    super({ remoteAddr: init.remoteAddr, direction: init.direction, log: init.log })
    this.channel = init.channel
    this.remoteNonce = init.remoteNonce
    this.onGone = init.onGone
    this.channel.onmessage = (event: MessageEvent) => {
      const data: unknown = event.data
      if (data instanceof Uint8Array) { this.onData(data); return }
      const m = data as Partial<LinkMessage> | null
      if (m?.t === 'accept') { this.acceptResolve?.(); this.acceptResolve = null } else if (m?.t === 'close') { this.end(); this.onTransportClosed() } else if (m?.t === 'reset') { this.end(); this.onRemoteReset() }
    }
    this.addEventListener('close', () => { this.end() }, { once: true })
  }

  /** Resolves when the other tab accepts; rejects on `signal` or after DIAL_ACCEPT_TIMEOUT_MS. */
  async accepted (signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { done(new ConnectionFailedError(`the tab did not accept within ${DIAL_ACCEPT_TIMEOUT_MS} ms`)) }, DIAL_ACCEPT_TIMEOUT_MS)
      const onAbort = (): void => { done(signal.reason instanceof Error ? signal.reason : new Error('dial aborted')) }
      const done = (error?: Error): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        this.acceptResolve = null
        if (error === undefined) resolve(); else reject(error)
      }
      this.acceptResolve = () => { done() }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  accept (): void {
    this.post({ t: 'accept' })
  }

  /** The other tab is gone (its lock was released, or it said bye): reset at once. */
  gone (): void {
    if (this.status === 'closed') return
    this.end()
    this.onRemoteReset()
  }

  sendData (data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): SendResult {
    // One message per write: the muxer hands over a frame's header and body as separate chunks.
    this.post(data.subarray())
    return { sentBytes: data.byteLength, canSendMore: true }
  }

  sendReset (): void {
    this.post({ t: 'reset' })
    this.end()
  }

  async sendClose (): Promise<void> {
    this.post({ t: 'close' })
    this.end()
  }

  sendPause (): void {} // read backpressure is not supported (the muxer's windows bound what is in flight)
  sendResume (): void {}

  private closed = false
  private post (message: Uint8Array | LinkMessage): void {
    if (this.closed) return
    try { this.channel.postMessage(message) } catch (error) { this.log.error('tab link post failed - %e', error) }
  }

  private end (): void {
    if (this.closed) return
    this.closed = true
    this.channel.onmessage = null
    this.channel.close()
    this.onGone(this)
  }
}

/** Presence of this profile's tabs, and the connections between them. One per transport (per peer). */
class TabLinkHub {
  readonly nonce = crypto.randomUUID()
  readonly counts: Omit<TabLinkStats, 'present'> = { dialled: 0, accepted: 0, resetGone: 0, upgraded: 0, upgradeFailed: 0, otherClosed: 0, dropped: 0 }
  private readonly present = new Map<string, { nonce: string, watch: AbortController }>()
  private readonly links = new Set<TabLinkConnection>()
  private readonly control: BroadcastChannel
  private releaseAlive: (() => void) | null = null
  private stopped = false

  constructor (private readonly profile: string, private readonly self: string, private readonly peerStore: PeerStore, private readonly log: Logger, private readonly onInbound: (c: TabLinkConnection, remote: PeerId) => void, private readonly onPresent: (id: string) => void, private readonly onAbsent: (id: string) => void) {
    this.control = new BroadcastChannel(`${CHANNEL_PREFIX}${profile}`)
    this.control.onmessage = (event: MessageEvent) => { this.onControl(event.data) }
  }

  /** The lock this tab instance holds while it lives: its peer id and nonce, so others can list tabs. */
  private aliveLock (id: string, nonce: string): string {
    return `${ALIVE_LOCK_PREFIX}${this.profile}/${id}/${nonce}`
  }

  async start (): Promise<void> {
    // Held until this hub stops or the page goes away; the others' queued requests for it are granted then.
    await new Promise<void>(resolve => {
      void navigator.locks.request(this.aliveLock(this.self, this.nonce), async () => {
        resolve()
        await new Promise<void>(release => { this.releaseAlive = release })
      })
    })
    // The tabs already here, from the locks they hold: known before this peer dials anyone (a hello's answers
    // would come later, after the first dials had gone out over WebRTC).
    // Their addresses must be in the peer store by then too.
    const prefix = `${ALIVE_LOCK_PREFIX}${this.profile}/`
    const recorded: Array<Promise<void>> = []
    for (const lock of (await navigator.locks.query()).held ?? []) {
      const parts = lock.name?.startsWith(prefix) === true ? lock.name.slice(prefix.length).split('/') : []
      if (parts.length === 2 && parts[0] !== this.self) recorded.push(this.seen(parts[0]!, parts[1]!) ?? Promise.resolve())
    }
    await Promise.all(recorded)
    this.control.postMessage({ t: 'hello', id: this.self, nonce: this.nonce } satisfies Control)
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    try { this.control.postMessage({ t: 'bye', id: this.self, nonce: this.nonce } satisfies Control) } catch {}
    this.control.onmessage = null
    this.control.close()
    for (const p of this.present.values()) p.watch.abort()
    this.present.clear()
    for (const link of [...this.links]) link.gone()
    this.releaseAlive?.()
  }

  get stats (): TabLinkStats {
    return { present: this.present.size, ...this.counts }
  }

  /** Where tab `id` of this profile is dialled. */
  private addressOf (id: string): Multiaddr {
    return multiaddr(`${tabLinkAddress(this.profile)}/p2p/${id}`)
  }

  isPresent (id: string): boolean {
    return this.present.has(id)
  }

  /** The nonce tab `id` runs as now, if it is present. */
  nonceOf (id: string): string | undefined {
    return this.present.get(id)?.nonce
  }

  async dial (remote: PeerId, remoteAddr: Multiaddr, signal: AbortSignal): Promise<TabLinkConnection> {
    const id = remote.toString()
    const entry = this.present.get(id)
    if (entry === undefined || this.stopped) throw new ConnectionFailedError(`no tab ${id} in this browser`)
    const link = crypto.randomUUID()
    const connection = this.track(new TabLinkConnection({
      channel: new BroadcastChannel(`${CHANNEL_PREFIX}${this.profile}/${link}`),
      remoteAddr,
      direction: 'outbound',
      log: this.log.newScope(`outbound:${link.slice(0, 8)}`),
      remoteNonce: entry.nonce,
      onGone: c => { this.links.delete(c) }
    }))
    const accepted = connection.accepted(signal)
    this.control.postMessage({ t: 'dial', link, from: this.self, fromNonce: this.nonce, to: id, toNonce: entry.nonce } satisfies Control)
    try {
      await accepted
    } catch (error) {
      connection.abort(error instanceof Error ? error : new Error(String(error)))
      throw error
    }
    this.counts.dialled++
    return connection
  }

  private track (c: TabLinkConnection): TabLinkConnection {
    this.links.add(c)
    return c
  }

  private onControl (data: unknown): void {
    if (this.stopped) return
    if (!isControl(data)) { this.counts.dropped++; return }
    if (data.t === 'dial') {
      if (data.to !== this.self) return // another tab's
      if (data.toNonce !== this.nonce) { this.counts.dropped++; return } // meant for an earlier instance of this peer
      let remote: PeerId
      try { remote = peerIdFromString(data.from) } catch { this.counts.dropped++; return }
      void this.seen(data.from, data.fromNonce)
      const connection = this.track(new TabLinkConnection({
        channel: new BroadcastChannel(`${CHANNEL_PREFIX}${this.profile}/${data.link}`),
        remoteAddr: this.addressOf(data.from),
        direction: 'inbound',
        log: this.log.newScope(`inbound:${data.link.slice(0, 8)}`),
        remoteNonce: data.fromNonce,
        onGone: c => { this.links.delete(c) }
      }))
      connection.accept()
      this.counts.accepted++
      this.onInbound(connection, remote)
      return
    }
    if (data.id === this.self) return
    if (data.t === 'bye') { this.forget(data.id, data.nonce); return }
    const isNew = this.seen(data.id, data.nonce) !== null
    if (data.t === 'hello' && isNew) this.control.postMessage({ t: 'here', id: this.self, nonce: this.nonce } satisfies Control)
  }

  /**
   * Records that tab `id` runs as `nonce`. If that is news, returns the write of its address to the peer
   * store (no other peer announces it: SWIM metadata and discovery leave tab link addresses out, and libp2p
   * dials only addresses it knows); else null.
   */
  private seen (id: string, nonce: string): Promise<void> | null {
    const known = this.present.get(id)
    if (known?.nonce === nonce) return null
    if (known !== undefined) this.forget(id, known.nonce) // the same peer reloaded: its old links are dead
    if (this.present.size >= TAB_LINK_PEERS_MAX) { this.counts.dropped++; return null }
    let peer: PeerId
    try { peer = peerIdFromString(id) } catch { this.counts.dropped++; return null }
    const watch = new AbortController()
    this.present.set(id, { nonce, watch })
    const recorded = this.peerStore.merge(peer, { multiaddrs: [this.addressOf(id)] }).then(() => { this.onPresent(id) }, () => {})
    // Granted only once that tab instance is gone (closed, crashed, navigated away): released at once.
    navigator.locks.request(this.aliveLock(id, nonce), { signal: watch.signal }, () => { this.forget(id, nonce) }).catch(() => {})
    return recorded
  }

  private forget (id: string, nonce: string): void {
    const known = this.present.get(id)
    if (known?.nonce === nonce) {
      known.watch.abort()
      this.present.delete(id)
      this.onAbsent(id)
    }
    for (const link of [...this.links]) {
      if (link.remoteNonce === nonce) { this.counts.resetGone++; link.gone() }
    }
  }
}

class TabLinkListener extends TypedEventEmitter<ListenerEvents> implements Listener {
  private addr: Multiaddr | null = null
  /** Aborts inbound upgrades still running when the listener closes (the upgrader adds its own timeout). */
  private readonly shutdown = new AbortController()

  constructor (private readonly transport: TabLinkTransport, private readonly upgrader: Upgrader) {
    super()
  }

  async listen (ma: Multiaddr): Promise<void> {
    await this.transport.startHub((connection, remote) => {
      this.upgrader.upgradeInbound(connection, { skipEncryption: true, remotePeer: remote, signal: this.shutdown.signal })
        .catch((error: unknown) => { connection.abort(error instanceof Error ? error : new Error(String(error))) })
    })
    this.addr = ma
    queueMicrotask(() => { this.safeDispatchEvent('listening') })
  }

  getAddrs (): Multiaddr[] {
    return this.addr === null ? [] : [this.addr]
  }

  updateAnnounceAddrs (): void {}

  async close (): Promise<void> {
    this.transport.stopHub()
    this.shutdown.abort()
    this.addr = null
    queueMicrotask(() => { this.safeDispatchEvent('close') })
  }
}

export class TabLinkTransport implements Transport {
  readonly [transportSymbol] = true
  readonly [Symbol.toStringTag] = 'meshkv/tab-link'
  readonly [serviceCapabilities]: string[] = ['@libp2p/transport']
  private hub: TabLinkHub | null = null
  private readonly profile: string
  private readonly log: Logger

  constructor (private readonly components: TabLinkComponents, init: TabLinkInit) {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(init.profile)) throw new TypeError(`tab link profile must be 1-64 letters, digits or dashes, got ${JSON.stringify(init.profile)}`)
    this.profile = init.profile
    this.log = components.logger.forComponent('meshkv:tab-link')
  }

  /** Presence and connection counts (undefined before listening). */
  stats (): TabLinkStats | undefined {
    return this.hub?.stats
  }

  async startHub (onInbound: (c: TabLinkConnection, remote: PeerId) => void): Promise<void> {
    if (this.hub !== null) return
    const hub = new TabLinkHub(this.profile, this.components.peerId.toString(), this.components.peerStore, this.log, onInbound, id => { this.keepLinked(id) }, id => { this.dropUpgrade(id) })
    this.hub = hub
    this.stopping = new AbortController()
    this.components.events.addEventListener('connection:open', this.onConnectionOpen)
    await hub.start()
  }

  stopHub (): void {
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen)
    for (const u of this.upgrades.values()) clearTimeout(u.timer)
    this.upgrades.clear()
    this.stopping.abort(new ConnectionFailedError('the tab link stopped'))
    this.hub?.stop()
    this.hub = null
  }

  /** Per tab of this profile once reached another way: its instance (nonce), failed tries in a row, the retry. */
  private readonly upgrades = new Map<string, { nonce: string, attempts: number, running: boolean, timer?: ReturnType<typeof setTimeout> }>()
  /** Connections this transport is closing (a closing connection still reports itself open). */
  private readonly closing = new WeakSet<Connection>()
  /** Aborts the link dials under way when the hub stops. */
  private stopping = new AbortController()

  private readonly onConnectionOpen = (event: CustomEvent<Connection>): void => {
    this.keepLinked(event.detail.remotePeer.toString())
  }

  /** Whether `c` is a full connection (not a relay's limited one) over the link, or not over it. */
  private static isLink (c: Connection): boolean {
    return c.limits === undefined && isTabLinkAddress(c.remoteAddr.toString())
  }

  private static isOther (c: Connection): boolean {
    return c.limits === undefined && !isTabLinkAddress(c.remoteAddr.toString())
  }

  /**
   * If tab `id` of this profile is reached another way (see the header), moves it onto the link: closes the
   * other connections if linked already; else the tab with the smaller peer id dials the link, so the two
   * never dial each other at once.
   */
  private keepLinked (id: string): void {
    const nonce = this.hub?.nonceOf(id)
    if (nonce === undefined) { this.dropUpgrade(id); return } // not a tab of this browser, or gone
    const connections = this.components.connectionManager.getConnections(peerIdFromString(id)).filter(c => c.status === 'open')
    if (!connections.some(TabLinkTransport.isOther)) return
    // Linked already (either side may see this): the other connections go.
    if (connections.some(TabLinkTransport.isLink)) { this.closeOthers(id); return }
    if (this.components.peerId.toString() >= id) return // the other tab dials the link
    let u = this.upgrades.get(id)
    if (u === undefined || u.nonce !== nonce) {
      this.dropUpgrade(id)
      if (this.upgrades.size >= TAB_LINK_PEERS_MAX) return
      u = { nonce, attempts: 0, running: false }
      this.upgrades.set(id, u)
    }
    if (u.running || u.timer !== undefined || u.attempts >= LINK_UPGRADE_ATTEMPTS_MAX) return
    u.running = true
    u.attempts++
    const entry = u
    void this.upgrade(id).then(ok => {
      entry.running = false
      if (ok) { entry.attempts = 0; return } // kept while that tab instance lives: the bound is on failures in a row
      if (this.upgrades.get(id) !== entry || entry.attempts >= LINK_UPGRADE_ATTEMPTS_MAX) return
      entry.timer = setTimeout(() => { entry.timer = undefined; this.keepLinked(id) }, LINK_UPGRADE_RETRY_MS)
    })
  }

  private dropUpgrade (id: string): void {
    const u = this.upgrades.get(id)
    if (u === undefined) return
    clearTimeout(u.timer)
    this.upgrades.delete(id)
  }

  /** Dials tab `id` over the link, then closes its other connections. */
  private async upgrade (id: string): Promise<boolean> {
    try {
      const address = multiaddr(`${tabLinkAddress(this.profile)}/p2p/${id}`)
      const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(LINK_UPGRADE_TIMEOUT_MS)])
      // A dial to that peer still under way (the WebRTC one whose connection just opened) takes this one in
      // and answers with its connection; once it has, a second dial is the link's own.
      let c = await this.components.connectionManager.openConnection(address, { force: true, signal })
      if (!isTabLinkAddress(c.remoteAddr.toString())) c = await this.components.connectionManager.openConnection(address, { force: true, signal })
      if (!isTabLinkAddress(c.remoteAddr.toString())) throw new ConnectionFailedError(`another dial to ${id} answered, over ${c.remoteAddr.toString()}`)
    } catch (error) {
      if (this.hub !== null) this.hub.counts.upgradeFailed++
      this.log('moving %s onto the tab link failed - %e', id, error)
      return false
    }
    if (this.hub === null) return true
    this.hub.counts.upgraded++
    this.closeOthers(id)
    return true
  }

  /** Closes the connections to tab `id` that are not the link (at most LINK_UPGRADE_CLOSE_MS, then aborted). */
  private closeOthers (id: string): void {
    for (const c of this.components.connectionManager.getConnections(peerIdFromString(id))) {
      if (!TabLinkTransport.isOther(c) || c.status !== 'open' || this.closing.has(c)) continue
      this.closing.add(c)
      if (this.hub !== null) this.hub.counts.otherClosed++
      c.close({ signal: AbortSignal.timeout(LINK_UPGRADE_CLOSE_MS) }).catch((error: unknown) => { c.abort(error instanceof Error ? error : new Error(String(error))) })
    }
  }

  async dial (ma: Multiaddr, options: DialTransportOptions): Promise<Connection> {
    options.signal.throwIfAborted()
    const id = peerIdOf(ma)
    if (id === null) throw new ConnectionFailedError(`${ma.toString()} names no peer`)
    if (this.hub === null) throw new ConnectionFailedError('the tab link is not listening')
    const remote = peerIdFromString(id)
    const maConn = await this.hub.dial(remote, ma, options.signal)
    try {
      return await options.upgrader.upgradeOutbound(maConn, { ...options, skipEncryption: true, remotePeer: remote })
    } catch (error) {
      maConn.abort(error instanceof Error ? error : new Error(String(error)))
      throw error
    }
  }

  createListener (options: CreateListenerOptions): Listener {
    return new TabLinkListener(this, options.upgrader)
  }

  private ours (ma: Multiaddr): boolean {
    const first = ma.getComponents()[0]
    return first?.code === CODE_MEMORY && first.value === `${TAB_LINK_ADDRESS_PREFIX}${this.profile}`
  }

  listenFilter (multiaddrs: Multiaddr[]): Multiaddr[] {
    return multiaddrs.filter(ma => this.ours(ma) && peerIdOf(ma) === null)
  }

  /** Only this profile's address of a tab that is here now: any other fails over to WebRTC at once. */
  dialFilter (multiaddrs: Multiaddr[]): Multiaddr[] {
    return multiaddrs.filter(ma => {
      if (!this.ours(ma)) return false
      const id = peerIdOf(ma)
      return id !== null && (this.hub?.isPresent(id) ?? false)
    })
  }
}

/** The tab link for libp2p's `transports`; `profile` is this browser profile's id. */
export function tabLink (init: TabLinkInit): (components: TabLinkComponents) => TabLinkTransport {
  return components => new TabLinkTransport(components, init)
}
