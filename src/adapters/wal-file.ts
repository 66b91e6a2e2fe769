/**
 * The WAL backend for Node: a directory of append-only segment files and snapshot files.
 *
 *   <dir>/LOCK                 pid of the process using the directory (stale locks of dead pids are taken over)
 *   <dir>/0000000007.wal       segment 7
 *   <dir>/0000000005.snap      snapshot 5: the state as of the start of segment 5
 *
 * Appends are buffered and written to the OS in one write per event-loop turn (or at once when
 * `bufferBytesMax` is reached), into space zero-filled ahead of them (`preallocateBytes` at a time, as
 * PostgreSQL and etcd do with their logs): an fdatasync of data written inside the file's existing size
 * need not commit a filesystem journal transaction for a new size and new blocks, which made it about a
 * third faster here (100 vs 155 us). Recovery reads a zero-filled remainder as the clean end of a segment;
 * a sealed segment is cut back to its data. `sync()` writes what is buffered and fdatasyncs every segment with unsynced
 * bytes, and the directory when a segment was created since the last sync, so the new file's name is durable
 * too. fdatasync runs on libuv's thread pool, so the next group of writers keeps appending meanwhile.
 * Snapshots are written to a temporary file, fdatasynced, renamed into place and the directory fsynced.
 *
 * After any failed write or sync the adapter refuses everything: Linux reports a writeback error to fsync
 * once and may drop the dirty pages, so a retry could falsely report success.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { integer } from '../core/config.js'
import { WalFailedError } from '../core/errors.js'
import { lockDirectory } from './dir-lock.js'
import type { WalAdapter, WalListing } from '../core/storage/wal-adapter.js'
import { nextTurn } from './next-turn.js'

export interface FileWalOptions {
  /** Buffered bytes beyond which an append writes to the OS at once instead of at the end of the turn.
   * Default 1 MiB. */
  bufferBytesMax?: number
  /**
   * Background fdatasync period in ms for writes made with `async` durability (0 disables): bounds what a
   * machine crash can lose. Default 1000.
   */
  backgroundSyncMs?: number
  /** Zero-filled space kept ahead of the write position, in bytes (0 disables). Default 1 MiB. */
  preallocateBytes?: number
  /** Bytes read at a time from a snapshot during recovery (the read buffer). Default 1 MiB. */
  readChunkBytes?: number
  /**
   * Told the duration in ms of every successful sync (the segment's fdatasync and the sealed-segment and
   * directory fsyncs it waits for): the fsync histogram of the Node CLI's metrics. None by default.
   */
  observeSyncMs?: (durationMs: number) => void
}

const SEGMENT_RE = /^(\d{10})\.wal$/
const SNAPSHOT_RE = /^(\d{10})\.snap$/

function pad (id: number): string { return String(id).padStart(10, '0') }

function fdatasync (fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, error => { if (error === null) resolve(); else reject(error) })
  })
}

function write (fd: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.write(fd, bytes, 0, bytes.length, null, (error, written) => {
      if (error !== null) reject(error)
      else if (written < bytes.length) write(fd, bytes.subarray(written)).then(resolve, reject)
      else resolve()
    })
  })
}

function writeAllSync (fd: number, bytes: Uint8Array, position: number): void {
  let at = 0
  while (at < bytes.length) at += fs.writeSync(fd, bytes, at, bytes.length - at, position + at)
}

let zeroBuffer = new Uint8Array(0)
function zeros (bytes: number): Uint8Array {
  if (zeroBuffer.length !== bytes) zeroBuffer = new Uint8Array(bytes)
  return zeroBuffer
}

