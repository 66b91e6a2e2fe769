/**
 * Heartbeat records: meshkv as a failure detector (after KnucklesDB). A service writes
 * `heartbeat/<serviceId>` every few seconds with a TTL; the write is last-writer-wins by hybrid logical
 * clock, so a record never has siblings, and a rewrite replaces the key's single state in the log (which
 * compaction then keeps at one record per key). A record not refreshed within its TTL is expired by each
 * replica's second-chance sweep, which writes an "expired" record in its place — a replicated, versioned
 * write, so anti-entropy cannot bring the old beat back, and a later beat (newer by HLC) revives it.
 *
 * Records are small JSON: {"state":"alive","ttlMs":..,"meta":..} or
 * {"state":"expired","ttlMs":..,"meta":..,"lastBeat":<wall ms>,"replica":<peer that took the last beat>}.
 */
import { utf8Encode, utf8Length } from '../codec.js'
import { ConfigError, DecodeError, InvalidKeyError } from '../errors.js'
import { type KeyState, valuesOf } from '../version/dvv.js'
import { INFO_BYTES_MAX, parseJson } from './messages.js'

export const HEARTBEAT_PREFIX = 'heartbeat/'
/** Longest service id, UTF-8 bytes. */
export const SERVICE_ID_BYTES_MAX = 256
/** Largest metadata (as JSON), bytes. */
export const HEARTBEAT_META_BYTES_MAX = 4096
/** Shortest and default TTL of a heartbeat. */
export const HEARTBEAT_TTL_MS_MIN = 100
export const HEARTBEAT_TTL_MS_DEFAULT = 10_000

export type Meta = string | number | boolean | null | Meta[] | { [key: string]: Meta }

export interface ServiceView {
  readonly id: string
  readonly state: 'alive' | 'expired'
  /** Wall-clock ms of the last beat (by the coordinator's hybrid logical clock). */
  readonly lastBeat: number
  /** The peer that took the last beat that wrote the record (its coordinator); a beat that only refreshed
   * the record (replication/refresh.ts) moves `lastBeat` on, not this. */
  readonly replica: string
  readonly ttlMs: number
  readonly meta: Meta
}

export function serviceKey (serviceId: string): string {
  if (typeof serviceId !== 'string' || serviceId.length === 0) throw new InvalidKeyError('service id must be a non-empty string')
  const bytes = utf8Length(serviceId)
  if (bytes > SERVICE_ID_BYTES_MAX) throw new InvalidKeyError(`service id of ${bytes} bytes exceeds ${SERVICE_ID_BYTES_MAX}`, bytes, SERVICE_ID_BYTES_MAX)
  return HEARTBEAT_PREFIX + serviceId
}

export function isHeartbeatKey (key: string): boolean {
  return key.startsWith(HEARTBEAT_PREFIX)
}

/** Records without metadata, by TTL: shared by every beat of every service with that TTL (at most PLAIN_RECORDS_MAX TTLs). */
const plainRecords = new Map<number, Uint8Array>()
const PLAIN_RECORDS_MAX = 64

/**
 * A beat's record. Without metadata (the common case) it is one shared, never mutated Uint8Array per TTL:
 * the stored states of all such services point at it (see readState's `share` for the replicas' side).
 */
export function beatRecord (ttlMs: number, meta: Meta, ttlMsMax: number): Uint8Array {
  if (!Number.isInteger(ttlMs) || ttlMs < HEARTBEAT_TTL_MS_MIN || ttlMs > ttlMsMax) throw new ConfigError('ttlMs', `must be an integer in [${HEARTBEAT_TTL_MS_MIN}, ${ttlMsMax}], got ${String(ttlMs)}`)
  if (meta === null) {
    let record = plainRecords.get(ttlMs)
    if (record === undefined) {
      record = utf8Encode(JSON.stringify({ state: 'alive', ttlMs, meta: null }))
      if (plainRecords.size < PLAIN_RECORDS_MAX) plainRecords.set(ttlMs, record)
    }
    return record
  }
  const json = JSON.stringify({ state: 'alive', ttlMs, meta })
  if (json === undefined || utf8Length(json) > HEARTBEAT_META_BYTES_MAX + 64) throw new ConfigError('meta', `must be JSON of at most ${HEARTBEAT_META_BYTES_MAX} bytes`)
  return utf8Encode(json)
}

interface BeatRecord { state: 'alive' | 'expired'; ttlMs: number; meta: Meta; lastBeat?: number; replica?: string }

function parse (bytes: Uint8Array): BeatRecord | null {
  try {
    const o = JSON.parse(new TextDecoder().decode(bytes)) as Partial<BeatRecord>
    if (o === null || typeof o !== 'object' || (o.state !== 'alive' && o.state !== 'expired')) return null
    return { state: o.state, ttlMs: typeof o.ttlMs === 'number' ? o.ttlMs : 0, meta: o.meta ?? null, ...(typeof o.lastBeat === 'number' ? { lastBeat: o.lastBeat } : {}), ...(typeof o.replica === 'string' ? { replica: o.replica } : {}) }
  } catch {
    return null
  }
}

