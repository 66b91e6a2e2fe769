/**
 * Every failure meshkv reports has its own class carrying the data a caller needs to act on it. Callers and
 * tests branch on the class or on `name`/`code`, never on the message text, which is for people.
 */

/** What a caught value says, for a log line or an error reply: its message if it is an Error. */
export function errorMessage (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export abstract class MeshkvError extends Error {
  /** Stable machine-readable code, e.g. `ERR_WAL_CORRUPT`. */
  abstract readonly code: string
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A configuration value is missing, of the wrong type, or out of its documented range. */
export class ConfigError extends MeshkvError {
  readonly code = 'ERR_CONFIG'
  constructor (readonly field: string, readonly reason: string) {
    super(`invalid config ${field}: ${reason}`)
  }
}

/** A key is empty, not a string, or longer than the limit (UTF-8 bytes). */
export class InvalidKeyError extends MeshkvError {
  readonly code = 'ERR_INVALID_KEY'
  constructor (readonly reason: string, readonly bytes?: number, readonly limit?: number) {
    super(`invalid key: ${reason}`)
  }
}

/** A value is larger than the configured limit. */
export class ValueTooLargeError extends MeshkvError {
  readonly code = 'ERR_VALUE_TOO_LARGE'
  constructor (readonly bytes: number, readonly limit: number) {
    super(`value of ${bytes} bytes exceeds the limit of ${limit} bytes`)
  }
}

/** A causal context handed back by a client cannot be decoded or exceeds its bounds. */
export class InvalidContextError extends MeshkvError {
  readonly code = 'ERR_INVALID_CONTEXT'
  constructor (readonly reason: string) {
    super(`invalid causal context: ${reason}`)
  }
}

/** A listing's cursor is not one a listing returned (not base64url of a UTF-8 key within the key limit, or
 * not under the listing's prefix). */
export class InvalidCursorError extends MeshkvError {
  readonly code = 'ERR_INVALID_CURSOR'
  constructor (readonly reason: string) {
    super(`invalid listing cursor: ${reason}`)
  }
}

/**
 * A local write would leave a key with more siblings than `siblingsMax`. The write is refused (nothing is
 * dropped); the client must read the key and write back a resolved value with the context it got.
 */
export class SiblingLimitError extends MeshkvError {
  readonly code = 'ERR_SIBLING_LIMIT'
  constructor (readonly key: string, readonly siblings: number, readonly limit: number) {
    super(`key ${JSON.stringify(key)} would have ${siblings} siblings, more than the limit of ${limit}; read it and write a resolved value with its context`)
  }
}

/** An encoded record (a key's whole state) would exceed `walRecordBytesMax`. */
export class RecordTooLargeError extends MeshkvError {
  readonly code = 'ERR_RECORD_TOO_LARGE'
  constructor (readonly bytes: number, readonly limit: number) {
    super(`record of ${bytes} bytes exceeds walRecordBytesMax=${limit}`)
  }
}

/**
 * Recovery met a record whose checksum or length is wrong before the tail of the log. Recovery stops: the
 * data after it may be intact, and silently dropping it would lose acknowledged writes. The operator can
 * inspect `location`/`offset` and reopen with `onCorruption: 'skip'` to drop just the damaged record.
 */
export class WalCorruptError extends MeshkvError {
  readonly code = 'ERR_WAL_CORRUPT'
  constructor (readonly location: string, readonly offset: number, readonly reason: string) {
    super(`corrupt WAL record in ${location} at offset ${offset}: ${reason}; reopen with onCorruption: 'skip' (CLI: --wal-skip-corrupt) to drop it and continue`)
  }
}

/** The log's bytes are not a meshkv WAL (wrong magic or unknown format version). */
export class WalFormatError extends MeshkvError {
  readonly code = 'ERR_WAL_FORMAT'
  constructor (readonly location: string, readonly reason: string) {
    super(`${location} is not a readable meshkv WAL: ${reason}`)
  }
}

/**
 * A write or sync of the log failed. After a failed fsync the kernel may have dropped the dirty pages, so
 * the log cannot tell what is durable: it refuses every later write until it is reopened (and recovered).
 */
export class WalFailedError extends MeshkvError {
  readonly code = 'ERR_WAL_FAILED'
  constructor (readonly location: string, cause: unknown) {
    super(`WAL ${location} failed and refuses further writes until reopened: ${errorMessage(cause)}`, { cause })
  }
}

/** An operation was attempted on a store or log that is closed. */
export class ClosedError extends MeshkvError {
  readonly code = 'ERR_CLOSED'
  constructor (readonly what: string) {
    super(`${what} is closed`)
  }
}

/** An operation was aborted through its AbortSignal. */
export class AbortError extends MeshkvError {
  readonly code = 'ERR_ABORTED'
  constructor (readonly reason?: unknown) {
    super('the operation was aborted')
  }
}

/** Bytes from a peer, a file or a client could not be decoded into the expected structure. */
export class DecodeError extends MeshkvError {
  readonly code = 'ERR_DECODE'
  constructor (readonly what: string, readonly reason: string) {
    super(`cannot decode ${what}: ${reason}`)
  }
}

/** Another live process holds the data directory (or database) this one tried to open. */
export class LockedError extends MeshkvError {
  readonly code = 'ERR_LOCKED'
  constructor (readonly location: string, readonly holder: string) {
    super(`${location} is in use by ${holder}; two peers must not share a data directory`)
  }
}

/**
 * A write or read could not gather its quorum: `acked` replicas answered where `required` were needed (out
 * of `replicas` tried). A failed write may still be stored on the replicas that acked; it is not reported as
 * successful, and a later read may or may not see it.
 */
export class QuorumError extends MeshkvError {
  readonly code = 'ERR_QUORUM'
  constructor (readonly op: 'put' | 'delete' | 'get', readonly acked: number, readonly required: number, readonly replicas: number, readonly reasons: readonly string[] = []) {
    super(`${op} reached ${acked} of the ${required} replicas it needs (${replicas} tried)${reasons.length > 0 ? ': ' + reasons.slice(0, 3).join('; ') : ''}`)
  }
}

/** A peer did not answer a request within its time limit. */
export class TimeoutError extends MeshkvError {
  readonly code = 'ERR_TIMEOUT'
  constructor (readonly peer: string, readonly timeoutMs: number) {
    super(`peer ${peer} did not answer within ${timeoutMs} ms`)
  }
}

/** No stream to a peer could be opened, or it broke with requests outstanding. */
export class UnreachableError extends MeshkvError {
  readonly code = 'ERR_UNREACHABLE'
  constructor (readonly peer: string, readonly reason: string) {
    super(`peer ${peer} is unreachable: ${reason}`)
  }
}

/** A bounded queue is full: too many requests are outstanding to one peer. Retry later. */
export class OverloadedError extends MeshkvError {
  get code (): 'ERR_OVERLOADED' { return 'ERR_OVERLOADED' }
  readonly what: string
  readonly limit: number
  /**
   * Without a stack trace: an overloaded peer refuses tens of thousands of beats a second, and capturing
   * each refusal's stack took 14% of such a peer's CPU in the heartbeat benchmark's overload run, besides
   * the garbage. The message says where it came from. V8 (Node, Chromium) honours the limit; other engines
   * capture a stack as usual.
   */
  constructor (what: string, limit: number) {
    const V8Error = Error as ErrorConstructor & { stackTraceLimit?: number }
    const stackLimit = V8Error.stackTraceLimit
    if (typeof stackLimit === 'number') V8Error.stackTraceLimit = 0
    try {
      super(`${what}: more than ${limit} outstanding requests`)
    } finally {
      if (typeof stackLimit === 'number') V8Error.stackTraceLimit = stackLimit
    }
    this.what = what
    this.limit = limit
  }
}

/** A peer answered a request with an error of its own; `remoteCode` is that error's code. */
export class RemoteError extends MeshkvError {
  readonly code = 'ERR_REMOTE'
  constructor (readonly peer: string, readonly remoteCode: string, readonly remoteMessage: string) {
    super(`peer ${peer} answered ${remoteCode}: ${remoteMessage}`)
  }
}

/**
 * A write could not reach the durable replicas it needs (`dw`, the mesh's `durableAcks` at least): too few
 * durable members (Node peers) are up, or those tried failed. Tabs alone never acknowledge a write; like a
 * QuorumError, the write may still have reached some replicas.
 */
export class NoDurableReplicaError extends MeshkvError {
  readonly code = 'ERR_NO_DURABLE_REPLICA'
  constructor (readonly op: 'put' | 'delete', readonly acked: number, readonly required: number, readonly available: number, readonly reasons: readonly string[] = []) {
    super(`${op} needs ${required} durable replica${required === 1 ? '' : 's'} to acknowledge it; ${acked} did, of ${available} up${reasons.length > 0 ? ': ' + reasons.slice(0, 3).join('; ') : ''}`)
  }
}

/** This peer is leaving the mesh: it hands its data off and takes no new writes. */
export class LeavingError extends MeshkvError {
  readonly code = 'ERR_LEAVING'
  constructor (readonly peer: string) {
    super(`peer ${peer} is leaving the mesh and takes no new writes`)
  }
}

/**
 * The store holds as much as its memory budget allows (`memoryBytesMax`, the CLI's --memory-max-mb): a write
 * that would grow it further is refused (reads, deletes and writes that shrink a key still work). Merges
 * from other replicas are taken up to a hard margin above the budget, then refused too. In recovery: the log
 * holds more than the budget allows, and the peer stops before replaying the rest.
 */
export class StoreFullError extends MeshkvError {
  readonly code = 'ERR_STORE_FULL'
  constructor (readonly heldBytes: number, readonly limitBytes: number, readonly during: 'write' | 'merge' | 'recovery') {
    super(during === 'recovery'
      ? `the log holds more than the memory budget allows: ${heldBytes} bytes of keys and values replayed so far, past the limit of ${limitBytes} (the budget, --memory-max-mb, plus 25%); recovery stopped before the heap ran out. Start with a larger --memory-max-mb (and a larger heap: node --max-old-space-size) or move data off this peer`
      : `the store is full: ${heldBytes} bytes held, the ${during === 'merge' ? 'hard limit for merges from other replicas' : 'memory budget'} is ${limitBytes} bytes; delete keys or raise --memory-max-mb`)
  }
}

/**
 * A peer was refused (or refused this one) because the two disagree on a setting every member of a mesh
 * must share (src/core/agreement.ts): N, `minDurable`, the protocol version or the ring hash scheme.
 * `reason` names each setting with both values, this peer's first (`n=5 here, n=3 there`).
 */
export class IncompatiblePeerError extends MeshkvError {
  readonly code = 'ERR_INCOMPATIBLE_PEER'
  constructor (readonly peer: string, readonly reason: string) {
    super(`peer ${peer} and this one cannot share a mesh: ${reason}`)
  }
}
