/**
 * meshkv's public API, identical in browsers and Node: createPeer and its types, the error classes, and the
 * storage engine with its adapters. Node-only pieces (TCP, the file WAL, a data-directory createPeer) are in
 * `meshkv/node`; the HTTP client is `meshkv/client`.
 */
import './polyfills.js'

export { createPeer, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, type Peer, type PeerEvents, type CreatePeerOptions, type PeerOptions, type LeaveOptions, type Placement } from './peer.js'
export type { GetResult, PutResult, ReadOptions, WriteOptions as PeerWriteOptions, SiblingView, ReplicaView } from './core/kv/node.js'
export { type KvConfig, defaultKvConfig } from './core/kv/config.js'
export { type ListOptions, type ListResult, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from './core/kv/listing.js'
export { type SwimConfig, defaultSwimConfig, browserSwimConfig } from './core/membership/config.js'
export type { MemberView } from './core/membership/swim.js'
export type { ServiceView, Meta } from './core/kv/heartbeat.js'
export type { WatchEvent } from './services/watch.js'
export type { PeerInfo } from './services/peer-info.js'

export * from './core/errors.js'
export * from './core/env.js'
export * from './core/config.js'
export { Emitter } from './core/emitter.js'
export { type VersionVector, type Ordering, vvCompare, vvDescends, vvMerge, vvEquals, vvGet, vvFrom, EMPTY_VV } from './core/version/vv.js'
export { type Hlc, HybridClock, compareHlc } from './core/version/hlc.js'
export { type KeyState, type Sibling, type Write, update, sync, contextOf, valuesOf, isDeleted, stateEquals, EMPTY_STATE } from './core/version/dvv.js'
export { encodeContext, decodeContext, type CausalContext, CONTEXT_ENTRIES_MAX, COUNTER_MAX, REPLICA_ID_BYTES_MAX } from './core/version/context.js'
export { Ring, type RingMember, type RingHash, type PreferenceEntry, type Role, RING_SIZE, SEGMENT_COUNT, SEGMENT_SPAN, DEFAULT_VNODES, segmentOf, segmentRange } from './core/ring/ring.js'
export { positionFromHash64, ringHashFrom } from './core/ring/hash.js'
export type { WalAdapter, WalListing } from './core/storage/wal-adapter.js'
export { Wal, type RecoveryReport, type Damage, type WalOptions, DEFAULT_WAL_OPTIONS } from './core/storage/wal.js'
export { StorageEngine, type EngineOptions, type ReadResult, type WriteOptions, type WriteResult, type MergeResult, type ExpiredEvent, type WarningEvent, type EngineStats } from './core/storage/engine.js'
export { MemoryWal, MemoryVolume } from './adapters/wal-memory.js'
export { IndexedDbWal, type IndexedDbWalOptions } from './adapters/wal-indexeddb.js'
export { loadRingHash, loadHash64 } from './adapters/hash-xxhash.js'
export { cryptoRng } from './adapters/random.js'
