// Key listing's pure parts: the ordered key index a replica lists from (against a brute-force sort under
// random writes and removals), the merge of replicas' pages (dedupe, tombstones, the horizon, limits,
// cursor continuation), the bounds on a request, cursors, and the wire messages.
import { describe, expect, it } from 'vitest'
import { Writer } from '../../src/core/codec.js'
import { ConfigError, DecodeError, InvalidCursorError } from '../../src/core/errors.js'
import { SeededRng } from '../../src/core/env.js'
import { type ListPage, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, checkPage, decodeCursor, encodeCursor, mergePages, parseList, withoutValues } from '../../src/core/kv/listing.js'
import { type KvReply, decodeMessage, encodeReply, encodeRequest } from '../../src/core/kv/messages.js'
import { DROP_MIN, FOLD_MIN, OrderedKeys } from '../../src/core/replication/key-order.js'
import { EMPTY_STATE, type KeyState, update } from '../../src/core/version/dvv.js'

const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024 }
const ts = { wall: 1_000, logical: 0 }
const live = (replica = 'a', value = 'v'): KeyState => update(EMPTY_STATE, [], { value: new TextEncoder().encode(value), ts, lww: false }, replica)
const deleted = (over: KeyState, replica = 'b'): KeyState => update(over, over.vv, { value: null, ts, lww: false }, replica)
const page = (entries: Array<[string, KeyState]>, more = false): ListPage => ({ keys: entries.map(([key, state]) => ({ key, state })), more })

/** What a page must be: the brute-force answer over a plain set of keys. */
function expected (keys: Set<string>, prefix: string, after: string, limit: number): { keys: string[]; more: boolean } {
  const all = [...keys].filter(k => k.startsWith(prefix) && k > after).sort()
  return { keys: all.slice(0, limit), more: all.length > limit }
}

describe('ordered keys (a replica\'s listing index)', () => {
  it('equals a brute-force sort after 8,000 random adds, removals and re-adds, across several folds (seed 5)', () => {
    const rng = new SeededRng(5)
    const held = new Set<string>()
    const alphabet = ['a', 'b', 'ab', 'a/', 'b/', 'ü', '😀', 'z']
    const randomKey = (): string => Array.from({ length: 1 + Math.floor(rng.next() * 3) }, () => alphabet[Math.floor(rng.next() * alphabet.length)]).join('') + String(Math.floor(rng.next() * 400))
    for (let i = 0; i < 500; i++) held.add(randomKey())
    const ordered = new OrderedKeys(() => held.values(), key => held.has(key))
    let pagesChecked = 0
    for (let step = 0; step < 8_000; step++) {
      const key = randomKey()
      const r = rng.next()
      if (r < 0.45 && !held.has(key)) {
        held.add(key)
        ordered.note(key, undefined, EMPTY_STATE)
      } else if (r < 0.75 && held.has(key)) {
        held.delete(key)
        ordered.note(key, EMPTY_STATE, undefined)
      } else if (r < 0.8) {
        const prefix = rng.next() < 0.3 ? '' : randomKey().slice(0, 1 + Math.floor(rng.next() * 2))
        const after = rng.next() < 0.4 ? '' : randomKey()
        const limit = 1 + Math.floor(rng.next() * 50)
        expect(ordered.page(prefix, after, limit), `step ${step}: ${prefix} after ${after} limit ${limit}`).toEqual(expected(held, prefix, after, limit))
        pagesChecked++
      }
    }
    expect(pagesChecked).toBeGreaterThan(200)
    // About 0.6 changes a step: the side array was folded in several times.
    expect(8_000 * 0.6 / FOLD_MIN).toBeGreaterThan(3)
  })

  it('drops its order when more keys came and went than it holds since the last page, and rebuilds it when listed', () => {
    const held = new Set(Array.from({ length: 100 }, (_, i) => `k${i}`))
    const ordered = new OrderedKeys(() => held.values(), key => held.has(key))
    expect(ordered.built).toBe(false)
    expect(ordered.page('', '', 3).keys).toEqual(['k0', 'k1', 'k10'])
    expect(ordered.built).toBe(true)
    // Short-lived keys churning after one listing: no trail of them is kept.
    for (let i = 0; i < DROP_MIN; i++) {
      held.add(`t${i}`)
      ordered.note(`t${i}`, undefined, EMPTY_STATE)
      held.delete(`t${i}`)
      ordered.note(`t${i}`, EMPTY_STATE, undefined)
    }
    expect(ordered.built).toBe(false)
    held.add('a')
    expect(ordered.page('', '', 2)).toEqual({ keys: ['a', 'k0'], more: true })
  })

  it('pages through every key under a prefix with cursors, none twice, none missed', () => {
    const held = new Set(Array.from({ length: 2500 }, (_, i) => `${i % 3 === 0 ? 'x/' : 'y/'}${i}`))
    const ordered = new OrderedKeys(() => held.values(), key => held.has(key))
    const seen: string[] = []
    let after = ''
    for (;;) {
      const p = ordered.page('x/', after, 97)
      seen.push(...p.keys)
      if (!p.more) break
      after = p.keys[p.keys.length - 1]!
    }
    expect(seen).toEqual([...held].filter(k => k.startsWith('x/')).sort())
  })
})

