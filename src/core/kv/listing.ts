/**
 * Key listing (`peer.list`, `GET /kv?prefix=&limit=&cursor=`): the keys under a prefix, in order, a page at
 * a time, merged across the mesh. A peer asked for a page asks every up member that owns ring tokens (and
 * itself) for its first `limit` keys after the cursor — tombstones included, each with its version state
 * stripped of values — merges the answers key by key (dvv.ts sync, the same join a read uses), and returns
 * the keys whose merged state is not deleted. Every member is asked because a prefix is a range of the key
 * order, which hashing spreads over every segment of the ring: each member replicates part of it.
 *
 * Merging pages from several replicas: each page covers its replica's keys only up to its last key when more
 * follow, so the merge is exact up to the smallest such last key (the horizon) and stops there. A page with
 * tombstones or a low horizon can come out short; the merge then runs another round from where it stopped,
 * at most LIST_ROUNDS_MAX rounds and none started after LIST_ROUNDS_BUDGET_MS, so a page may hold fewer than
 * `limit` keys (even none) with a cursor to go on from. The cursor is opaque to clients: base64url of the last
 * key the merge covered, so a listing resumes exactly after it, on any peer.
 *
 * What a listing promises (README "Listing keys"): a key whose put was acknowledged and which was not
 * deleted is listed as long as one replica holding it answers; a key whose delete was acknowledged is not
 * listed as long as one replica holding the tombstone answers; expired TTL keys are tombstones (expired
 * heartbeat records are values, and listed). It is not a snapshot: keys written or deleted while a listing
 * pages along may or may not appear. Members that were asked and did not answer are named in
 * `membersFailed`, never silently left out.
 */
import { base64urlDecode, base64urlEncode, utf8Encode, utf8Length } from '../codec.js'
import { ConfigError, DecodeError, InvalidCursorError, errorMessage } from '../errors.js'
import { type Flow, all, request } from '../replication/flow.js'
import { type ReplicaState, entryBytes, replyError } from '../replication/replica-state.js'
import { type KeyState, isDeleted, sync } from '../version/dvv.js'
import { type KvReply, type ListedKey, LIST_PAGE_KEYS_MAX } from './messages.js'

/** Keys per page unless the caller says otherwise. */
export const LIST_LIMIT_DEFAULT = 100
/** Most keys per page (and per replica's answer). */
export const LIST_LIMIT_MAX = LIST_PAGE_KEYS_MAX
/** Rounds of asking the members one page may take (a round refills a page cut short by tombstones). */
export const LIST_ROUNDS_MAX = 4
/** No round starts once a page has taken this long; it returns what it has, with a cursor. */
export const LIST_ROUNDS_BUDGET_MS = 5000

export interface ListOptions {
  /** Only keys starting with this (default '': every key); at most the key limit in UTF-8 bytes. */
  prefix?: string
  /** Keys per page, 1 to LIST_LIMIT_MAX (1000); default LIST_LIMIT_DEFAULT (100). */
  limit?: number
  /** The `cursor` of the previous page: this page starts after it. Absent, null or '' for the first. */
  cursor?: string | null
  /** This peer's own keys only (no other member is asked). */
  local?: boolean
  signal?: AbortSignal
}

export interface ListResult {
  /** Live keys, ascending (UTF-16 code-unit order), at most `limit`. */
  readonly keys: string[]
  /** Pass it back for the next page; null when the listing reached the end. */
  readonly cursor: string | null
  /** Members asked for their keys (this peer included). */
  readonly membersAsked: number
  /** Members asked that did not answer: keys only they hold may be missing from this page. */
  readonly membersFailed: string[]
}

/** A validated listing request: keys under `prefix` after `after` ('' from the start). */
export interface ListQuery {
  readonly prefix: string
  readonly after: string
  readonly limit: number
}

/** A replica's answer: its keys in order, and whether more follow the last one. */
export interface ListPage {
  readonly keys: readonly ListedKey[]
  readonly more: boolean
}

export function encodeCursor (key: string): string {
  return base64urlEncode(utf8Encode(key))
}

export function decodeCursor (cursor: string, keyBytesMax: number): string {
  let bytes: Uint8Array
  try {
    bytes = base64urlDecode(cursor, 'cursor')
  } catch (error) {
    throw new InvalidCursorError(errorMessage(error))
  }
  let key: string
  try {
    key = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new InvalidCursorError('not UTF-8')
  }
  if (key.length === 0) throw new InvalidCursorError('empty')
  if (bytes.length > keyBytesMax) throw new InvalidCursorError(`a key of ${bytes.length} bytes exceeds the limit of ${keyBytesMax}`)
  return key
}

/** Checks a listing's options against its bounds (typed errors: ConfigError, InvalidCursorError). */
export function parseList (options: ListOptions, keyBytesMax: number): ListQuery {
  const prefix = options.prefix ?? ''
  if (typeof prefix !== 'string') throw new ConfigError('prefix', 'must be a string')
  if (prefix.length * 3 > keyBytesMax && utf8Length(prefix) > keyBytesMax) throw new ConfigError('prefix', `${utf8Length(prefix)} bytes exceeds the key limit of ${keyBytesMax}`)
  const limit = options.limit ?? LIST_LIMIT_DEFAULT
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) throw new ConfigError('limit', `must be an integer in [1, ${LIST_LIMIT_MAX}], got ${String(limit)}`)
  const cursor = options.cursor ?? ''
  if (typeof cursor !== 'string') throw new InvalidCursorError('not a string')
  const after = cursor === '' ? '' : decodeCursor(cursor, keyBytesMax)
  if (!after.startsWith(prefix) && after !== '') throw new InvalidCursorError('it does not belong to a listing of this prefix')
  return { prefix, after, limit }
}

