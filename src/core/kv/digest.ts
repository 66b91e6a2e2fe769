/**
 * Hashes for anti-entropy. Each key's digest is a 64-bit hash (as two 32-bit halves) of the key and its
 * version — its history vector, its siblings' dots and its LWW floor — never its values: two replicas with
 * the same dots hold the same values, since a dot names one write. A segment's hash is the XOR of the
 * digests of its keys, and the root over a set of segments hashes their segment hashes in order: the three
 * levels of the hash tree that two replicas compare top-down (root, segments, keys).
 *
 * Digests are cached per state object (states are immutable), so an unchanged key is hashed once.
 */
import type { KeyState } from '../version/dvv.js'

export type Hash64 = (input: string) => bigint

const MASK32 = 0xffffffffn

export class Digests {
  private readonly cache = new WeakMap<KeyState, readonly [number, number]>()

  constructor (private readonly hash64: Hash64) {}

  /** [hi, lo] of the key's version digest. */
  of (key: string, state: KeyState): readonly [number, number] {
    let d = this.cache.get(state)
    if (d !== undefined) return d
    let sig = key + '\u0000'
    const vv = state.vv
    for (let i = 0; i < vv.length; i += 2) sig += `${vv[i] as string}:${vv[i + 1] as number},`
    sig += '|'
    for (const s of state.siblings) sig += `${s.id}:${s.n}${s.value === null ? 'x' : ''},`
    const f = state.lwwFloor
    if (f !== null) sig += `|${f.id}:${f.n}:${f.wall}:${f.logical}`
    const h = this.hash64(sig)
    d = [Number(h >> 32n), Number(h & MASK32)]
    this.cache.set(state, d)
    return d
  }

  /** The root over segment hashes (2 numbers per segment, in segment order): a 52-bit number. */
  root (hashes: readonly number[]): number {
    const h = this.hash64(hashes.join(','))
    return Number(h & 0xfffffffffffffn)
  }
}

/** XORs a key's digest into a segment's leaf of a hash tree ([hi, lo] at 2s, 2s+1). */
export function xorInto (leaves: Uint32Array, segment: number, d: readonly [number, number]): void {
  leaves[2 * segment] = leaves[2 * segment]! ^ d[0]
  leaves[2 * segment + 1] = leaves[2 * segment + 1]! ^ d[1]
}
