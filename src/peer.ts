/**
 * A meshkv peer: one libp2p node plus the services on it, composed the same way in Node and in browsers.
 * Platform entry points (src/cli/peer-cli.ts for Node, web/ for tabs) supply what differs: the identity key
 * and where it is kept, listen addresses, extra transports, and persistence.
 */
import './polyfills.js'
import type { PrivateKey } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { loadHash64, loadRingHash } from './adapters/hash-xxhash.js'
import { type MeshAgreement, agreementMeta, compatibility } from './core/agreement.js'
import type { StorageConfig } from './core/config.js'
import { cryptoRng } from './adapters/random.js'
import { ConfigError, errorMessage } from './core/errors.js'
import type { Emitter } from './core/emitter.js'
import { type Clock, type Logger, type Rng, silentLogger } from './core/env.js'
import { type KvConfig, defaultKvConfig, validateKvConfig } from './core/kv/config.js'
import { HEARTBEAT_TTL_MS_DEFAULT, type Meta, type ServiceView, beatRecord, detached, expiredRecord, serviceKey } from './core/kv/heartbeat.js'
import type { GetResult, ListOptions, ListResult, OpObserver, PutResult, ReadOptions, WriteOptions } from './core/kv/node.js'
import type { PeerInfo } from './services/peer-info.js'
import { type SwimConfig, browserSwimConfig, defaultSwimConfig, validateSwimConfig } from './core/membership/config.js'
import type { MemberView } from './core/membership/swim.js'
import { RING_HASH_SCHEME } from './core/ring/hash.js'
import { DEFAULT_VNODES, DEFAULT_VOLATILE_VNODES, type Ring } from './core/ring/ring.js'
import { type EngineEvents, StorageEngine } from './core/storage/engine.js'
import type { WalAdapter } from './core/storage/wal-adapter.js'
import { Discovery } from './services/discovery.js'
import { type WatchEvent, WatchService } from './services/watch.js'
import { KvService } from './services/kv-service.js'
import { type MeshLibp2p, type MeshNodeOptions, createMeshLibp2p } from './services/mesh-node.js'
import { SwimService, type SwimServiceEvents } from './services/swim-service.js'

/** The wire protocol version this build speaks; published in member metadata. 2: placement by location and
 * durability, and `dw` on forwarded writes. */
export const PROTOCOL_VERSION = 2
/** The oldest protocol version this build works with (published as `protoMin`; see src/core/agreement.ts). */
export const PROTOCOL_VERSION_MIN = 2
/** Longest location a peer publishes. */
export const LOCATION_CHARS_MAX = 128

export interface PeerOptions extends MeshNodeOptions {
  kind: 'node' | 'browser'
  swim: SwimConfig
  /** Incarnation to start from: above the last one this identity used. */
  incarnation: number
  vnodes: number
  /**
   * Where this peer lives, a failure domain shared with its neighbours: `zone/rack/host` or a host name for
   * a Node peer, the browser profile for a tab. Placement spreads each key's replicas over distinct
   * locations. Published in the member metadata; at most LOCATION_CHARS_MAX characters.
   */
  location: string
  /** Whether this peer's storage outlives it (a Node peer's disk: true) or may vanish with it (a tab). */
  durable: boolean
  meshKey?: string
  /** HTTP/dashboard address this peer serves, published to others. */
  http?: string
  clock: Clock
  rng: Rng
  log: Logger
  /** Where the store's log lives (FileWal in Node, IndexedDbWal in browsers). Without one the store keeps
   * its data in memory only. */
  wal?: WalAdapter
  storage?: Partial<StorageConfig>
  /** Replication settings. N, minDurable and durableAcks must match across the mesh: a member whose differ is refused
   * (src/core/agreement.ts), and a join through members that all refuse fails with IncompatiblePeerError. */
  kv?: Partial<KvConfig>
  /** Told how every client operation through this peer ended (kind, latency, error, siblings read): the
   * Node CLI's Prometheus metrics (src/cli/metrics.ts). None by default. */
  observeOp?: OpObserver
}

