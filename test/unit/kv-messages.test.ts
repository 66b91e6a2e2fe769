import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Writer, utf8Encode } from '../../src/core/codec.js'
import { DecodeError } from '../../src/core/errors.js'
import { beatRecord, detached } from '../../src/core/kv/heartbeat.js'
import { type KvReply, type KvRequest, decodeMessage, encodeFrame, encodeReply, encodeRequest, splitFrame } from '../../src/core/kv/messages.js'
import { toResult } from '../../src/core/replication/coordinator.js'
import type { KeyState } from '../../src/core/version/dvv.js'
import type { VersionVector } from '../../src/core/version/vv.js'

const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024 }
const w = new Writer()

const state: KeyState = {
  vv: ['a', 2, 'b', 1] as VersionVector,
  siblings: [
    { id: 'a', n: 2, value: new Uint8Array([1, 2, 3]), wall: 1_700_000_000_000, logical: 3, lww: false },
    { id: 'b', n: 1, value: null, wall: 1_700_000_000_001, logical: 0, lww: true }
  ],
  lwwFloor: { id: 'b', n: 1, wall: 1_700_000_000_001, logical: 0 }
}

const requests: KvRequest[] = [
  { type: 'merge', entries: [{ key: 'k', ttlMs: 5000, state }, { key: 'ü', ttlMs: 0, state }] },
  { type: 'read', key: 'key' },
  { type: 'put', key: 'k', value: new Uint8Array([9]), context: ['a', 2] as VersionVector, ts: { wall: 5, logical: 1 }, lww: true, ttlMs: 10, w: 2, dw: 1, strict: true },
  { type: 'put', key: 'k', value: null, context: [] as VersionVector, ts: null, lww: false, ttlMs: 0, w: 1, dw: 0, strict: false },
  { type: 'get', key: 'k', r: 3, strict: false },
  { type: 'sync-root', segments: [0, 5, 1023], root: 2 ** 52 - 1 },
  { type: 'sync-leaves', segments: [1, 2], hashes: [1, 2, 3, 0xffffffff] },
  { type: 'pull', keys: ['a', 'b'] },
  { type: 'reap', key: 'k', state },
  { type: 'info' },
  { type: 'services' },
  { type: 'list', prefix: 'user/', after: 'user/ü', limit: 1000 },
  { type: 'list', prefix: '', after: '', limit: 1 },
  { type: 'expiry-check', key: 'heartbeat/ü' },
  { type: 'refresh', key: 'heartbeat/ü', digest: [0xffffffff, 0], ts: { wall: 1_700_000_000_123, logical: 4 }, ttlMs: 3000 },
  { type: 'beat-check', key: 'heartbeat/svc' }
]

const replies: KvReply[] = [
  { type: 'ok' },
  { type: 'state', state, ttlMs: 7 },
  { type: 'state', state: null, ttlMs: 0 },
  { type: 'put', state, acks: 2 },
  { type: 'get', state: null, replies: 2 },
  { type: 'sync-root', equal: true },
  { type: 'digests', segments: [3], keys: ['x'], hashes: [1, 2], truncated: true },
  { type: 'entries', entries: [{ key: 'k', ttlMs: 0, state }] },
  { type: 'error', code: 'ERR_QUORUM', message: 'nope', acked: 1, required: 2 },
  { type: 'info', json: '{"keys":3}' },
  { type: 'keys', keys: [{ key: 'a', state }, { key: 'b', state }], more: true },
  { type: 'keys', keys: [], more: false },
  { type: 'expiry-state', state, ttlMs: 3000, degraded: true },
  { type: 'expiry-state', state, ttlMs: 0, degraded: false },
  { type: 'expiry-state', state: null, ttlMs: 0, degraded: false },
  { type: 'beat-state', state, ttlMs: 3000, degraded: false, refreshedWall: 1_700_000_000_999 },
  { type: 'beat-state', state, ttlMs: 3000, degraded: true, refreshedWall: 0 },
  { type: 'beat-state', state: null, ttlMs: 0, degraded: false, refreshedWall: 0 }
]

