/**
 * Wire format of /meshkv/kv/1.0.0 and /meshkv/sync/1.0.0. A stream carries length-prefixed frames; a frame
 * holds one or more messages (messages queued for a peer while a frame is being written go out together,
 * DESIGN.md §7); each message is a request or the reply to one, matched by request id:
 *
 *   frame   = count | (length | message)*
 *   message = kind (1 request, 2 reply) | id | type | body
 *
 * Key states use the storage record layout (records.ts). Every decode is bounded by the limits passed in
 * and by the bytes present; anything malformed throws DecodeError.
 */
import { Reader, Writer } from '../codec.js'
import { DecodeError } from '../errors.js'
import { readSharedValue, readState, writeState } from '../storage/records.js'
import { isHeartbeatKey } from './heartbeat.js'
import { CONTEXT_ENTRIES_MAX, REPLICA_ID_BYTES_MAX } from '../version/context.js'
import type { KeyState } from '../version/dvv.js'
import type { Hlc } from '../version/hlc.js'
import type { VersionVector } from '../version/vv.js'

export interface Entry {
  readonly key: string
  readonly ttlMs: number
  readonly state: KeyState
}

export type KvRequest =
  /** Replica write: merge these states (replication, read repair, handoff, anti-entropy push). */
  | { readonly type: 'merge'; readonly entries: readonly Entry[] }
  /** Replica read of one key. */
  | { readonly type: 'read'; readonly key: string }
  /** Coordinate a client put (value) or delete (null) for a peer that is not a replica of the key. */
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array | null; readonly context: VersionVector; readonly ts: Hlc | null; readonly lww: boolean; readonly ttlMs: number; readonly w: number; readonly dw: number; readonly strict: boolean }
  /** Coordinate a client get. */
  | { readonly type: 'get'; readonly key: string; readonly r: number; readonly strict: boolean }
  /** Anti-entropy: the root of the sender's hash tree over `segments` (keys both peers replicate). */
  | { readonly type: 'sync-root'; readonly segments: readonly number[]; readonly root: number }
  /** Anti-entropy: the sender's segment hashes (2 numbers per segment). */
  | { readonly type: 'sync-leaves'; readonly segments: readonly number[]; readonly hashes: readonly number[] }
  /** Send me these keys' states. */
  | { readonly type: 'pull'; readonly keys: readonly string[] }
  /** Every primary holds this tombstone and its grace period passed: remove it if your state is exactly this. */
  | { readonly type: 'reap'; readonly key: string; readonly state: KeyState }
  /** What the dashboard shows of a peer: keys held, log size, counters, latencies (a JSON reply). */
  | { readonly type: 'info' }
  /** The heartbeat services this replica holds (a JSON reply, of type 'info'). */
  | { readonly type: 'services' }
  /**
   * Listing: up to `limit` keys this replica holds that start with `prefix` and sort after `after` ('' from
   * the start), tombstones included, with their states stripped of values (kv/listing.ts).
   */
  | { readonly type: 'list'; readonly prefix: string; readonly after: string; readonly limit: number }
  /**
   * Before an expiry: this replica's state of the key, its TTL and whether its failure detector is degraded
   * (replication/expiry.ts). Answered with 'expiry-state'; a peer older than this type answers
   * ERR_UNSUPPORTED, and the asker falls back to 'read'.
   */
  | { readonly type: 'expiry-check'; readonly key: string }
  /**
   * A heartbeat that only refreshes its record (replication/refresh.ts): if you hold `key` in exactly the
   * version whose anti-entropy digest (kv/digest.ts) is `digest` ([hi, lo]), with TTL `ttlMs`, give it full
   * credits again, as of the coordinator's timestamp `ts`. Answered 'ok', or, if you did not refresh it (you
   * hold another version, or none, or another TTL, or `ts` is beyond the clock drift you accept), with
   * 'state': what you hold, and the coordinator writes the beat instead. A peer older than this type answers
   * ERR_UNSUPPORTED, and the beat is written too.
   */
  | { readonly type: 'refresh'; readonly key: string; readonly digest: readonly [number, number]; readonly ts: Hlc; readonly ttlMs: number }
  /** 'expiry-check', answered with 'beat-state': also when this replica last took a refresh of the key. */
  | { readonly type: 'beat-check'; readonly key: string }

