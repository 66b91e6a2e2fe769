/**
 * The causal context: the version vector a client gets from `get` and hands back to `put`/`delete` so the
 * write supersedes exactly what it saw, plus the newest hybrid-logical-clock timestamp the read saw. The
 * coordinator of the next write observes that timestamp, so the write is stamped after everything it
 * causally follows even when the coordinator has not yet received those values and its clock lags; without
 * it a last-writer-wins floor could drop the very write that superseded it (found in review).
 *
 * To the client it is an opaque base64url string (safe in an HTTP header); inside: a format byte, the
 * vector's entries, then the timestamp (or none). Decoding validates everything — entry count, id length,
 * ordering, counters — because a context comes from outside and must never corrupt a stored version.
 */
import { Reader, Writer, base64urlDecode, base64urlEncode } from '../codec.js'
import { DecodeError, InvalidContextError } from '../errors.js'
import type { Hlc } from './hlc.js'
import { type VersionVector, vvEntries, vvSize } from './vv.js'

export interface CausalContext {
  readonly vv: VersionVector
  /** The newest write timestamp the read saw, or null. */
  readonly ts: Hlc | null
}

const FORMAT = 1

/** Most entries a context may carry: a key is written through its N replicas and a few fallbacks. */
export const CONTEXT_ENTRIES_MAX = 64
/**
 * Largest counter a context may carry. A replica never issues 2^48 writes to one key; the headroom below
 * 2^53 keeps every counter derived from a context (counter + 1) exactly representable and decodable.
 */
export const COUNTER_MAX = 2 ** 48
/** Longest replica id in bytes (libp2p peer ids are 52 characters). */
export const REPLICA_ID_BYTES_MAX = 128
/** Longest encoded context in characters: what CONTEXT_ENTRIES_MAX entries of the longest ids take. */
export const CONTEXT_CHARS_MAX = Math.ceil((2 + CONTEXT_ENTRIES_MAX * (2 + REPLICA_ID_BYTES_MAX + 8)) * 4 / 3)

export function encodeContext (vv: VersionVector, ts: Hlc | null = null): string {
  const w = new Writer(32 + vv.length * 32)
  w.u8(FORMAT).varint(vvSize(vv))
  for (const [id, n] of vvEntries(vv)) w.string(id).varint(n)
  if (ts === null) w.u8(0)
  else w.u8(1).varint(ts.wall).varint(ts.logical)
  return base64urlEncode(w.finish())
}

/** Hybrid clock bounds a context's timestamp must respect (the wall part is milliseconds since 1970). */
const WALL_MAX = 2 ** 47
const LOGICAL_MAX = 2 ** 32

export function decodeContext (encoded: string): CausalContext {
  if (typeof encoded !== 'string') throw new InvalidContextError('not a string')
  if (encoded.length === 0) return { vv: [] as VersionVector, ts: null }
  if (encoded.length > CONTEXT_CHARS_MAX) throw new InvalidContextError(`longer than ${CONTEXT_CHARS_MAX} characters`)
  try {
    const r = new Reader(base64urlDecode(encoded, 'context'), 'context')
    const format = r.u8()
    if (format !== FORMAT) throw new InvalidContextError(`unknown format ${format}`)
    const count = r.varint()
    if (count > CONTEXT_ENTRIES_MAX) throw new InvalidContextError(`${count} entries exceed the limit of ${CONTEXT_ENTRIES_MAX}`)
    const vv: Array<string | number> = []
    let previous: string | undefined
    for (let i = 0; i < count; i++) {
      const id = r.string(REPLICA_ID_BYTES_MAX)
      const n = r.varint()
      if (id.length === 0) throw new InvalidContextError('empty replica id')
      if (n === 0) throw new InvalidContextError(`zero counter for ${id}`)
      if (n > COUNTER_MAX) throw new InvalidContextError(`counter ${n} for ${id} exceeds ${COUNTER_MAX}`)
      if (previous !== undefined && id <= previous) throw new InvalidContextError('entries not in strictly ascending id order')
      vv.push(id, n)
      previous = id
    }
    const hasTs = r.u8()
    let ts: Hlc | null = null
    if (hasTs === 1) {
      const wall = r.varint()
      const logical = r.varint()
      if (wall > WALL_MAX || logical > LOGICAL_MAX) throw new InvalidContextError('timestamp out of range')
      ts = { wall, logical }
    } else if (hasTs !== 0) throw new InvalidContextError('bad timestamp flag')
    r.end()
    return { vv: vv as VersionVector, ts }
  } catch (error) {
    if (error instanceof DecodeError) throw new InvalidContextError(error.reason)
    throw error
  }
}
