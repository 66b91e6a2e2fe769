/**
 * A meshkv peer: one libp2p node plus the services on it, composed the same way in Node and in browsers.
 * Platform entry points (src/cli/peer-cli.ts for Node, web/ for tabs) supply what differs: the identity key
 * and where it is kept, listen addresses, extra transports, and persistence.
 */
import './polyfills.js'
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Emitter } from './core/emitter.js'
import type { Clock, Logger, Rng } from './core/env.js'
import type { SwimConfig } from './core/membership/config.js'
import type { MemberView } from './core/membership/swim.js'
import { Discovery } from './services/discovery.js'
import { type MeshLibp2p, type MeshNodeOptions, createMeshLibp2p } from './services/mesh-node.js'
import { SwimService, type SwimServiceEvents } from './services/swim-service.js'

/** The wire protocol version this build speaks; published in member metadata. */
export const PROTOCOL_VERSION = 1

export interface PeerOptions extends MeshNodeOptions {
  kind: 'node' | 'browser'
  swim: SwimConfig
  /** Incarnation to start from: above the last one this identity used. */
  incarnation: number
  vnodes: number
  meshKey?: string
  /** HTTP/dashboard address this peer serves, published to others. */
  http?: string
  clock: Clock
  rng: Rng
  log: Logger
}

export interface Peer {
  readonly id: string
  readonly libp2p: MeshLibp2p
  readonly membership: SwimService
  readonly discovery: Discovery
  readonly events: Emitter<SwimServiceEvents>
  members(): MemberView[]
  /** Joins through bootstrap addresses, retrying with backoff until one answers or `signal` aborts. */
  join(addrs: Multiaddr[], options?: { signal?: AbortSignal }): Promise<void>
  /** Leaves gracefully (announced), then stops. */
  leave(): Promise<void>
  /** Stops without announcing (others will detect it as failed). */
  stop(): Promise<void>
}

export async function createPeer (options: PeerOptions): Promise<Peer> {
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
  const meta: Record<string, string | number> = { kind: options.kind, vnodes: options.vnodes, proto: PROTOCOL_VERSION }
  if (options.http !== undefined) meta.http = options.http
  const membership = new SwimService(libp2p, {
    config: options.swim,
    meta,
    incarnation: options.incarnation,
    ...(options.meshKey === undefined ? {} : { meshKey: options.meshKey }),
    clock: options.clock,
    rng: options.rng,
    log: options.log
  })
  try {
    await membership.start()
  } catch (error) {
    await libp2p.stop()
    throw error
  }
  const discovery = new Discovery(libp2p, options.kind, id => {
    const state = membership.swim.view(id)?.state
    return state === 'alive' || state === 'suspect'
  }, options.log)
  if (options.meshKey === undefined) discovery.start()
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (options.meshKey === undefined) discovery.stop()
    await membership.stop()
    await libp2p.stop()
  }
  return {
    id: libp2p.peerId.toString(),
    libp2p,
    membership,
    discovery,
    events: membership.events,
    members: () => membership.members(),
    join: async (addrs, opts) => { await membership.join(addrs, opts) },
    leave: async () => {
      if (!stopped) await membership.leave()
      await stop()
    },
    stop
  }
}

export type { PrivateKey }
