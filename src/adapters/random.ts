/** Randomness from the platform's CSPRNG (WebCrypto: browsers and Node alike), for salts and nonces. */
import type { Rng } from '../core/env.js'

const words = new Uint32Array(64)
let next = words.length

export const cryptoRng: Rng = {
  next (): number {
    if (next === words.length) { crypto.getRandomValues(words); next = 0 }
    return words[next++]! / 0x100000000
  }
}
