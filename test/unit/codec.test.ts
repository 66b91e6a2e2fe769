import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Reader, Writer, base64urlDecode, base64urlEncode, utf8Length } from '../../src/core/codec.js'
import { DecodeError } from '../../src/core/errors.js'
import { crc32c } from '../../src/core/storage/crc32c.js'
import { RECORD_DOT_LEASE, decodeRecord, encodeDotLease, encodePut } from '../../src/core/storage/records.js'
import { EMPTY_STATE, update } from '../../src/core/version/dvv.js'
import { EMPTY_VV } from '../../src/core/version/vv.js'

describe('crc32c', () => {
  it('matches the published check values (RFC 3720 B.4)', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283)
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa)
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43)
  })

  it('can be computed in pieces', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, cut) => {
      const at = bytes.length === 0 ? 0 : cut % bytes.length
      expect(crc32c(bytes, crc32c(bytes, 0, 0, at), at)).toBe(crc32c(bytes))
    }))
  })
})

describe('codec', () => {
  it('copies decoded values out of a Node Buffer into plain arrays of their own (found in review: Buffer.slice is a view)', () => {
    const frame = Buffer.alloc(64 * 1024)
    const w = new Writer(16).bytes(Uint8Array.of(1, 2, 3)).string('replica-a')
    frame.set(w.finish(), 100)
    const r = new Reader(frame.subarray(100, 100 + w.length), 'test')
    const value = r.bytesCopy(10)
    expect(r.string(64)).toBe('replica-a')
    expect(Buffer.isBuffer(value)).toBe(false)
    expect(value.buffer.byteLength).toBe(3) // holds just the value, not the frame
    frame.fill(0xee) // the frame's memory is reused
    expect([...value]).toEqual([1, 2, 3])
  })

  it('decodes ASCII and non-ASCII strings, at and around the fast path\'s length, and rejects invalid UTF-8', () => {
    for (const s of ['', 'a', 'x'.repeat(63), 'y'.repeat(64), 'z'.repeat(65), 'k\u00e9y', 'é'.repeat(40), '\u{1f600}', 'a'.repeat(60) + '\u00ff',
      'b'.repeat(42), 'b'.repeat(43), 'c'.repeat(127), 'c'.repeat(128), 'd'.repeat(126) + '\u00e9', '\u007f'.repeat(100)]) {
      const bytes = new Writer(4).string(s).finish()
      // The format is a varint length and the UTF-8 bytes, whichever path wrote them.
      const utf8 = new TextEncoder().encode(s)
      expect([...bytes]).toEqual([...new Writer().varint(utf8.length).finish(), ...utf8])
      expect(new Reader(bytes, 'test').string(1024)).toBe(s)
    }
    expect(() => new Reader(Uint8Array.of(2, 0xc3, 0x28), 'test').string(10)).toThrow(DecodeError)
  })

  it('round-trips varints, strings and bytes', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.string(), fc.uint8Array())), items => {
      const w = new Writer(4)
      for (const [n, s, b] of items) w.varint(n).string(s).bytes(b)
      const r = new Reader(w.finish(), 'test')
      for (const [n, s, b] of items) {
        expect(r.varint()).toBe(n)
        expect(r.string(1 << 20)).toBe(s)
        expect(r.bytes(1 << 20)).toEqual(b)
      }
      r.end()
    }))
  })

  it('counts UTF-8 bytes like TextEncoder', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), s => { expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length) }))
  })

  it('round-trips base64url', () => {
    fc.assert(fc.property(fc.uint8Array(), b => { expect(base64urlDecode(base64urlEncode(b), 'b64')).toEqual(b) }))
  })

  it('throws DecodeError, never anything else, on truncated or hostile records', () => {
    const state = update(EMPTY_STATE, EMPTY_VV, { value: new Uint8Array([1, 2, 3]), ts: { wall: 5, logical: 1 }, lww: true }, 'replica')
    const good = encodePut(new Writer(), 'key', 1000, state).slice()
    expect(decodeRecord(good, { keyBytesMax: 1024, valueBytesMax: 1024 })).toMatchObject({ key: 'key', ttlMs: 1000 })
    const lease = encodeDotLease(new Writer(), 1_700_000_060_000).slice()
    expect(decodeRecord(lease, { keyBytesMax: 1024, valueBytesMax: 1024 })).toEqual({ type: RECORD_DOT_LEASE, key: '', lease: 1_700_000_060_000 })
    for (let cut = 0; cut < lease.length; cut++) {
      expect(() => decodeRecord(lease.subarray(0, cut), { keyBytesMax: 1024, valueBytesMax: 1024 })).toThrow(DecodeError)
    }
    for (let cut = 0; cut < good.length; cut++) {
      expect(() => decodeRecord(good.subarray(0, cut), { keyBytesMax: 1024, valueBytesMax: 1024 })).toThrow(DecodeError)
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), junk => {
      try { decodeRecord(junk, { keyBytesMax: 64, valueBytesMax: 64 }) } catch (e) { expect(e).toBeInstanceOf(DecodeError) }
    }))
  })
})
