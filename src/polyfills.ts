/**
 * The one polyfill meshkv needs: libp2p 3 calls Promise.withResolvers (ES2024), which Node 20 lacks. Feature-
 * detected, so on Node 22+ and current browsers it does nothing. Imported first by every entry point, before
 * anything that loads libp2p.
 */
interface WithResolvers<T> { promise: Promise<T>; resolve: (value: T | PromiseLike<T>) => void; reject: (reason?: unknown) => void }

const P = Promise as unknown as { withResolvers?: <T>() => WithResolvers<T> }
if (typeof P.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> (this: PromiseConstructor): WithResolvers<T> {
      let resolve!: WithResolvers<T>['resolve']
      let reject!: WithResolvers<T>['reject']
      const promise = new this<T>((a, b) => { resolve = a; reject = b })
      return { promise, resolve, reject }
    }
  })
}

export {}