export type KvReply =
  | { readonly type: 'ok' }
  | { readonly type: 'state'; readonly state: KeyState | null; readonly ttlMs: number }
  | { readonly type: 'put'; readonly state: KeyState; readonly acks: number }
  | { readonly type: 'get'; readonly state: KeyState | null; readonly replies: number }
  | { readonly type: 'sync-root'; readonly equal: boolean }
  /** Key digests (2 numbers per key) of the segments whose hashes differed; `truncated` if capped. */
  | { readonly type: 'digests'; readonly segments: readonly number[]; readonly keys: readonly string[]; readonly hashes: readonly number[]; readonly truncated: boolean }
  | { readonly type: 'entries'; readonly entries: readonly Entry[] }
  | { readonly type: 'error'; readonly code: string; readonly message: string; readonly acked: number; readonly required: number }
  | { readonly type: 'info'; readonly json: string }
  /** A listing page: keys ascending with their states (values emptied); `more` if further keys follow. */
  | { readonly type: 'keys'; readonly keys: readonly ListedKey[]; readonly more: boolean }
  /** The answer to 'expiry-check': what 'state' carries, and whether the replica's detector is degraded. */
  | { readonly type: 'expiry-state'; readonly state: KeyState | null; readonly ttlMs: number; readonly degraded: boolean }
  /** The answer to 'beat-check': what 'expiry-state' carries, and the wall-clock ms of the newest refresh the
   * replica took while the key had its TTL (0: none). */
  | { readonly type: 'beat-state'; readonly state: KeyState | null; readonly ttlMs: number; readonly degraded: boolean; readonly refreshedWall: number }

/** A key in a listing page, with its state on that replica (every value replaced by an empty one). */
export interface ListedKey {
  readonly key: string
  readonly state: KeyState
}

/** Most keys one listing page carries (requests asking for more are refused; replies with more are
 * malformed). The HTTP and library bound on `limit` (kv/listing.ts LIST_LIMIT_MAX) is this. */
export const LIST_PAGE_KEYS_MAX = 1000

export interface WireLimits {
  keyBytesMax: number
  valueBytesMax: number
}

const KIND_REQUEST = 1
const KIND_REPLY = 2

// New types go at the end: a type's number is its index, and must mean the same on every version.
const REQUEST_TYPES = ['merge', 'read', 'put', 'get', 'sync-root', 'sync-leaves', 'pull', 'reap', 'info', 'services', 'list', 'expiry-check', 'refresh', 'beat-check'] as const
const REPLY_TYPES = ['ok', 'state', 'put', 'get', 'sync-root', 'digests', 'entries', 'error', 'info', 'keys', 'expiry-state', 'beat-state'] as const
const SEGMENTS_MAX = 1024
const ERROR_TEXT_MAX = 4096
/** The largest JSON reply (peer figures, or a replica's list of heartbeat services). */
export const INFO_BYTES_MAX = 4 * 1024 * 1024

/** The error code a peer answers a request type it does not know with (an older version). */
export const ERR_UNSUPPORTED = 'ERR_UNSUPPORTED'

/** Whether a reply is a peer's refusal of a request type it does not know. */
export function isUnsupported (reply: KvReply): boolean {
  return reply.type === 'error' && reply.code === ERR_UNSUPPORTED
}

export type Decoded =
  | { readonly kind: 'request'; readonly id: number; readonly request: KvRequest }
  | { readonly kind: 'reply'; readonly id: number; readonly reply: KvReply }
  /** A request of a type this version does not know (from a newer peer): answer it ERR_UNSUPPORTED. */
  | { readonly kind: 'unsupported'; readonly id: number; readonly type: number }

function writeEntries (w: Writer, entries: readonly Entry[]): void {
  w.varint(entries.length)
  for (const e of entries) writeState(w.string(e.key).varint(e.ttlMs), e.state)
}

function readEntries (r: Reader, limits: WireLimits): Entry[] {
  const count = r.count()
  const entries: Entry[] = []
  for (let i = 0; i < count; i++) {
    const key = r.string(limits.keyBytesMax)
    const ttlMs = r.varint()
    // Heartbeat records repeat: their states share one copy of each value (readState's `share`).
    entries.push({ key, ttlMs, state: readState(r, limits.valueBytesMax, false, isHeartbeatKey(key)) })
  }
  return entries
}

function writeNumbers (w: Writer, values: readonly number[]): void {
  w.varint(values.length)
  for (const v of values) w.varint(v)
}

