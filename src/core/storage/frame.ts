/**
 * Record framing for the log and snapshots, the one place that knows it:
 *
 *   file   = magic (8 bytes: "MKV" + kind + format version) | salt (u32 LE, random per file) | frames
 *   frame  = length (u32 LE: bit 31 set for a sync marker, low 31 bits the payload size, >= 1)
 *          | crc (u32 LE: CRC-32C of salt + length field + payload) | payload
 *
 * The checksum covers the length field, so a flipped bit there is caught like one in a payload; and it
 * covers the file's random salt, so bytes that merely look like a frame — a frame stored inside a value, a
 * frame left from an older file — never validate here. That matters when recovery searches for the next
 * valid frame after damage (found in review: a value carrying a well-formed frame could otherwise be taken
 * for a record).
 *
 * Sync markers are frames the WAL writes after each completed sync, saying "everything up to this position
 * was durable"; recovery uses them to tell a torn tail from damage to acknowledged data (see wal.ts).
 */
import { crc32c } from './crc32c.js'

export const FRAME_HEADER_BYTES = 8
/** Magic plus salt at the start of every segment and snapshot. */
export const FILE_HEADER_BYTES = 12
/** "MKVW" + 0x00 0x00 0x00 format 2: a log segment. */
export const SEGMENT_MAGIC = Uint8Array.of(0x4d, 0x4b, 0x56, 0x57, 0, 0, 0, 2)
/** "MKVS" + 0x00 0x00 0x00 format 2: a snapshot. */
export const SNAPSHOT_MAGIC = Uint8Array.of(0x4d, 0x4b, 0x56, 0x53, 0, 0, 0, 2)
const MARKER_BIT = 0x80000000
/** Largest payload a frame can carry (31 bits). */
export const FRAME_PAYLOAD_MAX = 0x7fffffff

export type FrameKind = 'record' | 'marker'

function u32 (bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
}

function putU32 (out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff
  out[at + 1] = (v >>> 8) & 0xff
  out[at + 2] = (v >>> 16) & 0xff
  out[at + 3] = v >>> 24
}

/** CRC-32C state after the 4 salt bytes: each frame's checksum continues from it. */
export function saltSeed (salt: number): number {
  const b = new Uint8Array(4)
  putU32(b, 0, salt)
  return crc32c(b)
}

export function frameChecksum (bytes: Uint8Array, at: number, length: number, seed: number): number {
  const crc = crc32c(bytes, seed, at, at + 4)
  return crc32c(bytes, crc, at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length)
}

/** Writes one frame around `payload` into `out` at `at` (which must have room); returns the frame's size. */
export function encodeFrameInto (out: Uint8Array, at: number, payload: Uint8Array, seed: number, kind: FrameKind = 'record'): number {
  const length = payload.length
  putU32(out, at, kind === 'marker' ? (length | MARKER_BIT) >>> 0 : length)
  out.set(payload, at + FRAME_HEADER_BYTES)
  putU32(out, at + 4, frameChecksum(out, at, length, seed))
  return FRAME_HEADER_BYTES + length
}

/** One frame around `payload`, in a new array. */
export function encodeFrame (payload: Uint8Array, seed: number, kind: FrameKind = 'record'): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  encodeFrameInto(out, 0, payload, seed, kind)
  return out
}

/** The 12-byte header of a new file. */
export function fileHeader (magic: Uint8Array, salt: number): Uint8Array {
  const out = new Uint8Array(FILE_HEADER_BYTES)
  out.set(magic)
  putU32(out, 8, salt)
  return out
}

/** The salt of a file that starts with `magic`, or null when the header is missing or different. */
export function readFileHeader (bytes: Uint8Array, magic: Uint8Array): number | null {
  if (bytes.length < FILE_HEADER_BYTES) return null
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return null
  return u32(bytes, 8)
}

export type ScanStep =
  | { kind: FrameKind; offset: number; payload: Uint8Array }
  | { kind: 'bad'; offset: number; reason: string }
  | { kind: 'end' }

