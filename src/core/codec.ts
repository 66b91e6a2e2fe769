/**
 * Byte-level encoding shared by the WAL records, the causal context and (later) the wire protocol:
 * unsigned LEB128 varints for integers up to 2^53 - 1, length-prefixed byte strings and UTF-8 strings.
 * The reader bounds-checks every read and throws DecodeError, so truncated or hostile input never produces
 * a half-built structure or an out-of-range read.
 */
import { DecodeError } from './errors.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function utf8Encode (s: string): Uint8Array { return encoder.encode(s) }

/** UTF-8 length of `s` without allocating. */
export function utf8Length (s: string): number {
  let bytes = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { bytes += 4; i++ } else bytes += 3
  }
  return bytes
}

export class Writer {
  private buf: Uint8Array
  private view: DataView
  length = 0

  constructor (initialBytes = 256) {
    this.buf = new Uint8Array(initialBytes)
    this.view = new DataView(this.buf.buffer)
  }

  private ensure (extra: number): void {
    if (this.length + extra <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.length + extra) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  u8 (v: number): this {
    this.ensure(1)
    this.buf[this.length++] = v
    return this
  }

  u32 (v: number): this {
    this.ensure(4)
    this.view.setUint32(this.length, v, true)
    this.length += 4
    return this
  }

  /** Unsigned varint, 0 <= v <= Number.MAX_SAFE_INTEGER. */
  varint (v: number): this {
    this.ensure(8)
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    this.buf[this.length++] = v
    return this
  }

  bytes (b: Uint8Array): this {
    this.varint(b.length)
    this.ensure(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  raw (b: Uint8Array): this {
    this.ensure(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  string (s: string): this {
    // ASCII under 128 characters (keys, replica ids: most strings written): the length byte and the bytes by
    // hand, with no call into the runtime and no view or copy; the first other character falls through.
    const n = s.length
    if (n < 0x80) {
      this.ensure(n + 1)
      const buf = this.buf
      let at = this.length + 1
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) break
        buf[at++] = c
      }
      if (i === n) {
        buf[this.length] = n
        this.length = at
        return this
      }
    }
    // Worst case 3 bytes per UTF-16 unit; encodeInto writes in place with no intermediate copy.
    const max = s.length * 3
    this.ensure(max + 8)
    if (s.length < 0x80 / 3) {
      const at = this.length
      this.length++
      const { written } = encoder.encodeInto(s, this.buf.subarray(this.length))
      this.buf[at] = written
      this.length += written
    } else {
      this.bytes(encoder.encode(s))
    }
    return this
  }

  /** The bytes written so far (a view; copy if the writer is reused). */
  finish (): Uint8Array {
    return this.buf.subarray(0, this.length)
  }

  reset (): void {
    this.length = 0
  }
}

/** Strings up to this many bytes are decoded by hand when they are ASCII: TextDecoder costs a call into the
 * runtime and a view per string, which dominates decoding short keys and ids (recovery decodes millions). */
const ASCII_FAST_BYTES = 64
const fromCharCode = String.fromCharCode

/** Scratch arrays of char codes, one per length: String.fromCharCode.apply on an exact-length array makes a
 * flat string (concatenating pieces would store a cons string per key, flattened again on every hash). */
const charCodes: number[][] = Array.from({ length: ASCII_FAST_BYTES + 1 }, (_, n) => new Array<number>(n).fill(0))

/** The string of `buf[start, end)` if every byte is ASCII, else null. */
function asciiString (buf: Uint8Array, start: number, end: number): string | null {
  const codes = charCodes[end - start]!
  for (let i = start, k = 0; i < end; i++, k++) {
    const c = buf[i]!
    if (c >= 0x80) return null
    codes[k] = c
  }
  return fromCharCode(...codes) // at most ASCII_FAST_BYTES arguments
}

export class Reader {
  offset: number
  private buf: Uint8Array
  /** One past the last byte this reader may read. */
  private limit: number
  private view: DataView | null = null

  /** Reads `buf[start, end)` (the whole array by default). */
  constructor (buf: Uint8Array, private readonly what: string, start = 0, end = buf.length) {
    this.buf = buf
    this.offset = start
    this.limit = end
  }

  /** Reuses the reader for `buf[start, end)`: decoding in place from a read buffer allocates nothing. */
  reset (buf: Uint8Array, start: number, end: number): this {
    if (buf !== this.buf) this.view = null
    this.buf = buf
    this.offset = start
    this.limit = end
    return this
  }

  get remaining (): number { return this.limit - this.offset }

  private need (n: number): void {
    if (this.offset + n > this.limit) throw new DecodeError(this.what, `truncated at byte ${this.offset} (needs ${n} more)`)
  }

  u8 (): number {
    this.need(1)
    return this.buf[this.offset++]!
  }

  u32 (): number {
    this.need(4)
    this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
    const v = this.view.getUint32(this.offset, true)
    this.offset += 4
    return v
  }

  varint (): number {
    // One byte is the common case (small counts, flags, lengths).
    if (this.offset < this.limit) {
      const b = this.buf[this.offset]!
      if (b < 0x80) { this.offset++; return b }
    }
    let result = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      result += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) break
        return result
      }
      scale *= 0x80
    }
    throw new DecodeError(this.what, `varint too long at byte ${this.offset}`)
  }

