/**
 * Record framing for the log and snapshots, the one place that knows it:
 *
 *   file   = magic (8 bytes: "MKV" + kind + format version) then frames
 *   frame  = length (u32 LE, payload bytes, >= 1) | crc (u32 LE, CRC-32C of length bytes + payload) | payload
 *
 * The checksum covers the length too, so a flipped bit in a length is caught like one in a payload.
 * `scan` walks frames and classifies the first bad one; the WAL decides whether it is a torn tail or
 * corruption (see wal.ts).
 */
import { crc32c } from './crc32c.js'

export const FRAME_HEADER_BYTES = 8
export const MAGIC_BYTES = 8
/** "MKVW" + 0x00 0x00 0x00 format 1: a log segment. */
export const SEGMENT_MAGIC = Uint8Array.of(0x4d, 0x4b, 0x56, 0x57, 0, 0, 0, 1)
/** "MKVS" + 0x00 0x00 0x00 format 1: a snapshot. */
export const SNAPSHOT_MAGIC = Uint8Array.of(0x4d, 0x4b, 0x56, 0x53, 0, 0, 0, 1)

export function frameChecksum (bytes: Uint8Array, lengthAt: number, length: number): number {
  const crc = crc32c(bytes, 0, lengthAt, lengthAt + 4)
  return crc32c(bytes, crc, lengthAt + FRAME_HEADER_BYTES, lengthAt + FRAME_HEADER_BYTES + length)
}

/** Writes one frame around `payload` into `out` at `at` (which must have room); returns the frame's size. */
export function encodeFrameInto (out: Uint8Array, at: number, payload: Uint8Array): number {
  const length = payload.length
  out[at] = length & 0xff
  out[at + 1] = (length >>> 8) & 0xff
  out[at + 2] = (length >>> 16) & 0xff
  out[at + 3] = length >>> 24
  out.set(payload, at + FRAME_HEADER_BYTES)
  const crc = frameChecksum(out, at, length)
  out[at + 4] = crc & 0xff
  out[at + 5] = (crc >>> 8) & 0xff
  out[at + 6] = (crc >>> 16) & 0xff
  out[at + 7] = crc >>> 24
  return FRAME_HEADER_BYTES + length
}

/** One frame around `payload`, in a new array. */
export function encodeFrame (payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  encodeFrameInto(out, 0, payload)
  return out
}

export type ScanStep =
  | { kind: 'record'; offset: number; payload: Uint8Array }
  | { kind: 'bad'; offset: number; reason: string }
  | { kind: 'end' }

/** Reads the frame at `offset`. A 'bad' step means the bytes at `offset` are not a valid frame. */
export function readFrame (bytes: Uint8Array, offset: number, view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)): ScanStep {
  const remaining = bytes.length - offset
  if (remaining === 0) return { kind: 'end' }
  if (remaining < FRAME_HEADER_BYTES) return { kind: 'bad', offset, reason: `partial frame header (${remaining} bytes)` }
  const length = view.getUint32(offset, true)
  if (length === 0) return { kind: 'bad', offset, reason: 'zero-length frame' }
  if (length > remaining - FRAME_HEADER_BYTES) return { kind: 'bad', offset, reason: `frame of ${length} bytes runs past the end (${remaining - FRAME_HEADER_BYTES} left)` }
  const stored = view.getUint32(offset + 4, true)
  if (frameChecksum(bytes, offset, length) !== stored) return { kind: 'bad', offset, reason: 'checksum mismatch' }
  return { kind: 'record', offset, payload: bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length) }
}

/** The offset of the first valid frame strictly after `offset`, or -1. Used only on damaged input. */
export function findNextFrame (bytes: Uint8Array, offset: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let at = offset + 1; at + FRAME_HEADER_BYTES < bytes.length; at++) {
    const length = view.getUint32(at, true)
    if (length === 0 || length > bytes.length - at - FRAME_HEADER_BYTES) continue
    if (frameChecksum(bytes, at, length) === view.getUint32(at + 4, true)) return at
  }
  return -1
}

export function hasMagic (bytes: Uint8Array, magic: Uint8Array): boolean {
  if (bytes.length < magic.length) return false
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false
  return true
}
