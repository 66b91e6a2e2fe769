/**
 * The 64-bit key hash: xxHash64 (seed 0) from xxhash-wasm, which carries its WebAssembly inline and gives
 * identical results in browsers and Node. Loading is asynchronous (WebAssembly compilation), so peers await
 * `loadRingHash()` once at start. Together with how positions and tokens are derived it is the ring hash
 * scheme named by RING_HASH_SCHEME (src/core/ring/hash.ts): change that name if this hash ever changes.
 */
import xxhash from 'xxhash-wasm'
import { ringHashFrom } from '../core/ring/hash.js'
import type { RingHash } from '../core/ring/ring.js'

let loading: Promise<{ hash64: (input: string) => bigint; ringHash: RingHash }> | undefined

async function load (): Promise<{ hash64: (input: string) => bigint; ringHash: RingHash }> {
  loading ??= xxhash().then(api => {
    const hash64 = (input: string): bigint => api.h64(input)
    return { hash64, ringHash: ringHashFrom(hash64) }
  })
  return loading
}

export async function loadRingHash (): Promise<RingHash> {
  return (await load()).ringHash
}

export async function loadHash64 (): Promise<(input: string) => bigint> {
  return (await load()).hash64
}
