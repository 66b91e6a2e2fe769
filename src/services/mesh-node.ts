/**
 * The one libp2p node factory for both platforms (DESIGN.md §3, §6). Every peer gets WebSockets, WebRTC and
 * the circuit-relay transport, noise, yamux, identify and gossipsub; Node entry points add TCP (passed in as
 * `extraTransports`, so this module imports nothing Node-only and bundles for browsers). A bootstrap peer
 * also runs the circuit-relay server, through which tabs reach it and signal WebRTC to each other.
 *
 * Why @libp2p/gossipsub and not @chainsafe/libp2p-gossipsub: the latter (14.x) targets libp2p 2 and forms
 * no mesh on libp2p 3 (`multiaddr.tuples is not a function`); its successor @libp2p/gossipsub 17 works
 * across Node and tabs.
 */
import '../polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PrivateKey, Transport } from '@libp2p/interface'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'

export interface MeshNodeOptions {
  privateKey: PrivateKey
  /** Addresses to listen on. Node: e.g. /ip4/127.0.0.1/tcp/0 and .../ws; browsers: ['/p2p-circuit', '/webrtc']. */
  listen: string[]
  /** Transports only some platforms have (Node: tcp()). */
  extraTransports?: Array<(components: any) => Transport> // eslint-disable-line @typescript-eslint/no-explicit-any -- libp2p passes each factory its own components
  /** Run the circuit-relay server (bootstrap peers), sized for this many reservations (tabs). */
  relayServer?: { maxReservations: number }
  /**
   * ICE servers for WebRTC. Default none: on one host or LAN, host candidates suffice, and tests must never
   * reach external STUN/TURN servers. Configure STUN/TURN for meshes that cross NATs.
   */
  iceServers?: RTCIceServer[]
  /** Node only: bind WebRTC (node-datachannel) to this interface address, e.g. 127.0.0.1 in tests. */
  webrtcBindAddress?: string
  /**
   * How often libp2p pings each connection (a new stream per ping; over WebRTC a new data channel) and
   * closes it when the ping fails. Default libp2p's 10 s; tabs use a longer period (SWIM already probes
   * every member, and each ping costs a data channel's setup and teardown in every tab).
   */
  connectionPingIntervalMs?: number
  /** Peer ids this node refuses to connect to (the debug API's partition switch); consulted on every dial
   * and every inbound connection. */
  blocked?: ReadonlySet<string>
}

export async function createMeshLibp2p (options: MeshNodeOptions) {
  const rtcConfiguration: RTCConfiguration & { bindAddress?: string } = { iceServers: options.iceServers ?? [] }
  if (options.webrtcBindAddress !== undefined) rtcConfiguration.bindAddress = options.webrtcBindAddress
  return createLibp2p({
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [
      ...(options.extraTransports ?? []),
      webSockets(),
      webRTC({ rtcConfiguration }),
      circuitRelayTransport()
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // libp2p refuses to dial loopback and private addresses by default, and in browsers every insecure /ws
    // address: a mesh on one host or a LAN needs both.
    connectionGater: {
      denyDialMultiaddr: () => false,
      ...(options.blocked === undefined
        ? {}
        : {
            denyDialPeer: (peer: { toString: () => string }) => options.blocked!.has(peer.toString()),
            denyInboundEncryptedConnection: (peer: { toString: () => string }) => options.blocked!.has(peer.toString()),
            denyOutboundEncryptedConnection: (peer: { toString: () => string }) => options.blocked!.has(peer.toString())
          })
    },
    connectionManager: { maxConnections: 300 },
    ...(options.connectionPingIntervalMs === undefined ? {} : { connectionMonitor: { pingInterval: options.connectionPingIntervalMs } }),
    services: {
      identify: identify(),
      // IDONTWANT (gossipsub 1.2) saves resending large messages; for meshkv's small announcements and feed
      // batches it was one more message per message received.
      pubsub: gossipsub({ emitSelf: false, allowPublishToZeroTopicPeers: true, idontwantMinDataSize: 16 * 1024 }),
      ...(options.relayServer === undefined
        ? {}
        : { relay: circuitRelayServer({ reservations: { maxReservations: options.relayServer.maxReservations } }) })
    }
  })
}

export type MeshLibp2p = Awaited<ReturnType<typeof createMeshLibp2p>>