function fsyncDir (dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try { fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
}

export class FileWal implements WalAdapter {
  readonly location: string
  private readonly bufferBytesMax: number
  private readonly backgroundSyncMs: number
  private readonly preallocateBytes: number
  private readonly readChunkBytes: number
  private fd = -1
  /** Where the next bytes go in the current segment, and how far it is zero-filled. */
  private writeOffset = 0
  private allocated = 0
  /** Segments closed for appends whose last bytes still need an fdatasync. */
  private sealed: number[] = []
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  /** Bytes appended in all, and how many of them the latest completed sync covered (syncs may overlap). */
  private appendedBytes = 0
  private syncedBytes = 0
  private dirDirty = false
  /** The fsyncs of sealed segments and of the directory started by earlier syncs (they may overlap). */
  private metadataSynced: Promise<void> = Promise.resolve()
  private flushScheduled: NodeJS.Immediate | null = null
  private backgroundTimer: NodeJS.Timeout | null = null
  private failure: WalFailedError | null = null
  private unlock: (() => void) | null = null
  private readonly observeSyncMs: ((durationMs: number) => void) | undefined

  constructor (readonly dir: string, options: FileWalOptions = {}) {
    this.location = dir
    this.bufferBytesMax = options.bufferBytesMax ?? 1024 * 1024
    this.backgroundSyncMs = options.backgroundSyncMs ?? 1000
    this.preallocateBytes = options.preallocateBytes ?? 1024 * 1024
    this.readChunkBytes = options.readChunkBytes ?? 1024 * 1024
    this.observeSyncMs = options.observeSyncMs
    integer('bufferBytesMax', this.bufferBytesMax, 1, 1024 * 1024 * 1024)
    integer('backgroundSyncMs', this.backgroundSyncMs, 0, 24 * 3600 * 1000)
    integer('preallocateBytes', this.preallocateBytes, 0, 1024 * 1024 * 1024)
    integer('readChunkBytes', this.readChunkBytes, 4096, 256 * 1024 * 1024)
  }

  private file (name: string): string { return path.join(this.dir, name) }

  async open (): Promise<WalListing> {
    fs.mkdirSync(this.dir, { recursive: true })
    this.unlock = lockDirectory(this.dir)
    const segments: number[] = []
    const snapshots: number[] = []
    for (const name of fs.readdirSync(this.dir)) {
      const seg = SEGMENT_RE.exec(name)
      const snap = SNAPSHOT_RE.exec(name)
      if (seg !== null) segments.push(Number(seg[1]))
      else if (snap !== null) snapshots.push(Number(snap[1]))
      else if (name.endsWith('.snap.tmp')) fs.rmSync(this.file(name), { force: true }) // a snapshot cut short
    }
    segments.sort((a, b) => a - b)
    if (this.backgroundSyncMs > 0) {
      this.backgroundTimer = setInterval(() => {
        if (this.appendedBytes > this.syncedBytes && this.failure === null) this.sync().catch(() => {})
      }, this.backgroundSyncMs)
      this.backgroundTimer.unref()
    }
    return { segments, snapshot: snapshots.length === 0 ? null : snapshots.reduce((a, b) => Math.max(a, b)) }
  }

  async readSegment (id: number): Promise<Uint8Array> {
    // A view, not a copy: readFile gives a file this large a buffer of its own (not Node's shared pool).
    const data = await fs.promises.readFile(this.file(`${pad(id)}.wal`))
    return data.byteLength >= Buffer.poolSize ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data)
  }

  async * readSnapshot (id: number): AsyncGenerator<Uint8Array> {
    const handle = await fs.promises.open(this.file(`${pad(id)}.snap`), 'r')
    try {
      // One buffer, reused: the caller copies what it keeps before asking for the next chunk.
      const buffer = new Uint8Array(this.readChunkBytes)
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, null)
        if (bytesRead === 0) return
        yield buffer.subarray(0, bytesRead)
      }
    } finally {
      await handle.close()
    }
  }

  private check (): void {
    if (this.failure !== null) throw this.failure
  }

  private fail (error: unknown): WalFailedError {
    this.failure ??= new WalFailedError(this.dir, error)
    return this.failure
  }

  startSegment (id: number): void {
    this.check()
    try {
      if (this.fd >= 0) {
        this.flush()
        fs.ftruncateSync(this.fd, this.writeOffset) // drop the zero-filled space; durable with the next sync
        this.sealed.push(this.fd)
      }
      this.fd = fs.openSync(this.file(`${pad(id)}.wal`), 'wx')
      this.writeOffset = 0
      this.allocated = 0
      this.dirDirty = true
    } catch (error) {
      throw this.fail(error)
    }
  }

  append (bytes: Uint8Array): void {
    this.check()
    this.pending.push(bytes)
    this.pendingBytes += bytes.length
    this.appendedBytes += bytes.length
    if (this.pendingBytes >= this.bufferBytesMax) this.flush()
    else this.flushScheduled ??= setImmediate(() => { this.flushScheduled = null; this.flushQuietly() })
  }

  private flushQuietly (): void {
    try { this.flush() } catch { /* recorded in this.failure; the next sync reports it */ }
  }

  /** Writes buffered bytes to the current segment (to the OS, not yet durable). */
  private flush (): void {
    if (this.pendingBytes === 0) return
    const parts = this.pending
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    try {
      while (this.preallocateBytes > 0 && this.allocated < this.writeOffset + bytes.length) {
        writeAllSync(this.fd, zeros(this.preallocateBytes), this.allocated)
        this.allocated += this.preallocateBytes
      }
      writeAllSync(this.fd, bytes, this.writeOffset)
      this.writeOffset += bytes.length
    } catch (error) {
      throw this.fail(error)
    }
  }

  /**
   * Syncs may overlap (the WAL keeps up to two in flight), so each one also waits for the sealed-segment and
   * directory fsyncs that earlier ones started: it must not report bytes durable that another is still
   * syncing.
   */
  async sync (): Promise<void> {
    this.check()
    const startedMs = this.observeSyncMs === undefined ? 0 : performance.now()
    this.flush()
    const sealed = this.sealed
    this.sealed = []
    const dirDirty = this.dirDirty
    this.dirDirty = false
    const covers = this.appendedBytes
    const earlier = this.metadataSynced
    const metadata = (async () => {
      await earlier // rejects if an earlier sync's metadata fsyncs failed: then this one fails too
      await Promise.all(sealed.map(async fd => { await fdatasync(fd); fs.closeSync(fd) }))
      if (dirDirty) fsyncDir(this.dir)
    })()
    this.metadataSynced = metadata
    metadata.catch(() => {}) // observed by this sync and the next; no unhandled rejection meanwhile
    try {
      await Promise.all([metadata, fdatasync(this.fd)])
    } catch (error) {
      throw this.fail(error)
    }
    // Another sync (or the background one) may have failed while this one waited: after a failed fsync
    // nothing can be assumed durable, whatever this fdatasync returned.
    this.check()
    if (covers > this.syncedBytes) this.syncedBytes = covers
    this.observeSyncMs?.(performance.now() - startedMs)
  }

  nextTurn (): Promise<void> {
    return nextTurn()
  }

  async truncateSegment (id: number, length: number): Promise<void> {
    const fd = fs.openSync(this.file(`${pad(id)}.wal`), 'r+')
    try {
      fs.ftruncateSync(fd, length)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }

  async writeSnapshot (id: number, chunks: Iterable<Uint8Array>): Promise<void> {
    this.check()
    const tmp = this.file(`${pad(id)}.snap.tmp`)
    const fd = fs.openSync(tmp, 'w')
    try {
      for (const chunk of chunks) await write(fd, chunk)
      await fdatasync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, this.file(`${pad(id)}.snap`))
    fsyncDir(this.dir)
  }

  async dropBefore (id: number): Promise<void> {
    for (const name of fs.readdirSync(this.dir)) {
      const m = SEGMENT_RE.exec(name) ?? SNAPSHOT_RE.exec(name)
      if (m !== null && Number(m[1]) < id) fs.rmSync(this.file(name), { force: true })
    }
    fsyncDir(this.dir)
  }

  async close (): Promise<void> {
    if (this.flushScheduled !== null) clearImmediate(this.flushScheduled)
    this.flushScheduled = null
    if (this.backgroundTimer !== null) clearInterval(this.backgroundTimer)
    this.backgroundTimer = null
    try {
      if (this.failure === null && this.fd >= 0) {
        this.flush()
        fs.ftruncateSync(this.fd, this.writeOffset) // a clean close leaves no zero-filled space behind
      }
    } finally {
      for (const fd of [...this.sealed, this.fd]) if (fd >= 0) fs.closeSync(fd)
      this.sealed = []
      this.fd = -1
      this.unlock?.()
      this.unlock = null
    }
  }

  describe (kind: 'segment' | 'snapshot', id: number): string {
    return this.file(`${pad(id)}.${kind === 'segment' ? 'wal' : 'snap'}`)
  }
}
