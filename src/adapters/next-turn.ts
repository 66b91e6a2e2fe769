/**
 * Runs a callback once the current event-loop turn's I/O has been handled: Node's `setImmediate` (after the
 * poll phase, so every socket that was readable in this turn has delivered its data first), and in browsers
 * a MessageChannel task (not `setTimeout(0)`, which is clamped to 4 ms when nested and to 1 s in hidden
 * tabs). Callers batch what arrives meanwhile: the RPC links send everything queued in one turn as one frame,
 * and the WAL adapters' nextTurn (group commit) lets the writers a sync woke append before the next one.
 */
type Callback = () => void

let schedule: (fn: Callback) => void
if (typeof setImmediate === 'function') {
  schedule = fn => { setImmediate(fn) }
} else {
  // One channel, and a FIFO of callbacks: each posted message runs the oldest.
  const pending: Callback[] = []
  const channel = new MessageChannel()
  channel.port1.onmessage = () => { pending.shift()?.() }
  schedule = fn => {
    pending.push(fn)
    channel.port2.postMessage(null)
  }
}

export function afterTurn (fn: Callback): void {
  schedule(fn)
}

/** afterTurn as a promise (WalAdapter.nextTurn). */
export function nextTurn (): Promise<void> {
  return new Promise(resolve => { schedule(resolve) })
}
