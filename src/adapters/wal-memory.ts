/**
 * A WAL backend in memory, for unit tests and the simulator. Its bytes live in a MemoryVolume that outlives
 * the adapter, so a test can "restart" by opening a new adapter on the same volume, and `crash()` the volume to
 * lose exactly what was not synced — the behaviour of a disk after power loss, with no disk.
 */
import type { WalAdapter, WalListing } from '../core/storage/wal-adapter.js'

interface MemorySegment {
  bytes: Uint8Array
  length: number
  /** Bytes that survived the last sync. */
  durable: number
}

export class MemoryVolume {
  readonly segments = new Map<number, MemorySegment>()
  readonly snapshots = new Map<number, Uint8Array>()
  /** Segments whose creation is not yet durable. */
  readonly newSegments = new Set<number>()

  /** Drops everything not yet synced, as a power loss would. */
  crash (): void {
    for (const id of this.newSegments) this.segments.delete(id)
    this.newSegments.clear()
    for (const s of this.segments.values()) s.length = s.durable
  }

  /** The segment's current bytes (a copy). */
  read (id: number): Uint8Array {
    const s = this.segments.get(id)
    if (s === undefined) throw new Error(`no segment ${id}`)
    return s.bytes.slice(0, s.length)
  }

  /** Replaces a segment's bytes (durably): for tests that damage a log. */
  write (id: number, bytes: Uint8Array): void {
    this.segments.set(id, { bytes: bytes.slice(), length: bytes.length, durable: bytes.length })
  }
}

export class MemoryWal implements WalAdapter {
  readonly location: string
  private current: MemorySegment | null = null
  private currentId = -1

  constructor (readonly volume = new MemoryVolume(), name = 'memory', private readonly readChunkBytes = 4093) {
    this.location = name
  }

  async open (): Promise<WalListing> {
    const snapshots = [...this.volume.snapshots.keys()]
    return {
      segments: [...this.volume.segments.keys()].sort((a, b) => a - b),
      snapshot: snapshots.length === 0 ? null : snapshots.reduce((a, b) => Math.max(a, b))
    }
  }

  async readSegment (id: number): Promise<Uint8Array> { return this.volume.read(id) }

  /** In chunks of `readChunkBytes` (small by default, so tests cross chunk boundaries inside frames). */
  async * readSnapshot (id: number): AsyncGenerator<Uint8Array> {
    const s = this.volume.snapshots.get(id)
    if (s === undefined) throw new Error(`no snapshot ${id}`)
    for (let at = 0; at < s.length; at += this.readChunkBytes) yield s.subarray(at, at + this.readChunkBytes)
  }

  startSegment (id: number): void {
    this.current = { bytes: new Uint8Array(4096), length: 0, durable: 0 }
    this.currentId = id
    this.volume.segments.set(id, this.current)
    this.volume.newSegments.add(id)
  }

  append (bytes: Uint8Array): void {
    const s = this.current
    if (s === null) throw new Error('append before startSegment')
    if (s.length + bytes.length > s.bytes.length) {
      const grown = new Uint8Array(Math.max(s.bytes.length * 2, s.length + bytes.length))
      grown.set(s.bytes.subarray(0, s.length))
      s.bytes = grown
    }
    s.bytes.set(bytes, s.length)
    s.length += bytes.length
  }

  async sync (): Promise<void> {
    this.volume.newSegments.clear()
    for (const s of this.volume.segments.values()) s.durable = s.length
  }

  nextTurn (): Promise<void> { return Promise.resolve() }

  async truncateSegment (id: number, length: number): Promise<void> {
    const s = this.volume.segments.get(id)
    if (s === undefined) return
    s.length = Math.min(s.length, length)
    s.durable = Math.min(s.durable, s.length)
  }

  async writeSnapshot (id: number, chunks: Iterable<Uint8Array>): Promise<void> {
    const parts = [...chunks]
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
    let at = 0
    for (const p of parts) { out.set(p, at); at += p.length }
    this.volume.snapshots.set(id, out)
  }

  async dropBefore (id: number): Promise<void> {
    for (const k of [...this.volume.segments.keys()]) if (k < id) this.volume.segments.delete(k)
    for (const k of [...this.volume.snapshots.keys()]) if (k < id) this.volume.snapshots.delete(k)
  }

  async close (): Promise<void> {
    this.current = null
  }

  describe (kind: 'segment' | 'snapshot', id: number): string {
    return `${this.location} ${kind} ${id}`
  }

  get currentSegment (): number { return this.currentId }
}
