/**
 * The interface every write-ahead-log backend implements: files in Node, IndexedDB in browsers, memory in
 * tests and the simulator. It is deliberately dumb (automerge-repo's StorageAdapterInterface is the model):
 * it stores ordered byte segments and snapshot blobs and makes them durable when asked. Framing, checksums,
 * recovery, group commit and compaction live above it, in wal.ts, once for all backends.
 *
 * Segments have increasing numeric ids; a snapshot with id S holds the whole state as of the start of
 * segment S, so segments below S are obsolete once it is written.
 */

export interface WalListing {
  /** Ids of the segments present, ascending. */
  readonly segments: readonly number[]
  /** Id of the newest complete snapshot, or null. */
  readonly snapshot: number | null
}

export interface WalAdapter {
  /** Where the log lives, for messages: a directory, a database name. */
  readonly location: string

  /** Opens the backend (creating it if new) and lists what it holds. Called once, before anything else. */
  open(): Promise<WalListing>

  /** A whole segment (at most about the WAL's segmentBytesMax, so recovery can hold one at a time). */
  readSegment(id: number): Promise<Uint8Array>
  /**
   * A snapshot as consecutive chunks of bounded size (a snapshot is as large as the whole state, so it is
   * never read in one piece). A chunk belongs to the caller until it asks for the next one.
   */
  readSnapshot(id: number): AsyncIterable<Uint8Array>

  /**
   * Starts segment `id` (greater than every existing one) and directs all later appends to it. Its creation
   * is durable once a later `sync()` resolves.
   */
  startSegment(id: number): void

  /**
   * Queues bytes at the end of the current segment. Returns at once; the backend hands queued bytes to its
   * storage in order, soon (bounded by its own documented buffer size and delay), but they are durable only
   * once a `sync()` called after this append resolves. `bytes` is the backend's from then on, in a buffer of
   * its own (the WAL never reuses it), so the backend may keep it as it is.
   */
  append(bytes: Uint8Array): void

  /** Resolves when every byte appended before the call, in every segment, is durable. */
  sync(): Promise<void>

  /**
   * Resolves after the current event-loop turn (Node: setImmediate; browsers: a task). Group commit waits
   * for it before starting a queued sync, so the writers the previous sync woke have appended and share it.
   */
  nextTurn(): Promise<void>

  /** Cuts segment `id` to `length` bytes, durably (used to drop a torn tail during recovery). */
  truncateSegment(id: number, length: number): Promise<void>

  /**
   * Writes snapshot `id` from `chunks` so that it appears whole or not at all, and is durable when this
   * resolves. A crash midway leaves the previous snapshot in force.
   */
  writeSnapshot(id: number, chunks: Iterable<Uint8Array>): Promise<void>

  /** Deletes every segment and snapshot with an id below `id`. */
  dropBefore(id: number): Promise<void>

  /** Hands pending bytes to storage and releases the backend. Does not sync on its own. */
  close(): Promise<void>

  /** Names a segment or snapshot for an operator: a file path, a database key. */
  describe(kind: 'segment' | 'snapshot', id: number): string
}