  /** A count of entries that take at least one byte each: bounded by what is left, so it cannot be forged
   * into a huge allocation. */
  count (): number {
    const n = this.varint()
    if (n > this.remaining) throw new DecodeError(this.what, `count ${n} exceeds the ${this.remaining} bytes left`)
    return n
  }

  /** The length of the next byte string, checked against `max` and what is left; the offset moves past it. */
  private span (max: number): number {
    const n = this.varint()
    if (n > max) throw new DecodeError(this.what, `byte string of ${n} bytes exceeds ${max}`)
    this.need(n)
    this.offset += n
    return n
  }

  /** A view of the next byte string (copy it to keep it beyond the buffer's life). */
  bytes (max: number): Uint8Array {
    const n = this.span(max)
    return this.buf.subarray(this.offset - n, this.offset)
  }

  /** A copy of the next byte string, in a plain Uint8Array with a buffer of its own. */
  bytesCopy (max: number): Uint8Array {
    const n = this.span(max)
    // Not this.buf.slice(): on a Node Buffer (network frames are) slice() is a view of the frame. Copying
    // a subarray into a new Uint8Array was the fastest of the copies measured here (about 0.9 us for 100
    // bytes, nearly all of it the allocation).
    return new Uint8Array(this.buf.subarray(this.offset - n, this.offset))
  }

  /** Skips a byte string. */
  skipBytes (max: number): void {
    this.span(max)
  }

  string (maxBytes: number): string {
    const n = this.span(maxBytes)
    const start = this.offset - n
    if (n <= ASCII_FAST_BYTES) {
      const ascii = asciiString(this.buf, start, this.offset)
      if (ascii !== null) return ascii
    }
    try {
      return decoder.decode(this.buf.subarray(start, this.offset))
    } catch {
      throw new DecodeError(this.what, `invalid UTF-8 at byte ${start}`)
    }
  }

  /** Whether the next byte string equals `expected` (compared in place); the offset does not move. */
  peekBytesEqual (expected: Uint8Array): boolean {
    const save = this.offset
    const n = this.varint()
    const start = this.offset
    this.offset = save
    if (n !== expected.length || start + n > this.limit) return false
    for (let i = 0; i < n; i++) if (this.buf[start + i] !== expected[i]) return false
    return true
  }

  end (): void {
    if (this.offset !== this.limit) throw new DecodeError(this.what, `${this.limit - this.offset} unexpected trailing bytes`)
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const B64_INDEX = new Int16Array(128).fill(-1)
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i

/** base64url without padding (RFC 4648 §5): safe in HTTP headers and URLs. */
export function base64urlEncode (b: Uint8Array): string {
  let out = ''
  let i = 0
  for (; i + 2 < b.length; i += 3) {
    const v = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!
    out += B64[v >> 18]! + B64[(v >> 12) & 63]! + B64[(v >> 6) & 63]! + B64[v & 63]!
  }
  if (i < b.length) {
    const v = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8)
    out += B64[v >> 18]! + B64[(v >> 12) & 63]!
    if (i + 1 < b.length) out += B64[(v >> 6) & 63]!
  }
  return out
}

export function base64urlDecode (s: string, what: string): Uint8Array {
  if (s.length % 4 === 1) throw new DecodeError(what, 'base64url length is impossible')
  const out = new Uint8Array(Math.floor(s.length * 3 / 4))
  let bits = 0
  let acc = 0
  let o = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    const v = c < 128 ? B64_INDEX[c]! : -1
    if (v < 0) throw new DecodeError(what, `invalid base64url character at ${i}`)
    acc = (acc << 6) | v
    bits += 6
    if (bits >= 8) {
      bits -= 8
      out[o++] = (acc >> bits) & 0xff
    }
  }
  return out
}
