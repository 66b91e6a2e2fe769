/**
 * `meshkv/node`: everything in `meshkv`, plus what only Node has — the TCP transport, the file-backed WAL,
 * and a createPeer that keeps its identity and data in a directory, as `node node/peer.js` does.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { tcp } from '@libp2p/tcp'
import { lockDirectory } from './adapters/dir-lock.js'
import { storeBudgetDefaultBytes } from './adapters/node-env.js'
import { loadOrCreateKey, nextIncarnation } from './adapters/node-identity.js'
import { FileWal } from './adapters/wal-file.js'
import { type CreatePeerOptions, type Peer, createMeshPeer, peerOptionsFrom } from './peer.js'

export * from './index.js'
export { FileWal, type FileWalOptions } from './adapters/wal-file.js'
export { consoleLogger, systemClock } from './adapters/node-env.js'

/** The transports a Node peer adds to the ones every platform has (WebSockets, WebRTC, circuit relay). */
export function nodeTransports (): NonNullable<CreatePeerOptions['extraTransports']> {
  return [tcp()]
}

export interface NodePeerOptions extends CreatePeerOptions {
  /**
   * A directory for the peer's identity key (`peer.key`), its last incarnation and its write-ahead log
   * (`wal/`), locked while the peer runs (one peer per directory; a second start gets LockedError). A peer
   * restarted on the same directory comes back as itself with its data, and is `durable` by default.
   * Without one (and without `wal`): a new identity each start, the store in memory only, not durable.
   */
  dataDir?: string
}

/**
 * createPeer for Node: as `meshkv`'s, with TCP added (`extraTransports` are appended to it), listening on
 * TCP and WebSockets on 127.0.0.1 at free ports unless `listen` says otherwise, located at this host's
 * name unless `location` says otherwise, keeping identity and data in `dataDir` when given, and with the
 * store's memory budget (`storage.memoryBytesMax`) at half of V8's heap limit unless set.
 */
export async function createPeer (options: NodePeerOptions = {}): Promise<Peer> {
  const { dataDir, ...rest } = options
  let unlock = (): void => {}
  const fromDir: CreatePeerOptions = {}
  if (dataDir !== undefined) {
    fs.mkdirSync(dataDir, { recursive: true })
    unlock = lockDirectory(dataDir)
    try {
      fromDir.privateKey = options.privateKey ?? await loadOrCreateKey(path.join(dataDir, 'peer.key'))
      fromDir.incarnation = options.incarnation ?? nextIncarnation(path.join(dataDir, 'incarnation'))
      fromDir.wal = options.wal ?? new FileWal(path.join(dataDir, 'wal'))
    } catch (error) {
      unlock()
      throw error
    }
  }
  let peer: Peer
  try {
    peer = await createMeshPeer(await peerOptionsFrom({
      kind: 'node',
      listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'],
      location: os.hostname(),
      ...rest,
      // The CLI's default budget: half of V8's heap limit (see --memory-max-mb).
      storage: { memoryBytesMax: storeBudgetDefaultBytes(), ...options.storage },
      ...fromDir,
      extraTransports: [...nodeTransports(), ...(options.extraTransports ?? [])]
    }))
  } catch (error) {
    unlock()
    throw error
  }
  // The directory stays locked until the peer has stopped, however it stops.
  const { stop, leave } = peer
  return Object.assign(peer, {
    stop: async () => { try { await stop() } finally { unlock() } },
    leave: async (opts?: Parameters<Peer['leave']>[0]) => { try { return await leave(opts) } finally { unlock() } }
  })
}
