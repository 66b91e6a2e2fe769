/**
 * How a 64-bit hash becomes a ring position: its top 53 bits, which a JavaScript number holds exactly. The
 * 64-bit hash itself (xxHash64, seed 0) comes from an adapter so the core imports no library; every platform
 * uses the same one, so every peer places every key identically.
 */
import type { RingHash } from './ring.js'

export function positionFromHash64 (h: bigint): number {
  return Number(BigInt.asUintN(64, h) >> 11n)
}

/** Builds a RingHash from any 64-bit string hash. */
export function ringHashFrom (hash64: (input: string) => bigint): RingHash {
  return (input: string) => positionFromHash64(hash64(input))
}
