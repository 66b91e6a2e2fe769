/**
 * What the storage engine writes into the log: one record per change of a key, holding the key's whole new
 * state (not the operation), so replay is "last record for a key wins" — idempotent, independent of the
 * code that produced it, and the same encoding serves snapshots.
 *
 *   put    = 0x01 | key | ttlMs | vv count | (replicaId, counter)* | sibling count | sibling* | floor
 *   floor  = 0x00 (none) | 0x01 replicaId | counter | hlc wall | hlc logical   (the lww floor, dvv.ts)
 *   sibling = replicaId | counter | flags (1 tombstone, 2 lww) | hlc wall | hlc logical | value (if not tombstone)
 *   remove = 0x02 | key                (expired by TTL or tombstone reaped)
 *   lease  = 0x03 | key "" | counter   (dot-counter lease: this replica issues no dot at or above counter
 *                                        before a newer lease is durable; see StorageEngine.writeLocal)
 *
 * Strings and byte strings are varint-length-prefixed (codec.ts).
 */
import { Reader, Writer } from '../codec.js'
import { DecodeError } from '../errors.js'
import { REPLICA_ID_BYTES_MAX } from '../version/context.js'
import type { KeyState, LwwFloor, Sibling } from '../version/dvv.js'
import { type VersionVector, vvCovers } from '../version/vv.js'

export const RECORD_PUT = 1
export const RECORD_REMOVE = 2
export const RECORD_DOT_LEASE = 3

const FLAG_TOMBSTONE = 1
const FLAG_LWW = 2

export type StorageRecord =
  | { type: typeof RECORD_PUT; key: string; ttlMs: number; state: KeyState }
  | { type: typeof RECORD_REMOVE; key: string }
  | { type: typeof RECORD_DOT_LEASE; key: ''; lease: number }

export interface RecordLimits {
  keyBytesMax: number
  valueBytesMax: number
}

export function encodePut (w: Writer, key: string, ttlMs: number, state: KeyState): Uint8Array {
  w.reset()
  w.u8(RECORD_PUT).string(key).varint(ttlMs)
  return writeState(w, state).finish()
}

/** Appends a key state in the record layout (also the wire layout of replication messages). */
export function writeState (w: Writer, state: KeyState): Writer {
  const vv = state.vv
  w.varint(vv.length >> 1)
  for (let i = 0; i < vv.length; i += 2) w.string(vv[i] as string).varint(vv[i + 1] as number)
  w.varint(state.siblings.length)
  for (const s of state.siblings) {
    w.string(s.id).varint(s.n).u8((s.value === null ? FLAG_TOMBSTONE : 0) | (s.lww ? FLAG_LWW : 0)).varint(s.wall).varint(s.logical)
    if (s.value !== null) w.bytes(s.value)
  }
  const f = state.lwwFloor
  if (f === null) w.u8(0)
  else w.u8(1).string(f.id).varint(f.n).varint(f.wall).varint(f.logical)
  return w
}

export function encodeRemove (w: Writer, key: string): Uint8Array {
  w.reset()
  return w.u8(RECORD_REMOVE).string(key).finish()
}

export function encodeDotLease (w: Writer, lease: number): Uint8Array {
  w.reset()
  return w.u8(RECORD_DOT_LEASE).string('').varint(lease).finish()
}

/** Decodes one record. Values are copied out of `payload`, so the caller may release the buffer. */
export function decodeRecord (payload: Uint8Array, limits: RecordLimits): StorageRecord {
  const r = new Reader(payload, 'storage record')
  const type = r.u8()
  const key = r.string(limits.keyBytesMax)
  if (type === RECORD_REMOVE) {
    r.end()
    return { type, key }
  }
  if (type === RECORD_DOT_LEASE) {
    if (key !== '') throw new DecodeError('storage record', 'a lease record has a key')
    const lease = r.varint()
    r.end()
    return { type, key, lease }
  }
  if (type !== RECORD_PUT) throw new DecodeError('storage record', `unknown record type ${type}`)
  const ttlMs = r.varint()
  const state = readState(r, limits.valueBytesMax)
  r.end()
  return { type, key, ttlMs, state }
}

/**
 * Decodes records in place from a read buffer, one at a time, for recovery: `key()` first, then either
 * `rest()` (the record's TTL and state, values copied out) or, for a record a newer one superseded,
 * `skim()`, which only finds its newest timestamp and allocates nothing.
 */