const NO_BYTES = new Uint8Array(0)

/** The state with every value emptied: what a listing needs to merge replicas (dots, history, tombstones). */
export function withoutValues (state: KeyState): KeyState {
  if (state.siblings.every(s => s.value === null || s.value.length === 0)) return state
  return { vv: state.vv, siblings: state.siblings.map(s => (s.value === null ? s : { ...s, value: NO_BYTES })), lwwFloor: state.lwwFloor }
}

/**
 * This replica's page: up to `limit` keys under `prefix` after `after`, tombstones included, and at most
 * half a message of states (then `more`, with one key at least).
 */
export function localPage (s: ReplicaState, query: ListQuery): ListPage {
  const page = s.ordered.page(query.prefix, query.after, query.limit)
  const budget = s.config.messageBytesMax / 2
  const keys: ListedKey[] = []
  let bytes = 0
  for (const key of page.keys) {
    const state = s.engine.state(key)
    if (state === undefined) continue
    const listed = { key, state: withoutValues(state) }
    bytes += entryBytes({ key, ttlMs: 0, state: listed.state })
    if (keys.length > 0 && bytes > budget) return { keys, more: true }
    keys.push(listed)
  }
  return { keys, more: page.more }
}

/**
 * Merges replicas' pages (each ascending, after the same cursor): up to `limit` live keys, ascending and
 * distinct, where a key is live if the join of every state the pages hold for it is not deleted. The merge
 * stops at the horizon, the smallest last key of a page with more to come, because beyond it that replica's
 * keys are unknown. `scannedTo` is where the next round or page starts (the last key returned when the page
 * is full, else the horizon); `done` says no key is left after the ones returned.
 */
export function mergePages (pages: readonly ListPage[], limit: number): { keys: string[]; scannedTo: string | null; done: boolean } {
  let horizon: string | null = null
  for (const p of pages) {
    if (!p.more) continue
    const last = p.keys[p.keys.length - 1]
    if (last === undefined) throw new DecodeError('listing page', 'an empty page cannot have more')
    if (horizon === null || last.key < horizon) horizon = last.key
  }
  const merged = new Map<string, KeyState>()
  for (const p of pages) {
    for (const { key, state } of p.keys) {
      if (horizon !== null && key > horizon) break
      const prior = merged.get(key)
      merged.set(key, prior === undefined ? state : sync(prior, state))
    }
  }
  const candidates = [...merged.keys()].sort()
  const keys: string[] = []
  for (const key of candidates) {
    if (isDeleted(merged.get(key)!)) continue
    // Another live key follows a full page: the next page starts after the last one returned.
    if (keys.length === limit) return { keys, scannedTo: keys[keys.length - 1]!, done: false }
    keys.push(key)
  }
  return { keys, scannedTo: horizon ?? candidates[candidates.length - 1] ?? null, done: horizon === null }
}

/**
 * A replica's page holds only keys the request asked for. The decoder checked they ascend; since the keys
 * under a prefix are one contiguous run, checking the first and the last covers the rest.
 */
export function checkPage (page: ListPage, query: ListQuery): void {
  const first = page.keys[0]
  const last = page.keys[page.keys.length - 1]
  if (first === undefined || last === undefined) return
  if (first.key <= query.after || !first.key.startsWith(query.prefix) || !last.key.startsWith(query.prefix)) {
    throw new DecodeError('listing page', 'keys outside the range asked for')
  }
}

/**
 * One page of the listing: this peer's keys only (`local`), or every up ring member's, merged. Members that
 * fail are reported and not asked again in a later round of the same page.
 */
export function * listKeys (s: ReplicaState, options: ListOptions): Flow<ListResult> {
  const query = parseList(options, s.engine.config.keyBytesMax)
  let asking = options.local === true ? [s.id] : [s.id, ...s.ring.members.map(m => m.id).filter(id => id !== s.id && s.isUp(id))]
  const membersAsked = asking.length
  const membersFailed: string[] = []
  const keys: string[] = []
  let after = query.after
  const started = s.nowMs
  for (let round = 1; ; round++) {
    const ask: ListQuery = { prefix: query.prefix, after, limit: query.limit }
    const pages: ListPage[] = []
    const answered = new Set<string>()
    yield * all(asking.map(function * (id): Flow<void> {
      if (id === s.id) {
        pages.push(localPage(s, ask))
        answered.add(id)
        return
      }
      try {
        // On the sync channel: pages are bulk replies that must not hold up puts and gets on the kv stream.
        const reply = (yield request(id, 'sync', { type: 'list', ...ask })) as KvReply
        if (reply.type !== 'keys') throw replyError(id, reply, 'get')
        checkPage(reply, ask)
        pages.push(reply)
        answered.add(id)
      } catch (error) {
        s.log.debug(`listing the keys of ${id}: ${errorMessage(error)}`)
        membersFailed.push(id)
        throw error
      }
    }))
    asking = asking.filter(id => answered.has(id))
    const merged = mergePages(pages, query.limit - keys.length)
    keys.push(...merged.keys)
    if (merged.done) return { keys, cursor: null, membersAsked, membersFailed }
    after = merged.scannedTo!
    if (keys.length >= query.limit || round >= LIST_ROUNDS_MAX || s.nowMs - started >= LIST_ROUNDS_BUDGET_MS) {
      return { keys, cursor: encodeCursor(after), membersAsked, membersFailed }
    }
  }
}