describe('kv wire messages', () => {
  it('round-trips every request and reply type, through a frame', () => {
    const encoded = [...requests.map((r, i) => encodeRequest(w, i, r)), ...replies.map((r, i) => encodeReply(w, i, r))]
    const frame = encodeFrame(new Writer(), encoded).slice()
    const decoded = splitFrame(frame, 1 << 20).map(m => decodeMessage(m, LIMITS))
    expect(decoded.slice(0, requests.length)).toEqual(requests.map((request, id) => ({ kind: 'request', id, request })))
    expect(decoded.slice(requests.length)).toEqual(replies.map((reply, id) => ({ kind: 'reply', id, reply })))
  })

  it('rejects every truncation and random bytes with DecodeError, never anything else', () => {
    for (const r of requests) {
      const bytes = encodeRequest(w, 1, r)
      for (let cut = 0; cut < bytes.length; cut++) expect(() => decodeMessage(bytes.subarray(0, cut), LIMITS)).toThrow(DecodeError)
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), bytes => {
      try {
        decodeMessage(bytes, LIMITS)
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error
      }
      try {
        splitFrame(bytes, 1024)
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error
      }
    }), { numRuns: 5000, seed: 7 })
  })

  it('enforces limits: key length, value size, a forged count', () => {
    expect(() => decodeMessage(encodeRequest(w, 1, { type: 'read', key: 'k'.repeat(2000) }), LIMITS)).toThrow(/exceeds 1024/)
    const big = encodeRequest(w, 1, { type: 'put', key: 'k', value: new Uint8Array(100), context: [] as VersionVector, ts: null, lww: false, ttlMs: 0, w: 2, dw: 1, strict: false })
    expect(() => decodeMessage(big, { keyBytesMax: 10, valueBytesMax: 50 })).toThrow(DecodeError)
    // A merge claiming 2^40 entries in a 10-byte message.
    const forged = new Writer().u8(1).varint(1).u8(0).varint(2 ** 40).finish().slice()
    expect(() => decodeMessage(forged, LIMITS)).toThrow(/count/)
    // States must be canonical (what sync relies on): sorted unique ids, covered sorted dots.
    const bad: KeyState[] = [
      { vv: ['b', 1, 'a', 1] as VersionVector, siblings: [], lwwFloor: null },
      { vv: ['a', 0] as VersionVector, siblings: [], lwwFloor: null },
      { vv: ['a', 1] as VersionVector, siblings: [{ id: 'a', n: 2, value: null, wall: 0, logical: 0, lww: false }], lwwFloor: null },
      { vv: ['a', 3] as VersionVector, siblings: [{ id: 'a', n: 2, value: null, wall: 0, logical: 0, lww: false }, { id: 'a', n: 1, value: null, wall: 0, logical: 0, lww: false }], lwwFloor: null }
    ]
    for (const s of bad) expect(() => decodeMessage(encodeRequest(w, 1, { type: 'reap', key: 'k', state: s }), LIMITS)).toThrow(DecodeError)
  })

  it('bounds the expiry check and its answer: key length, flags 0 or 1, no TTL without a state, truncations', () => {
    expect(() => decodeMessage(encodeRequest(w, 1, { type: 'expiry-check', key: 'k'.repeat(2000) }), LIMITS)).toThrow(/exceeds 1024/)
    const answer = (reply: KvReply): Uint8Array => encodeReply(w, 1, reply)
    for (const reply of replies.filter(r => r.type === 'expiry-state')) {
      const bytes = answer(reply)
      for (let cut = 0; cut < bytes.length; cut++) expect(() => decodeMessage(bytes.subarray(0, cut), LIMITS)).toThrow(DecodeError)
      // A trailing byte (a field a later version might add) is malformed too: decoders end with r.end().
      expect(() => decodeMessage(Uint8Array.of(...bytes, 0), LIMITS)).toThrow(DecodeError)
    }
    // By hand: the header (kind, id, type) of an encoded answer, then presence flag, [state], ttlMs, degraded flag.
    const header = answer({ type: 'expiry-state', state: null, ttlMs: 0, degraded: false }).subarray(0, 3)
    const raw = (...body: number[]): Uint8Array => Uint8Array.of(...header, ...body)
    expect(decodeMessage(raw(0, 0, 1), LIMITS)).toEqual({ kind: 'reply', id: 1, reply: { type: 'expiry-state', state: null, ttlMs: 0, degraded: true } })
    expect(() => decodeMessage(raw(0, 0, 2), LIMITS)).toThrow(/degraded flag 2/)
    expect(() => decodeMessage(raw(2, 0, 0), LIMITS)).toThrow(/state flag 2/)
    expect(() => decodeMessage(raw(0, 5, 0), LIMITS)).toThrow(/TTL for a key/)
    // The state inside is bounded as every state is (value size).
    const big = answer({ type: 'expiry-state', state: { ...state, siblings: [{ ...state.siblings[0]!, value: new Uint8Array(100) }, state.siblings[1]!] }, ttlMs: 1, degraded: false })
    expect(() => decodeMessage(big, { keyBytesMax: 10, valueBytesMax: 50 })).toThrow(DecodeError)
  })

  it('bounds a refresh and the beat check\'s answer: digest halves of 32 bits, a TTL, no refresh time without one, truncations', () => {
    const refresh = { type: 'refresh', key: 'heartbeat/a', digest: [1, 2], ts: { wall: 5, logical: 0 }, ttlMs: 3000 } as const
    expect(() => decodeMessage(encodeRequest(w, 1, { ...refresh, key: 'k'.repeat(2000) }), LIMITS)).toThrow(/exceeds 1024/)
    expect(() => decodeMessage(encodeRequest(w, 1, { ...refresh, digest: [2 ** 32, 0] }), LIMITS)).toThrow(/32 bits/)
    expect(() => decodeMessage(encodeRequest(w, 1, { ...refresh, ttlMs: 0 }), LIMITS)).toThrow(/without a TTL/)
    for (const message of [encodeRequest(w, 1, refresh), ...replies.filter(r => r.type === 'beat-state').map(r => encodeReply(w, 1, r))]) {
      const bytes = message.slice()
      for (let cut = 0; cut < bytes.length; cut++) expect(() => decodeMessage(bytes.subarray(0, cut), LIMITS)).toThrow(DecodeError)
      expect(() => decodeMessage(Uint8Array.of(...bytes, 0), LIMITS)).toThrow(DecodeError)
    }
    // By hand: the header, then presence flag, [state], ttlMs, degraded flag, refreshed wall.
    const header = encodeReply(w, 1, { type: 'beat-state', state: null, ttlMs: 0, degraded: false, refreshedWall: 0 }).subarray(0, 3).slice()
    const raw = (...body: number[]): Uint8Array => Uint8Array.of(...header, ...body)
    expect(decodeMessage(raw(0, 0, 1, 0), LIMITS)).toEqual({ kind: 'reply', id: 1, reply: { type: 'beat-state', state: null, ttlMs: 0, degraded: true, refreshedWall: 0 } })
    expect(() => decodeMessage(raw(0, 0, 0, 7), LIMITS)).toThrow(/refresh of a key without a TTL/)
    expect(() => decodeMessage(raw(0, 0, 3, 0), LIMITS)).toThrow(/degraded flag 3/)
  })

  it('decodes a request of a type it does not know (a newer peer\'s) as unsupported, with its id', () => {
    // Whatever its body: the frame delimits the message.
    const newer = new Writer().u8(1).varint(77).u8(200).string('a body this version cannot read').finish().slice()
    expect(decodeMessage(newer, LIMITS)).toEqual({ kind: 'unsupported', id: 77, type: 200 })
    // An unknown reply type answers one of our own requests: still malformed.
    expect(() => decodeMessage(new Writer().u8(2).varint(1).u8(200).finish().slice(), LIMITS)).toThrow(DecodeError)
  })

  it('shares one copy of a small value repeated across heartbeat records, and only there', () => {
    const beat = (id: number): KeyState => ({ vv: ['a', id] as VersionVector, siblings: [{ id: 'a', n: id, value: utf8Encode('{"state":"alive","ttlMs":3000,"meta":null}'), wall: 1_700_000_000_000 + id, logical: 0, lww: true }], lwwFloor: { id: 'a', n: id, wall: 1_700_000_000_000 + id, logical: 0 } })
    const merge = (keys: string[]): ReadonlyArray<{ key: string; state: KeyState }> => {
      const message = decodeMessage(encodeRequest(w, 1, { type: 'merge', entries: keys.map((key, i) => ({ key, ttlMs: 3000, state: beat(i + 1) })) }).slice(), LIMITS)
      if (message.kind !== 'request' || message.request.type !== 'merge') throw new Error('not a merge')
      return message.request.entries
    }
    const value = (e: { state: KeyState }): Uint8Array | null => e.state.siblings[0]!.value
    const beats = merge(['heartbeat/a', 'heartbeat/b'])
    const again = merge(['heartbeat/c'])
    expect(value(beats[0]!)).toBe(value(beats[1]!))
    expect(value(again[0]!)).toBe(value(beats[0]!))
    expect(value(beats[0]!)).toEqual(utf8Encode('{"state":"alive","ttlMs":3000,"meta":null}'))
    // Other keys' values are handed out by get(): each state keeps its own copy.
    const plain = merge(['user/a', 'user/b'])
    expect(value(plain[0]!)).not.toBe(value(plain[1]!))
    expect(value(plain[0]!)).toEqual(value(plain[1]!))
    // A different heartbeat value is its own copy.
    const other = decodeMessage(encodeRequest(w, 2, { type: 'merge', entries: [{ key: 'heartbeat/d', ttlMs: 3000, state: { ...beat(1), siblings: [{ ...beat(1).siblings[0]!, value: utf8Encode('{"state":"alive","ttlMs":5000,"meta":null}') }] } }] }).slice(), LIMITS)
    if (other.kind !== 'request' || other.request.type !== 'merge') throw new Error('not a merge')
    expect(value(other.request.entries[0]!)).not.toBe(value(beats[0]!))
    expect(new TextDecoder().decode(value(other.request.entries[0]!)!)).toContain('5000')
  })

  it('hands a caller of get a copy of a shared heartbeat record, and other keys their own value', () => {
    const shared = beatRecord(3000, null, 60_000)
    const at: KeyState = { vv: ['a', 1] as VersionVector, siblings: [{ id: 'a', n: 1, value: shared, wall: 1, logical: 0, lww: true }], lwwFloor: null }
    const beat = toResult('heartbeat/s', at, 1)
    expect(beat.values[0]).not.toBe(shared)
    expect(beat.values[0]).toEqual(shared)
    beat.values[0]![0] = 0
    expect(new TextDecoder().decode(beatRecord(3000, null, 60_000))).toBe('{"state":"alive","ttlMs":3000,"meta":null}')
    expect(toResult('user/k', at, 1).values[0]).toBe(shared)
  })

  it('shares a forwarded heartbeat put\'s value too, and detaches heartbeat states handed out of the store', () => {
    const put = (key: string): Uint8Array | null => {
      const m = decodeMessage(encodeRequest(w, 3, { type: 'put', key, value: utf8Encode('{"state":"alive","ttlMs":3000,"meta":null}'), context: [] as VersionVector, ts: null, lww: true, ttlMs: 3000, w: 2, dw: 1, strict: false }).slice(), LIMITS)
      if (m.kind !== 'request' || m.request.type !== 'put') throw new Error('not a put')
      return m.request.value
    }
    expect(put('heartbeat/x')).toBe(put('heartbeat/y'))
    expect(put('user/x')).not.toBe(put('user/y'))
    const shared = beatRecord(3000, null, 60_000)
    const at: KeyState = { vv: ['a', 1] as VersionVector, siblings: [{ id: 'a', n: 1, value: shared, wall: 1, logical: 0, lww: true }, { id: 'b', n: 1, value: null, wall: 0, logical: 0, lww: false }], lwwFloor: null }
    const out = detached('heartbeat/s', at)
    expect(out).toEqual(at)
    expect(out.siblings[0]!.value).not.toBe(shared)
    expect(detached('user/s', at)).toBe(at)
  })

  it('builds one shared record per TTL for beats without metadata, and a fresh one with metadata', () => {
    expect(beatRecord(3000, null, 60_000)).toBe(beatRecord(3000, null, 60_000))
    expect(beatRecord(3000, null, 60_000)).not.toBe(beatRecord(4000, null, 60_000))
    expect(beatRecord(3000, { zone: 'a' }, 60_000)).not.toBe(beatRecord(3000, { zone: 'a' }, 60_000))
    expect(JSON.parse(new TextDecoder().decode(beatRecord(3000, null, 60_000)))).toEqual({ state: 'alive', ttlMs: 3000, meta: null })
  })
})