/** Reads the frame at `offset`. A 'bad' step means the bytes at `offset` are not a valid frame. */
export function readFrame (bytes: Uint8Array, offset: number, seed: number): ScanStep {
  const remaining = bytes.length - offset
  if (remaining === 0) return { kind: 'end' }
  if (remaining < FRAME_HEADER_BYTES) return { kind: 'bad', offset, reason: `partial frame header (${remaining} bytes)` }
  const field = u32(bytes, offset)
  const length = field & FRAME_PAYLOAD_MAX
  if (length === 0) return { kind: 'bad', offset, reason: field === 0 ? 'zero-filled' : 'zero-length frame' }
  if (length > remaining - FRAME_HEADER_BYTES) return { kind: 'bad', offset, reason: `frame of ${length} bytes runs past the end (${remaining - FRAME_HEADER_BYTES} left)` }
  if (frameChecksum(bytes, offset, length, seed) !== u32(bytes, offset + 4)) return { kind: 'bad', offset, reason: 'checksum mismatch' }
  return { kind: (field & MARKER_BIT) !== 0 ? 'marker' : 'record', offset, payload: bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length) }
}

/** checkFrame: no bytes left at `offset`. */
export const FRAME_END = -1
/** checkFrame: the bytes at `offset` are not a valid frame (readFrame says why). */
export const FRAME_BAD = -2
/** checkFrame: the frame is not all there yet (`final` false); read more and check again. */
export const FRAME_PARTIAL = -3

/**
 * Checks the frame at `offset` in place, allocating nothing (recovery's hot loop; readFrame is the
 * descriptive version). Returns the frame's length field when it is valid (payload size in the low 31 bits,
 * MARKER_BIT set for a sync marker; use frameLength / isMarker), or FRAME_END, FRAME_BAD, or — when `final`
 * is false, meaning more bytes may follow `end` — FRAME_PARTIAL for a frame that runs past `end`.
 */
export function checkFrame (bytes: Uint8Array, offset: number, end: number, seed: number, final = true): number {
  const remaining = end - offset
  if (remaining === 0) return final ? FRAME_END : FRAME_PARTIAL
  if (remaining < FRAME_HEADER_BYTES) return final ? FRAME_BAD : FRAME_PARTIAL
  const field = u32(bytes, offset)
  const length = field & FRAME_PAYLOAD_MAX
  if (length === 0) return FRAME_BAD
  if (length > remaining - FRAME_HEADER_BYTES) return final ? FRAME_BAD : FRAME_PARTIAL
  if (frameChecksum(bytes, offset, length, seed) !== u32(bytes, offset + 4)) return FRAME_BAD
  return field
}

/** The payload size in a length field. */
export function frameLength (field: number): number { return field & FRAME_PAYLOAD_MAX }

/** Whether a length field marks a sync marker. */
export function isMarker (field: number): boolean { return (field & MARKER_BIT) !== 0 }

/** The length field of the frame at `offset`, read without any check (for frames already checked). */
export function lengthField (bytes: Uint8Array, offset: number): number { return u32(bytes, offset) }

/** The offset of the first valid frame strictly after `offset`, or -1. Used only on damaged input. */
export function findNextFrame (bytes: Uint8Array, offset: number, seed: number): number {
  for (let at = offset + 1; at + FRAME_HEADER_BYTES < bytes.length; at++) {
    const length = u32(bytes, at) & FRAME_PAYLOAD_MAX
    if (length === 0 || length > bytes.length - at - FRAME_HEADER_BYTES) continue
    if (frameChecksum(bytes, at, length, seed) === u32(bytes, at + 4)) return at
  }
  return -1
}

/** A sync marker's payload: segment id and byte offset up to which the log was durable. */
export function encodeMark (segment: number, offset: number): Uint8Array {
  const out = new Uint8Array(12)
  putU32(out, 0, segment)
  putU32(out, 4, offset % 0x100000000)
  putU32(out, 8, Math.floor(offset / 0x100000000))
  return out
}

export function decodeMark (payload: Uint8Array, at = 0, length = payload.length - at): { segment: number; offset: number } | null {
  if (length !== 12) return null
  return { segment: u32(payload, at), offset: u32(payload, at + 4) + u32(payload, at + 8) * 0x100000000 }
}
