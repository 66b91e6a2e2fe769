import { expect, it } from 'vitest'

it('Promise.withResolvers exists after the polyfill, native or not (libp2p 3 needs it on Node 20)', async () => {
  const native = (Promise as unknown as { withResolvers?: unknown }).withResolvers
  await import('../../src/polyfills.js')
  const { promise, resolve } = (Promise as unknown as { withResolvers: <T>() => { promise: Promise<T>; resolve: (v: T) => void } }).withResolvers<number>()
  resolve(42)
  expect(await promise).toBe(42)
  if (native !== undefined) expect((Promise as unknown as { withResolvers: unknown }).withResolvers).toBe(native)
})