/**
 * The service a heartbeat key's state describes, or null if it holds no heartbeat record. `refreshedWall`:
 * the wall-clock ms of the newest refresh this replica knows of (replication/refresh.ts); the alive
 * service's last beat is the newer of it and the record's own timestamp.
 */
export function serviceOf (key: string, state: KeyState, refreshedWall = 0): ServiceView | null {
  if (!isHeartbeatKey(key)) return null
  const live = valuesOf(state)
  const newest = live[live.length - 1]
  if (newest === undefined) return null
  // With last-writer-wins there is one value; should plain writes have added siblings, the newest counts.
  const latest = live.reduce((a, b) => (b.wall > a.wall || (b.wall === a.wall && b.logical > a.logical) ? b : a), newest)
  const record = parse(latest.value!)
  if (record === null) return null
  const id = key.slice(HEARTBEAT_PREFIX.length)
  if (record.state === 'expired') return { id, state: 'expired', lastBeat: record.lastBeat ?? 0, replica: record.replica ?? '', ttlMs: record.ttlMs, meta: record.meta }
  return { id, state: 'alive', lastBeat: Math.max(latest.wall, refreshedWall), replica: latest.id, ttlMs: record.ttlMs, meta: record.meta }
}

/** What an expiring heartbeat key becomes (the engine's `expiredValue`); other keys become tombstones. */
export function expiredRecord (key: string, state: KeyState, refreshedWall = 0): Uint8Array | null | 'keep' {
  const service = serviceOf(key, state, refreshedWall)
  if (service?.state === 'expired') return 'keep'
  if (service === null) return null
  return utf8Encode(JSON.stringify({ state: 'expired', ttlMs: service.ttlMs, meta: service.meta, lastBeat: service.lastBeat, replica: service.replica }))
}

/**
 * The state as it may be handed to code outside the store: a heartbeat key's values are copied, since its
 * stored bytes are shared with other services' records (beatRecord, readState's `share`) and a caller could
 * change them in place. Other keys' states are returned as they are.
 */
export function detached (key: string, state: KeyState): KeyState {
  if (!isHeartbeatKey(key)) return state
  return { ...state, siblings: state.siblings.map(s => (s.value === null ? s : { ...s, value: s.value.slice() })) }
}

/** Whether a state is an expired heartbeat record. */
export function isExpiredService (key: string, state: KeyState | undefined): boolean {
  return state !== undefined && serviceOf(key, state)?.state === 'expired'
}

// ---------------------------------------------------------------- the services listing, across replicas

/** Services per `services` reply. */
export const SERVICES_REPLY_MAX = 20_000

/** As many services as fit the reply (by characters: at most 3 bytes each), as a JSON list. */
export function servicesJson (services: readonly ServiceView[]): string {
  const parts: string[] = []
  let chars = 2
  for (const s of services.slice(0, SERVICES_REPLY_MAX)) {
    const json = JSON.stringify(s)
    if (chars + json.length + 1 > INFO_BYTES_MAX / 3) break
    parts.push(json)
    chars += json.length + 1
  }
  return `[${parts.join(',')}]`
}

/** A remote services reply, checked: entries that are not services are skipped. */
export function parseServices (json: string): ServiceView[] {
  const raw = parseJson(json, 'services reply')
  if (!Array.isArray(raw)) throw new DecodeError('services reply', 'not a list')
  const out: ServiceView[] = []
  for (const o of raw.slice(0, SERVICES_REPLY_MAX) as Array<Record<string, unknown>>) {
    if (o === null || typeof o !== 'object' || typeof o.id !== 'string' || (o.state !== 'alive' && o.state !== 'expired') || typeof o.lastBeat !== 'number') continue
    out.push({ id: o.id, state: o.state, lastBeat: o.lastBeat, replica: typeof o.replica === 'string' ? o.replica : '', ttlMs: typeof o.ttlMs === 'number' ? o.ttlMs : 0, meta: (o.meta ?? null) as ServiceView['meta'] })
  }
  return out
}

/**
 * Merges replicas' lists of services into `into`, per service keeping the record with the newest beat, and
 * for the same beat an expiry over the alive record (the expiry was written after it).
 */
export function mergeServices (into: Map<string, ServiceView>, list: readonly ServiceView[]): void {
  for (const s of list) {
    const have = into.get(s.id)
    if (have === undefined || s.lastBeat > have.lastBeat || (s.lastBeat === have.lastBeat && s.state === 'expired')) into.set(s.id, s)
  }
}