function readNumbers (r: Reader, max: number): number[] {
  const count = r.count()
  if (count > max) throw new DecodeError('kv message', `${count} numbers exceed ${max}`)
  const out = new Array<number>(count)
  for (let i = 0; i < count; i++) out[i] = r.varint()
  return out
}

function readSegments (r: Reader): number[] {
  const segments = readNumbers(r, SEGMENTS_MAX)
  for (const s of segments) if (s >= SEGMENTS_MAX) throw new DecodeError('kv message', `segment ${s} out of range`)
  return segments
}

function writeStrings (w: Writer, values: readonly string[]): void {
  w.varint(values.length)
  for (const v of values) w.string(v)
}

function readStrings (r: Reader, maxBytes: number): string[] {
  const count = r.count()
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(r.string(maxBytes))
  return out
}

function writeVv (w: Writer, vv: VersionVector): void {
  w.varint(vv.length >> 1)
  for (let i = 0; i < vv.length; i += 2) w.string(vv[i] as string).varint(vv[i + 1] as number)
}

function readVv (r: Reader): VersionVector {
  const count = r.count()
  if (count > CONTEXT_ENTRIES_MAX) throw new DecodeError('kv message', `context of ${count} entries exceeds ${CONTEXT_ENTRIES_MAX}`)
  const vv = new Array<string | number>(count * 2)
  for (let i = 0; i < count * 2; i += 2) {
    vv[i] = r.string(REPLICA_ID_BYTES_MAX)
    vv[i + 1] = r.varint()
    if ((i > 0 && (vv[i] as string) <= (vv[i - 2] as string)) || vv[i + 1] === 0) throw new DecodeError('kv message', 'context not in canonical form')
  }
  return vv as VersionVector
}

export function encodeRequest (w: Writer, id: number, req: KvRequest): Uint8Array {
  w.reset()
  w.u8(KIND_REQUEST).varint(id).u8(REQUEST_TYPES.indexOf(req.type))
  switch (req.type) {
    case 'merge': writeEntries(w, req.entries); break
    case 'read': w.string(req.key); break
    case 'put':
      w.string(req.key).u8((req.value === null ? 1 : 0) | (req.lww ? 2 : 0) | (req.strict ? 4 : 0) | (req.ts === null ? 0 : 8))
      if (req.value !== null) w.bytes(req.value)
      writeVv(w, req.context)
      if (req.ts !== null) w.varint(req.ts.wall).varint(req.ts.logical)
      w.varint(req.ttlMs).varint(req.w).varint(req.dw)
      break
    case 'get': w.string(req.key).varint(req.r).u8(req.strict ? 1 : 0); break
    case 'sync-root': writeNumbers(w, req.segments); w.varint(req.root); break
    case 'sync-leaves': writeNumbers(w, req.segments); writeNumbers(w, req.hashes); break
    case 'pull': writeStrings(w, req.keys); break
    case 'reap': writeState(w.string(req.key), req.state); break
    case 'info': break
    case 'services': break
    case 'list': w.string(req.prefix).string(req.after).varint(req.limit); break
    case 'expiry-check': w.string(req.key); break
    case 'refresh': w.string(req.key).varint(req.digest[0]).varint(req.digest[1]).varint(req.ts.wall).varint(req.ts.logical).varint(req.ttlMs); break
    case 'beat-check': w.string(req.key); break
  }
  return w.finish().slice()
}

export function encodeReply (w: Writer, id: number, reply: KvReply): Uint8Array {
  w.reset()
  w.u8(KIND_REPLY).varint(id).u8(REPLY_TYPES.indexOf(reply.type))
  switch (reply.type) {
    case 'ok': break
    case 'state':
    case 'get':
      if (reply.state === null) w.u8(0)
      else writeState(w.u8(1), reply.state)
      w.varint(reply.type === 'state' ? reply.ttlMs : reply.replies)
      break
    case 'put': writeState(w, reply.state).varint(reply.acks); break
    case 'sync-root': w.u8(reply.equal ? 1 : 0); break
    case 'digests': writeNumbers(w, reply.segments); writeStrings(w, reply.keys); writeNumbers(w, reply.hashes); w.u8(reply.truncated ? 1 : 0); break
    case 'entries': writeEntries(w, reply.entries); break
    case 'error': w.string(reply.code.slice(0, 64)).string(reply.message.slice(0, 1000)).varint(reply.acked).varint(reply.required); break
    case 'info': w.string(reply.json.length * 3 > INFO_BYTES_MAX ? '{}' : reply.json); break
    case 'keys':
      w.varint(reply.keys.length)
      for (const k of reply.keys) writeState(w.string(k.key), k.state)
      w.u8(reply.more ? 1 : 0)
      break
    case 'expiry-state':
    case 'beat-state':
      if (reply.state === null) w.u8(0)
      else writeState(w.u8(1), reply.state)
      w.varint(reply.ttlMs).u8(reply.degraded ? 1 : 0)
      if (reply.type === 'beat-state') w.varint(reply.refreshedWall)
      break
  }
  return w.finish().slice()
}