export interface PeerEvents {
  /** A member changed state (SWIM). */
  member: SwimServiceEvents['change']
  /** A join attempt reached the mesh. */
  joined: SwimServiceEvents['joined']
  /** A member was refused because its mesh-wide settings (N, min-durable, durable-acks, protocol, ring
   * hash) differ from this peer's; once per member and reason. */
  incompatible: SwimServiceEvents['incompatible']
  /** A TTL key expired on this replica. */
  expired: EngineEvents['expired']
  /** Something needs attention (too many siblings, a failed compaction). */
  warning: EngineEvents['warning']
}

export interface LeaveOptions {
  /** Abort the data handoff (the leave is still announced). */
  signal?: AbortSignal
  /** Progress of the handoff, in keys. */
  progress?: (done: number, total: number) => void
}

/**
 * A meshkv peer as applications see it: the key-value operations, heartbeats, watches, membership and its
 * events. The libp2p node and the services under it stay inside (MeshPeer, for this package's own CLI,
 * dashboard and tests).
 */
export interface Peer {
  /** This peer's id (its libp2p peer id). */
  readonly id: string
  /** The multiaddrs this peer listens on, each ending in /p2p/<id>: what other peers join through. */
  addresses(): string[]
  /** Every member this peer knows of, with its SWIM state and published metadata. */
  members(): MemberView[]
  /** The ring of current members (tokens from their ids; segments fixed). */
  ring(): Ring
  /** Reads a key with quorum R: all live siblings and a causal context. Values are empty if missing. */
  get(key: string, options?: ReadOptions): Promise<GetResult>
  /** Writes a value (strings as UTF-8) with quorum W; pass the context of a get to supersede what it saw. */
  put(key: string, value: Uint8Array | string, options?: WriteOptions): Promise<PutResult>
  /** Writes a tombstone with quorum W. */
  delete(key: string, options?: Omit<WriteOptions, 'ttlMs'>): Promise<PutResult>
  /**
   * A page of keys under `prefix` (default all), ascending, at most `limit` (default 100, at most 1000),
   * after `cursor` (the previous page's; null at the end): every up member's keys merged, deleted and
   * expired keys left out, members that did not answer in `membersFailed`; `local: true` lists only this
   * peer's keys. README "Listing keys" has the guarantees.
   */
  list(options?: ListOptions): Promise<ListResult>
  /** The key's ring position, preference list and each replica's state. */
  placement(key: string, options?: { signal?: AbortSignal }): Promise<Placement>
  /**
   * Writes service `serviceId`'s heartbeat record (`heartbeat/<id>`, last-writer-wins, expiring `ttlMs`
   * after its last beat unless beaten again; default 10 s).
   */
  heartbeat(serviceId: string, options?: { ttlMs?: number; meta?: Meta; w?: number; signal?: AbortSignal }): Promise<PutResult>
  /** Heartbeat services this peer holds records of, alive or expired. */
  services(): ServiceView[]
  /** Every heartbeat service in the mesh: the records of all up members, merged. */
  meshServices(options?: { signal?: AbortSignal }): Promise<{ services: ServiceView[]; asked: number; failed: number }>
  /** Calls `callback` for put, delete, expired and revived events on keys starting with `prefix`, made by any
   * peer; returns the unsubscribe. */
  watch(prefix: string, callback: (event: WatchEvent) => void): () => void
  /** A member's figures (keys held, log size, counters, latencies); this peer's own without a request. */
  info(id: string, options?: { signal?: AbortSignal }): Promise<PeerInfo>
  on<K extends keyof PeerEvents>(event: K, listener: (event: PeerEvents[K]) => void): () => void
  /** Joins through members' multiaddrs (objects or strings), retrying with backoff until one answers or
   * `signal` aborts. */
  join(addrs: Array<Multiaddr | string>, options?: Parameters<SwimService['join']>[1]): Promise<void>
  /** Leaves gracefully: announces it, hands every key to its next owners, then stops. A volatile member
   * (a tab) whose ring tokens the mesh keeps for its leave grace (`kv.leaveGraceMs`) hands off only the keys
   * it holds for others. */
  leave(options?: LeaveOptions): Promise<{ delivered: number; failed: number }>
  /** Stops without announcing (others will detect it as failed). */
  stop(): Promise<void>
}

