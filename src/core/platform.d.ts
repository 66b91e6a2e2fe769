// The only platform globals the pure core may use: WHATWG Encoding, which is identical in browsers and
// Node and has no side effects. This file is read only by tsconfig.core.json, which compiles src/core with
// no DOM and no Node types so that any other platform API fails to type-check.
interface TextEncoder {
  encode(input?: string): Uint8Array
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number }
}
declare var TextEncoder: { new (): TextEncoder }
interface TextDecoder {
  decode(input?: Uint8Array, options?: { stream?: boolean }): string
}
declare var TextDecoder: { new (label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean }): TextDecoder }
// AbortSignal is part of the ECMAScript host contract in every runtime meshkv supports; the core only
// observes it (never creates timers with it).
interface AbortSignal {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener(type: 'abort', listener: () => void): void
}