function readOptionalState (r: Reader, limits: WireLimits): KeyState | null {
  return r.u8() === 1 ? readState(r, limits.valueBytesMax) : null
}

function decodeRequestBody (r: Reader, type: typeof REQUEST_TYPES[number], limits: WireLimits): KvRequest {
  switch (type) {
    case 'merge': return { type, entries: readEntries(r, limits) }
    case 'read': return { type, key: r.string(limits.keyBytesMax) }
    case 'put': {
      const key = r.string(limits.keyBytesMax)
      const flags = r.u8()
      // A copy, not a view (records.ts); a heartbeat record shares an equal one decoded just before.
      const value = (flags & 1) !== 0 ? null : isHeartbeatKey(key) ? readSharedValue(r, limits.valueBytesMax) : r.bytesCopy(limits.valueBytesMax)
      const context = readVv(r)
      const ts = (flags & 8) !== 0 ? { wall: r.varint(), logical: r.varint() } : null
      return { type, key, value, context, ts, lww: (flags & 2) !== 0, strict: (flags & 4) !== 0, ttlMs: r.varint(), w: r.varint(), dw: r.varint() }
    }
    case 'get': return { type, key: r.string(limits.keyBytesMax), r: r.varint(), strict: r.u8() === 1 }
    case 'sync-root': return { type, segments: readSegments(r), root: r.varint() }
    case 'sync-leaves': {
      const segments = readSegments(r)
      const hashes = readNumbers(r, SEGMENTS_MAX * 2)
      if (hashes.length !== segments.length * 2) throw new DecodeError('kv message', 'segment hashes do not match segments')
      return { type, segments, hashes }
    }
    case 'pull': return { type, keys: readStrings(r, limits.keyBytesMax) }
    case 'reap': return { type, key: r.string(limits.keyBytesMax), state: readState(r, limits.valueBytesMax) }
    case 'info': return { type }
    case 'services': return { type }
    case 'list': {
      const prefix = r.string(limits.keyBytesMax)
      const after = r.string(limits.keyBytesMax)
      const limit = r.varint()
      if (limit < 1 || limit > LIST_PAGE_KEYS_MAX) throw new DecodeError('kv message', `list limit ${limit} outside [1, ${LIST_PAGE_KEYS_MAX}]`)
      return { type, prefix, after, limit }
    }
    case 'expiry-check': return { type, key: r.string(limits.keyBytesMax) }
    case 'refresh': {
      const key = r.string(limits.keyBytesMax)
      const digest = [r.varint(), r.varint()] as const
      if (digest[0] > 0xffffffff || digest[1] > 0xffffffff) throw new DecodeError('kv message', 'a digest half over 32 bits')
      const ts = { wall: r.varint(), logical: r.varint() }
      const ttlMs = r.varint()
      if (ttlMs === 0) throw new DecodeError('kv message', 'a refresh of a key without a TTL')
      return { type, key, digest, ts, ttlMs }
    }
    case 'beat-check': return { type, key: r.string(limits.keyBytesMax) }
  }
}