/** Where a key lives: `Peer.placement`. */
export type Placement = Awaited<ReturnType<KvService['kv']['placement']>>

/** A Peer with the parts this package's CLI, dashboard and tests reach into. Not part of the public API. */
export interface MeshPeer extends Peer {
  readonly libp2p: MeshLibp2p
  readonly membership: SwimService
  readonly discovery: Discovery
  readonly events: Emitter<SwimServiceEvents>
  readonly engine: StorageEngine
  readonly store: KvService
  readonly watcher: WatchService
}

/**
 * What `createPeer` takes: every field of PeerOptions is optional here, with these defaults.
 * - `privateKey`: a new Ed25519 identity (pass a kept one to come back as the same peer);
 * - `incarnation`: the clock's milliseconds, above any incarnation an earlier run of the same identity used
 *   (SWIM refutes at most once per suspicion, far fewer than once per millisecond);
 * - `kind`: 'browser' where there is a `document`, else 'node'; `durable`: true for a 'node' with a `wal`
 *   (its log outlives the process), else false (a tab's storage may be evicted; see README, Placement);
 * - `listen`: Node: WebSockets on 127.0.0.1, any free port (`meshkv/node` adds TCP); browsers: WebRTC;
 * - `location`: this peer's own id (its own failure domain); `vnodes`: 256 (64 for a volatile member);
 * - `swim`: the Node or browser profile, with `swim` fields overriding; `clock`: Date.now; `rng`:
 *   crypto.getRandomValues; `log`: silent; `wal`: none (the store lives in memory only).
 */
export type CreatePeerOptions = Partial<Omit<PeerOptions, 'swim'>> & { swim?: Partial<SwimConfig> }

/** The SWIM profile of `kind` with `swim`'s fields over it; an unset probe timeout is kept within the probe
 * interval (as the CLI does), so setting only a shorter interval is valid. */
function swimFrom (kind: 'node' | 'browser', swim: Partial<SwimConfig> | undefined): SwimConfig {
  const config = { ...(kind === 'node' ? defaultSwimConfig() : browserSwimConfig()), metaBytesMax: 2048, ...swim }
  if (swim?.probeTimeoutMs === undefined) config.probeTimeoutMs = Math.min(config.probeTimeoutMs, config.probeIntervalMs)
  return config
}

/** Builds full PeerOptions from CreatePeerOptions (the defaults documented there). */
export async function peerOptionsFrom (options: CreatePeerOptions): Promise<PeerOptions> {
  const kind = options.kind ?? (typeof (globalThis as { document?: unknown }).document === 'undefined' ? 'node' : 'browser')
  const durable = options.durable ?? (kind === 'node' && options.wal !== undefined)
  const clock = options.clock ?? { nowMs: () => Date.now() }
  const privateKey = options.privateKey ?? await generateKeyPair('Ed25519')
  const { swim, ...rest } = options
  return {
    ...rest,
    kind,
    durable,
    privateKey,
    listen: options.listen ?? (kind === 'node' ? ['/ip4/127.0.0.1/tcp/0/ws'] : ['/webrtc']),
    swim: swimFrom(kind, swim),
    incarnation: options.incarnation ?? clock.nowMs(),
    vnodes: options.vnodes ?? (durable ? DEFAULT_VNODES : DEFAULT_VOLATILE_VNODES),
    location: options.location ?? peerIdFromPrivateKey(privateKey).toString(),
    clock,
    rng: options.rng ?? cryptoRng,
    log: options.log ?? silentLogger
  }
}

/**
 * Starts a meshkv peer: a libp2p node with SWIM membership, the replicated store and the watch feed. It is
 * alone until `join` is given a member's address. See CreatePeerOptions for the defaults; `meshkv/node`'s
 * createPeer adds TCP, a data directory and a host-name location.
 */
export async function createPeer (options: CreatePeerOptions = {}): Promise<Peer> {
  return await createMeshPeer(await peerOptionsFrom(options))
}