export class RecordDecoder {
  private readonly r = new Reader(new Uint8Array(0), 'storage record')
  type = 0

  constructor (private readonly limits: RecordLimits) {}

  /** Starts on the record `bytes[start, end)` and returns its key. */
  key (bytes: Uint8Array, start: number, end: number): string {
    const r = this.r.reset(bytes, start, end)
    this.type = r.u8()
    if (this.type !== RECORD_PUT && this.type !== RECORD_REMOVE && this.type !== RECORD_DOT_LEASE) throw new DecodeError('storage record', `unknown record type ${this.type}`)
    return r.string(this.limits.keyBytesMax)
  }

  /** The rest of a put record, whose checksum verified (so its state is read as trusted). */
  rest (): { ttlMs: number; state: KeyState } {
    const ttlMs = this.r.varint()
    const state = readState(this.r, this.limits.valueBytesMax, true)
    this.r.end()
    return { ttlMs, state }
  }

  /** Checks that a remove record ends after its key. */
  endRemove (): void { this.r.end() }

  /** The counter of a lease record. */
  lease (): number {
    const lease = this.r.varint()
    this.r.end()
    return lease
  }

  /**
   * Raises `into` to the newest sibling timestamp of the rest of a put record that is at most `into.limit`
   * (later ones are counted in `into.rejected`, as HybridClock.observe would reject them).
   */
  skim (into: NewestTs): void {
    const r = this.r
    r.varint() // ttl
    const vvCount = r.count()
    for (let i = 0; i < vvCount; i++) { r.skipBytes(REPLICA_ID_BYTES_MAX); r.varint() }
    const siblingCount = r.count()
    for (let i = 0; i < siblingCount; i++) {
      r.skipBytes(REPLICA_ID_BYTES_MAX)
      r.varint()
      const flags = r.u8()
      const wall = r.varint()
      const logical = r.varint()
      if ((flags & FLAG_TOMBSTONE) === 0) r.skipBytes(this.limits.valueBytesMax)
      raiseTs(into, wall, logical)
    }
  }
}

/** The newest timestamp seen that a clock would accept (wall at most `limit`), and how many it would not. */
export interface NewestTs { wall: number; logical: number; readonly limit: number; rejected: number }

export function raiseTs (into: NewestTs, wall: number, logical: number): void {
  if (wall > into.limit) into.rejected++
  else if (wall > into.wall || (wall === into.wall && logical > into.logical)) { into.wall = wall; into.logical = logical }
}

/**
 * Replica ids repeat in every key's state: decoding each afresh would keep 100,000 copies of the same few
 * strings for 100,000 keys. Bounded: once full, ids are no longer interned (decoding stays correct).
 */
const INTERN_MAX = 4096
/** Bounds on a decoded state, far above what a real key reaches (about N vector entries; siblingsMax is at
 * most 10,000): a forged count cannot make the decoder allocate more. */
export const VV_ENTRIES_MAX = 4096
export const SIBLINGS_MAX = 10_000
const interned = new Map<string, string>()

function intern (id: string): string {
  const hit = interned.get(id)
  if (hit !== undefined) return hit
  if (interned.size < INTERN_MAX) interned.set(id, id)
  return id
}

/**
 * The replica ids decoded most recently, with their bytes: a log's records (and a batch of replication
 * messages) name the same few ids over and over, and comparing bytes in place is cheaper than decoding a
 * string and looking it up. Small and fixed: entries are replaced round-robin.
 */
const RECENT_IDS = 8
const recentBytes: Uint8Array[] = []
const recentIds: string[] = []
let recentNext = 0
let recentHit = 0

function readId (r: Reader): string {
  const n = recentIds.length
  for (let k = 0; k < n; k++) {
    const i = (recentHit + k) % n
    if (r.peekBytesEqual(recentBytes[i]!)) {
      r.skipBytes(REPLICA_ID_BYTES_MAX)
      recentHit = i
      return recentIds[i]!
    }
  }
  const at = r.offset
  const bytes = r.bytesCopy(REPLICA_ID_BYTES_MAX)
  r.offset = at
  const id = intern(r.string(REPLICA_ID_BYTES_MAX))
  if (n < RECENT_IDS) { recentBytes.push(bytes); recentIds.push(id) } else {
    recentBytes[recentNext] = bytes
    recentIds[recentNext] = id
    recentNext = (recentNext + 1) % RECENT_IDS
  }
  return id
}