function decodeReplyBody (r: Reader, type: typeof REPLY_TYPES[number], limits: WireLimits): KvReply {
  switch (type) {
    case 'ok': return { type }
    case 'state': return { type, state: readOptionalState(r, limits), ttlMs: r.varint() }
    case 'get': return { type, state: readOptionalState(r, limits), replies: r.varint() }
    case 'put': return { type, state: readState(r, limits.valueBytesMax), acks: r.varint() }
    case 'sync-root': return { type, equal: r.u8() === 1 }
    case 'digests': {
      const segments = readSegments(r)
      const keys = readStrings(r, limits.keyBytesMax)
      const hashes = readNumbers(r, Number.MAX_SAFE_INTEGER)
      if (hashes.length !== keys.length * 2) throw new DecodeError('kv message', 'key digests do not match keys')
      return { type, segments, keys, hashes, truncated: r.u8() === 1 }
    }
    case 'entries': return { type, entries: readEntries(r, limits) }
    case 'error': return { type, code: r.string(ERROR_TEXT_MAX), message: r.string(ERROR_TEXT_MAX), acked: r.varint(), required: r.varint() }
    case 'info': return { type, json: r.string(INFO_BYTES_MAX) }
    case 'keys': {
      const count = r.count()
      if (count > LIST_PAGE_KEYS_MAX) throw new DecodeError('kv message', `${count} listed keys exceed ${LIST_PAGE_KEYS_MAX}`)
      const keys: ListedKey[] = []
      let previous = ''
      for (let i = 0; i < count; i++) {
        const key = r.string(limits.keyBytesMax)
        // Strictly ascending: the merge relies on it (kv/listing.ts).
        if (i > 0 && key <= previous) throw new DecodeError('kv message', 'listed keys not in ascending order')
        previous = key
        keys.push({ key, state: readState(r, limits.valueBytesMax) })
      }
      const more = r.u8() === 1
      // More to come after nothing: the merge could not tell where this replica's page ends.
      if (more && count === 0) throw new DecodeError('kv message', 'an empty listing page cannot have more')
      return { type, keys, more }
    }
    case 'expiry-state':
    case 'beat-state': {
      // Strict where 'state' is lenient (a newer type has no old encoders to stay compatible with): the
      // presence and degraded flags are 0 or 1, and a key held nowhere has no TTL nor refresh.
      const present = r.u8()
      if (present > 1) throw new DecodeError('kv message', `state flag ${present} is not 0 or 1`)
      const state = present === 1 ? readState(r, limits.valueBytesMax) : null
      const ttlMs = r.varint()
      if (state === null && ttlMs !== 0) throw new DecodeError('kv message', 'a TTL for a key the replica does not hold')
      const degraded = r.u8()
      if (degraded > 1) throw new DecodeError('kv message', `degraded flag ${degraded} is not 0 or 1`)
      if (type === 'expiry-state') return { type, state, ttlMs, degraded: degraded === 1 }
      const refreshedWall = r.varint()
      if (refreshedWall !== 0 && ttlMs === 0) throw new DecodeError('kv message', 'a refresh of a key without a TTL')
      return { type, state, ttlMs, degraded: degraded === 1, refreshedWall }
    }
  }
}

export function decodeMessage (bytes: Uint8Array, limits: WireLimits): Decoded {
  const r = new Reader(bytes, 'kv message')
  const kind = r.u8()
  const id = r.varint()
  const t = r.u8()
  if (kind === KIND_REQUEST) {
    const type = REQUEST_TYPES[t]
    // Not malformed, just newer than this peer: the frame delimits the message, so its body can be left
    // unread and the request refused with a typed error, instead of resetting a stream that other requests
    // share (a peer before this rule did reset it).
    if (type === undefined) return { kind: 'unsupported', id, type: t }
    const request = decodeRequestBody(r, type, limits)
    r.end()
    return { kind: 'request', id, request }
  }
  if (kind === KIND_REPLY) {
    const type = REPLY_TYPES[t]
    if (type === undefined) throw new DecodeError('kv message', `unknown reply type ${t}`)
    const reply = decodeReplyBody(r, type, limits)
    r.end()
    return { kind: 'reply', id, reply }
  }
  throw new DecodeError('kv message', `unknown message kind ${kind}`)
}

/** One frame from encoded messages (each already a standalone byte array). */
export function encodeFrame (w: Writer, messages: readonly Uint8Array[]): Uint8Array {
  w.reset()
  w.varint(messages.length)
  for (const m of messages) w.bytes(m)
  return w.finish()
}

/** Splits a frame into its messages (views into `frame`). */
export function splitFrame (frame: Uint8Array, messageBytesMax: number): Uint8Array[] {
  const r = new Reader(frame, 'kv frame')
  const count = r.count()
  const out: Uint8Array[] = []
  for (let i = 0; i < count; i++) out.push(r.bytes(messageBytesMax))
  r.end()
  return out
}

/** Parses the JSON a message carries (info and services replies); DecodeError if it is not JSON. */
export function parseJson (json: string, what: string): unknown {
  try {
    return JSON.parse(json)
  } catch {
    throw new DecodeError(what, 'not JSON')
  }
}