/** createPeer with every option given, returning the peer with its internals (this package's CLI, page and tests). */
export async function createMeshPeer (options: PeerOptions): Promise<MeshPeer> {
  // Every option is checked before anything listens: a bad one must not leave sockets open.
  // A tab sends refreshes at once: a hidden tab's timers fire at most once a second.
  const kvConfig = validateKvConfig({ ...defaultKvConfig(), ...(options.kind === 'browser' ? { refreshCoalesceMs: 0 } : {}), ...options.kv })
  validateSwimConfig({ ...options.swim })
  if (typeof options.location !== 'string' || options.location === '' || options.location.length > LOCATION_CHARS_MAX) throw new ConfigError('location', `must be 1 to ${LOCATION_CHARS_MAX} characters, got ${JSON.stringify(options.location)}`)
  const [ringHash, hash64] = await Promise.all([loadRingHash(), loadHash64()])
  const libp2p = await createMeshLibp2p(options)
  // After a WebRTC upgrade the relayed (limited) connection it was signalled over stays open next to the
  // direct one; close it, or the relay's reservation slots run out (DESIGN.md §6).
  libp2p.addEventListener('connection:open', event => {
    const direct = event.detail
    if (direct.limits !== undefined || !direct.remoteAddr.toString().includes('/webrtc')) return
    for (const c of libp2p.getConnections(direct.remotePeer)) {
      if (c !== direct && c.limits !== undefined) void c.close().catch(() => {})
    }
  })
  // What every member of the mesh must share; published, and checked against every member's (src/core/agreement.ts).
  const agreement: MeshAgreement = { proto: PROTOCOL_VERSION, protoMin: PROTOCOL_VERSION_MIN, n: kvConfig.n, minDurable: kvConfig.minDurable, durableAcks: kvConfig.durableAcks, ringScheme: RING_HASH_SCHEME }
  const meta: Record<string, string | number> = { kind: options.kind, vnodes: options.vnodes, ...agreementMeta(agreement), location: options.location, durability: options.durable ? 'durable' : 'volatile' }
  if (options.http !== undefined) meta.http = options.http
  // The dashboard's chaos panel acts through members that run the debug API (src/services/debug.ts).
  if (options.blocked !== undefined) meta.debug = 1
  // Tabs find relays in the member list: a relay's WebSocket addresses are in `addrs`.
  if (options.relayServer !== undefined) meta.relay = options.relayServer.maxReservations
  const membership = new SwimService(libp2p, {
    config: options.swim,
    meta,
    incarnation: options.incarnation,
    compatibility: remote => compatibility(agreement, remote),
    ...(options.meshKey === undefined ? {} : { meshKey: options.meshKey }),
    clock: options.clock,
    rng: options.rng,
    log: options.log
  })
  let engine: StorageEngine
  try {
    await membership.start()
    const openedAt = options.clock.nowMs()
    engine = await StorageEngine.open({
      ...options.storage,
      // Every state the log accepts must fit in one replication message.
      walRecordBytesMax: Math.min(options.storage?.walRecordBytesMax ?? Number.MAX_SAFE_INTEGER, kvConfig.messageBytesMax - 64 * 1024),
      replicaId: libp2p.peerId.toString(),
      clock: options.clock,
      rng: options.rng,
      log: options.log,
      // An expiring heartbeat keeps an "expired" record (other keys become tombstones).
      expiredValue: expiredRecord,
      ...(options.wal === undefined ? {} : { wal: options.wal })
    })
    const r = engine.recovery
    if (r !== null) options.log.info(`storage: ${engine.size} keys recovered in ${options.clock.nowMs() - openedAt} ms (${r.snapshotRecords} snapshot records, ${r.records} log records, ${r.superseded} superseded)`)
  } catch (error) {
    await membership.stop().catch(() => {})
    await libp2p.stop()
    throw error
  }
  const store = new KvService(libp2p, membership, {
    engine,
    config: kvConfig,
    ringHash,
    hash64,
    clock: options.clock,
    log: options.log,
    ...(options.observeOp === undefined ? {} : { observeOp: options.observeOp }),
    ...(options.meshKey === undefined
      ? {}
      : { handshake: { opener: membership.handshakeAsOpener.bind(membership), responder: membership.handshakeAsResponder.bind(membership) } })
  })
  await store.start()
  const isMember = (id: string): boolean => membership.isUp(id)
  const watcher = new WatchService(libp2p, store.kv, isMember, options.log)
  watcher.start()
  const discovery = new Discovery(libp2p, options.kind, isMember, options.log)
  if (options.meshKey === undefined) discovery.start()
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (options.meshKey === undefined) discovery.stop()
    watcher.stop()
    await store.stop()
    await membership.stop()
    await engine.close()
    await libp2p.stop()
  }
  const kv = store.kv
  return {
    id: libp2p.peerId.toString(),
    libp2p,
    membership,
    discovery,
    events: membership.events,
    engine,
    store,
    addresses: () => libp2p.getMultiaddrs().map(String),
    members: () => membership.members(),
    ring: () => kv.ring,
    get: async (key, opts) => await kv.get(key, opts),
    put: async (key, value, opts) => await kv.put(key, typeof value === 'string' ? new TextEncoder().encode(value) : value, opts),
    delete: async (key, opts) => await kv.delete(key, opts),
    placement: async (key, opts) => await kv.placement(key, opts?.signal),
    list: async opts => await kv.list(opts),
    info: async (id, opts) => await store.peerInfo(id, opts?.signal),
    // Not async: a service's every beat comes this way, and the wrapper would cost a promise and two turns.
    heartbeat: (serviceId, opts = {}) => {
      try {
        const key = serviceKey(serviceId)
        const ttlMs = opts.ttlMs ?? HEARTBEAT_TTL_MS_DEFAULT
        const value = beatRecord(ttlMs, opts.meta ?? null, engine.config.ttlMsMax)
        return kv.putHeartbeat(key, value, { lww: true, ttlMs, ...(opts.w === undefined ? {} : { w: opts.w }), ...(opts.signal === undefined ? {} : { signal: opts.signal }) })
      } catch (error) {
        return Promise.reject(error)
      }
    },
    services: () => kv.localServices(),
    meshServices: async opts => await kv.meshServices(opts?.signal),
    watch: (prefix, callback) => watcher.watch(prefix, callback),
    watcher,
    on: (event, listener) => {
      if (event === 'member') return membership.events.on('change', listener as (e: PeerEvents['member']) => void)
      if (event === 'joined') return membership.events.on('joined', listener as (e: PeerEvents['joined']) => void)
      if (event === 'incompatible') return membership.events.on('incompatible', listener as (e: PeerEvents['incompatible']) => void)
      if (event === 'expired') {
        // The states are the store's own: handed out detached (a heartbeat record's bytes are shared).
        const expired = listener as (e: PeerEvents['expired']) => void
        return engine.events.on('expired', e => { expired({ key: e.key, state: detached(e.key, e.state), expired: detached(e.key, e.expired) }) })
      }
      return engine.events.on('warning', listener as (e: PeerEvents['warning']) => void)
    },
    join: async (addrs, opts) => { await membership.join(addrs.map(toMultiaddr), opts) },
    leave: async (opts = {}) => {
      let result = { delivered: 0, failed: 0 }
      if (!stopped) {
        // The next owners are computed before leaving; once the leave is announced nobody sends this peer
        // new writes, and what it holds goes to them. A tab (volatile) keeps its ring tokens for the mesh's
        // leave grace instead and sends only the keys it holds for others (KvService.leaveHandoff): if it
        // does not come back, its ranges' new owners are filled by anti-entropy from the other replicas once
        // the grace ends (a durable one holds every acknowledged write).
        const next = store.leaveHandoff()
        kv.beginLeaving()
        await membership.leave()
        try {
          result = await kv.handOffAll(next.ring, opts.progress ?? (() => {}), opts.signal, next.hintsOnly)
        } catch (error) {
          options.log.error('handoff before leaving failed', error)
        }
      }
      await stop()
      return result
    },
    stop
  }
}

/** A multiaddr from a string, with a ConfigError naming it when it is not one. */
function toMultiaddr (addr: Multiaddr | string): Multiaddr {
  if (typeof addr !== 'string') return addr
  try {
    return multiaddr(addr)
  } catch (error) {
    throw new ConfigError('join', `${JSON.stringify(addr)} is not a multiaddr (expected e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...): ${errorMessage(error)}`)
  }
}

export type { PrivateKey }
