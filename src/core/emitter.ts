/**
 * A minimal typed event emitter for the core (node:events and EventTarget are platform APIs). Listeners run
 * synchronously in registration order; a throwing listener is reported to `onListenerError` and does not
 * stop the others or the code that emitted.
 */
export type Listener<T> = (event: T) => void

export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>()

  constructor (private readonly onListenerError: (error: unknown) => void = () => {}) {}

  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(listener as Listener<never>)
    return () => { set.delete(listener as Listener<never>) }
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const set = this.listeners.get(name)
    if (set === undefined) return
    for (const listener of set) {
      try {
        (listener as Listener<Events[K]>)(event)
      } catch (error) {
        this.onListenerError(error)
      }
    }
  }
}