describe('merging replicas\' pages', () => {
  it('dedupes keys held by several replicas and keeps them in order', () => {
    const m = mergePages([page([['a', live()], ['b', live()], ['c', live()]]), page([['b', live()], ['c', live()], ['d', live()]])], 10)
    expect(m).toEqual({ keys: ['a', 'b', 'c', 'd'], scannedTo: 'd', done: true })
  })

  it('leaves out keys whose merged state is deleted, even if a stale replica still holds the value', () => {
    const old = live('a')
    const gone = deleted(old)
    // Concurrent with a delete it never saw, a value survives the merge: the key is live.
    const concurrent = live('c', 'late')
    const m = mergePages([
      page([['stale', old], ['tomb', gone], ['both', gone]]),
      page([['stale', gone], ['both', concurrent]])
    ], 10)
    expect(m.keys).toEqual(['both'])
    expect(m.done).toBe(true)
  })

  it('stops at the horizon of a replica with more to come, and continues from it', () => {
    const a = page([['k1', live()], ['k3', live()]], true)
    const b = page([['k2', live()], ['k4', live()], ['k5', live()]])
    const first = mergePages([a, b], 10)
    expect(first).toEqual({ keys: ['k1', 'k2', 'k3'], scannedTo: 'k3', done: false })
    // The next round: each replica's keys after k3.
    const second = mergePages([page([['k6', live()]]), page([['k4', live()], ['k5', live()]])], 10)
    expect(second).toEqual({ keys: ['k4', 'k5', 'k6'], scannedTo: 'k6', done: true })
  })

  it('fills at most `limit` keys and resumes after the last one returned', () => {
    const entries: Array<[string, KeyState]> = ['a', 'b', 'c', 'd', 'e'].map(k => [k, live()])
    expect(mergePages([page(entries)], 2)).toEqual({ keys: ['a', 'b'], scannedTo: 'b', done: false })
    expect(mergePages([page(entries)], 5)).toEqual({ keys: ['a', 'b', 'c', 'd', 'e'], scannedTo: 'e', done: true })
    // A full page followed only by tombstones is not the end while a replica has more.
    expect(mergePages([page([['a', live()], ['b', deleted(live())]], true)], 1)).toEqual({ keys: ['a'], scannedTo: 'b', done: false })
    // Only tombstones: an empty page, with where to go on from.
    expect(mergePages([page([['a', deleted(live())]], true)], 5)).toEqual({ keys: [], scannedTo: 'a', done: false })
    expect(mergePages([], 5)).toEqual({ keys: [], scannedTo: null, done: true })
  })

  it('refuses a page that claims more after nothing, or holds keys it was not asked for', () => {
    expect(() => mergePages([page([], true)], 5)).toThrow(DecodeError)
    const query = { prefix: 'a/', after: 'a/1', limit: 10 }
    expect(() => { checkPage(page([['a/2', live()], ['a/3', live()]]), query) }).not.toThrow()
    expect(() => { checkPage(page([]), query) }).not.toThrow()
    for (const keys of [['a/1', 'a/2'], ['a/0'], ['a/2', 'b/1'], ['0', 'a/2']]) {
      expect(() => { checkPage(page(keys.map(k => [k, live()])), query) }, keys.join()).toThrow(DecodeError)
    }
  })

  it('strips values but keeps dots and tombstones', () => {
    const s = deleted(live('a'), 'b')
    const both = { ...s, siblings: [...live('c', 'x').siblings, ...s.siblings] }
    const stripped = withoutValues(both)
    expect(stripped.siblings.map(x => [x.id, x.n, x.value === null ? null : x.value.length])).toEqual(both.siblings.map(x => [x.id, x.n, x.value === null ? null : 0]))
    expect(stripped.vv).toBe(both.vv)
  })
})

