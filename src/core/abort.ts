/**
 * AbortSignal support for the core's async calls. Aborting stops the caller waiting; it cannot un-apply a
 * write already handed to the log, so an aborted write's outcome is unknown to the caller (as with a
 * timed-out network request).
 */
import { AbortError } from './errors.js'

export function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortError(signal.reason)
}

export function raceAbort<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(new AbortError(signal.reason))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(new AbortError(signal.reason)) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      value => { signal.removeEventListener('abort', onAbort); resolve(value) },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error) }
    )
  })
}
