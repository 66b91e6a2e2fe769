/**
 * meshkv's public API, identical in browsers and Node. Node-only pieces (the file WAL) are exported from
 * `meshkv/node`.
 */
import './polyfills.js'

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