describe('listing bounds and cursors', () => {
  it('defaults, and typed errors for a bad limit, prefix or cursor', () => {
    expect(parseList({}, 1024)).toEqual({ prefix: '', after: '', limit: LIST_LIMIT_DEFAULT })
    for (const limit of [0, LIST_LIMIT_MAX + 1, 1.5, Number.NaN]) expect(() => parseList({ limit }, 1024)).toThrow(ConfigError)
    expect(parseList({ limit: LIST_LIMIT_MAX }, 1024).limit).toBe(LIST_LIMIT_MAX)
    expect(() => parseList({ prefix: 'ü'.repeat(513) }, 1024)).toThrow(ConfigError)
    expect(parseList({ prefix: 'ü'.repeat(512) }, 1024).prefix).toBe('ü'.repeat(512))
    for (const cursor of ['!!', 'a', encodeCursor('x'.repeat(1025)), '_w']) expect(() => parseList({ cursor }, 1024), cursor).toThrow(InvalidCursorError)
    // A cursor from another prefix's listing.
    expect(() => parseList({ prefix: 'a/', cursor: encodeCursor('b/1') }, 1024)).toThrow(InvalidCursorError)
  })

  it('round-trips any key through a cursor', () => {
    for (const key of ['a', 'user/ü/😀', 'x'.repeat(1024), 'with space+plus/slash']) {
      const cursor = encodeCursor(key)
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
      expect(decodeCursor(cursor, 1024)).toBe(key)
      expect(parseList({ prefix: key.slice(0, 1), cursor }, 1024).after).toBe(key)
    }
  })

  it('wire: list requests and pages are bounded; pages must be ascending', () => {
    const w = new Writer()
    for (const limit of [0, LIST_LIMIT_MAX + 1]) {
      expect(() => decodeMessage(encodeRequest(w, 1, { type: 'list', prefix: '', after: '', limit }), LIMITS)).toThrow(DecodeError)
    }
    const unsorted: KvReply = { type: 'keys', keys: [{ key: 'b', state: live() }, { key: 'a', state: live() }], more: false }
    expect(() => decodeMessage(encodeReply(w, 1, unsorted), LIMITS)).toThrow(DecodeError)
    expect(() => decodeMessage(encodeReply(w, 1, { type: 'keys', keys: [], more: true }), LIMITS)).toThrow(DecodeError)
    const tooMany: KvReply = { type: 'keys', keys: Array.from({ length: LIST_LIMIT_MAX + 1 }, (_, i) => ({ key: String(i).padStart(5, '0'), state: live() })), more: false }
    expect(() => decodeMessage(encodeReply(w, 1, tooMany), LIMITS)).toThrow(DecodeError)
  })
})
