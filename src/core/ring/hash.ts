/**
 * How a 64-bit hash becomes a ring position: its top 53 bits, which a JavaScript number holds exactly. The
 * 64-bit hash itself (xxHash64, seed 0) comes from an adapter so the core imports no library; every platform
 * uses the same one, so every peer places every key identically.
 */
import type { RingHash } from './ring.js'

/**
 * The name and version of how keys and tokens become ring positions: the 64-bit hash (xxHash64, seed 0, of
 * the key's or token's UTF-8 string, src/adapters/hash-xxhash.ts), its top 53 bits as the position
 * (`positionFromHash64`), tokens named `memberId#index`, and SEGMENT_COUNT fixed segments (ring.ts).
 * Members publish it and a member with another is refused (src/core/agreement.ts): two peers that map keys
 * differently would disagree on every preference list. Change the name whenever any of those changes.
 */
export const RING_HASH_SCHEME = 'xxh64-top53/1'

export function positionFromHash64 (h: bigint): number {
  return Number(BigInt.asUintN(64, h) >> 11n)
}

/** Builds a RingHash from any 64-bit string hash. */
export function ringHashFrom (hash64: (input: string) => bigint): RingHash {
  return (input: string) => positionFromHash64(hash64(input))
}