/**
 * Small values decoded most recently, for `readState(..., share)`: the records of heartbeat keys repeat (a
 * service's every beat carries the same few dozen bytes, and most services the same ones), so a state can
 * point at one shared copy instead of holding its own Uint8Array (about 340 bytes of heap each, for 42
 * bytes of value). Small and fixed: entries are replaced round-robin.
 */
const RECENT_VALUES = 4
export const SHARED_VALUE_BYTES_MAX = 128
const recentValues: Uint8Array[] = []
let recentValueNext = 0

export function readSharedValue (r: Reader, valueBytesMax: number): Uint8Array {
  for (const v of recentValues) {
    if (r.peekBytesEqual(v)) {
      r.skipBytes(valueBytesMax)
      return v
    }
  }
  const value = r.bytesCopy(valueBytesMax)
  if (value.length <= SHARED_VALUE_BYTES_MAX) {
    if (recentValues.length < RECENT_VALUES) recentValues.push(value)
    else { recentValues[recentValueNext] = value; recentValueNext = (recentValueNext + 1) % RECENT_VALUES }
  }
  return value
}

/**
 * Reads a key state written by writeState. Values are copied out of the buffer; with `share`, a small value
 * equal to one decoded just before is that same (never mutated) Uint8Array instead (readSharedValue): only
 * for the heartbeat records, whose values the peer copies before it hands them out (get(), placement, the
 * expired event: heartbeat.ts `detached`). Recovery does not share: after a restart each state holds its
 * own copy until the service's next beat replaces it. Counts are bounded by the
 * bytes left (each entry takes at least one byte), so a forged count cannot allocate more than the input.
 * `trusted` skips the canonical-form checks (sorted ids, dots within the history) for states this replica
 * wrote itself under a checksum that just verified, as recovery reads them: they were checked when they
 * were made. Bounds are checked either way.
 */
export function readState (r: Reader, valueBytesMax: number, trusted = false, share = false): KeyState {
  const vvCount = r.count()
  if (vvCount > VV_ENTRIES_MAX) throw new DecodeError('key state', `${vvCount} version vector entries exceed ${VV_ENTRIES_MAX}`)
  const vv = new Array<string | number>(vvCount * 2)
  for (let i = 0; i < vvCount * 2; i += 2) {
    const id = readId(r)
    const n = r.varint()
    // The invariants sync() relies on: ids strictly ascending, counters positive.
    if (!trusted && ((i > 0 && id <= (vv[i - 2] as string)) || n === 0)) throw new DecodeError('key state', 'version vector not in canonical form')
    vv[i] = id
    vv[i + 1] = n
  }
  const siblingCount = r.count()
  if (siblingCount > SIBLINGS_MAX) throw new DecodeError('key state', `${siblingCount} siblings exceed ${SIBLINGS_MAX}`)
  // Sized up front: a pushed-to array would keep spare capacity (about 17 slots) in every stored state.
  const siblings = new Array<Sibling>(siblingCount)
  for (let i = 0; i < siblingCount; i++) {
    const id = readId(r)
    const n = r.varint()
    const flags = r.u8()
    const wall = r.varint()
    const logical = r.varint()
    // A copy of exactly the value: a view (or a Node Buffer's slice(), which is a view too) would keep the
    // whole received frame or log chunk alive for as long as the value is stored.
    const value = (flags & FLAG_TOMBSTONE) !== 0 ? null : share ? readSharedValue(r, valueBytesMax) : r.bytesCopy(valueBytesMax)
    const prev = i > 0 ? siblings[i - 1] : undefined
    // Siblings strictly ascending by dot, each within the history.
    if (!trusted && ((prev !== undefined && (id < prev.id || (id === prev.id && n <= prev.n))) || !vvCovers(vv as VersionVector, id, n))) throw new DecodeError('key state', 'siblings not in canonical form')
    siblings[i] = { id, n, value, wall, logical, lww: (flags & FLAG_LWW) !== 0 }
  }
  let lwwFloor: LwwFloor | null = null
  if (r.u8() === 1) {
    const id = readId(r)
    const n = r.varint()
    lwwFloor = { id, n, wall: r.varint(), logical: r.varint() }
  }
  return { vv: vv as VersionVector, siblings, lwwFloor }
}
