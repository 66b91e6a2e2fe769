/**
 * The WAL backend for browsers: one IndexedDB database per peer (`meshkv-<peerId>`, object store `wal`),
 * with idb-keyval's request helpers. Keys are arrays, so one store holds everything in order:
 *
 *   [0, segment, chunk] -> bytes    a segment is the concatenation of its chunks
 *   [1, snapshot, chunk] -> bytes   a snapshot being written or written
 *   [2, snapshot] -> chunk count    the marker that makes snapshot complete (written last)
 *
 * A group commit is one readwrite transaction holding every byte appended since the previous one, opened
 * with `durability: 'strict'` by default (Chromium defaults to 'relaxed', which may lose committed
 * transactions on a power cut); a transaction's `complete` event is the durability point. A volatile tab
 * (web/main.ts) asks for 'relaxed': its copy never counts as a durable acknowledgement, so it need not pay a
 * disk flush per commit. Appends made with `async` durability are committed at the end of the current task.
 */
import { promisifyRequest } from 'idb-keyval'
import type { WalAdapter, WalListing } from '../core/storage/wal-adapter.js'
import { nextTurn } from './next-turn.js'

const STORE = 'wal'
const SEGMENT = 0
const SNAPSHOT_CHUNK = 1
const SNAPSHOT_MARKER = 2

export interface IndexedDbWalOptions {
  /** The IDBFactory to use; defaults to the global `indexedDB`. */
  indexedDB?: IDBFactory
  /** Bytes buffered before a commit starts at once rather than at the end of the task. Default 1 MiB. */
  bufferBytesMax?: number
  /**
   * The commit's IndexedDB durability hint: 'strict' (the default) flushes to the disk before a commit
   * completes; 'relaxed' completes once the browser has the data (it survives the tab closing or crashing,
   * not a power cut or an OS crash).
   */
  durability?: 'strict' | 'relaxed'
}

/** Reading a segment or snapshot: chunks in the first request, at most in any, and bytes aimed at per request. */
const READ_BATCH_FIRST = 16
const READ_BATCH_MAX = 65_536
const READ_BATCH_BYTES = 8 * 1024 * 1024

function concat (parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  let total = 0
  for (const p of parts) total += p.length
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

export class IndexedDbWal implements WalAdapter {
  readonly location: string
  private db: IDBDatabase | null = null
  private readonly factory: IDBFactory
  private readonly bufferBytesMax: number
  private readonly durability: 'strict' | 'relaxed'
  private segment = -1
  private nextChunk = 0
  /** Chunks sealed (a segment ended) but not yet committed. */
  private sealed: Array<{ key: IDBValidKey; bytes: Uint8Array }> = []
  private parts: Uint8Array[] = []
  private partsBytes = 0
  private lastCommit: Promise<void> = Promise.resolve()
  private scheduled = false
  private failure: unknown = null

  constructor (readonly name: string, options: IndexedDbWalOptions = {}) {
    this.location = `indexeddb:${name}`
    this.factory = options.indexedDB ?? indexedDB
    this.bufferBytesMax = options.bufferBytesMax ?? 1024 * 1024
    this.durability = options.durability ?? 'strict'
    if (this.durability !== 'strict' && this.durability !== 'relaxed') throw new TypeError(`durability must be 'strict' or 'relaxed', got ${String(this.durability)}`)
  }

  private get store (): IDBDatabase {
    if (this.db === null) throw new Error(`${this.location} is not open`)
    return this.db
  }

  private tx (mode: IDBTransactionMode): { tx: IDBTransaction; store: IDBObjectStore; done: Promise<void> } {
    const tx = this.store.transaction(STORE, mode, { durability: mode === 'readwrite' ? this.durability : 'default' })
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => { resolve() }
      tx.onerror = () => { reject(tx.error ?? new Error('IndexedDB transaction failed')) }
      tx.onabort = () => { reject(tx.error ?? new Error('IndexedDB transaction aborted')) }
    })
    return { tx, store: tx.objectStore(STORE), done }
  }

  async open (): Promise<WalListing> {
    const request = this.factory.open(this.name, 1)
    request.onupgradeneeded = () => { request.result.createObjectStore(STORE) }
    this.db = await promisifyRequest(request)
    const { store, done } = this.tx('readonly')
    const keys = await promisifyRequest(store.getAllKeys())
    await done
    const segments = new Set<number>()
    const markers: number[] = []
    const chunkedSnapshots = new Set<number>()
    for (const key of keys as Array<[number, number, number?]>) {
      if (key[0] === SEGMENT) segments.add(key[1])
      else if (key[0] === SNAPSHOT_MARKER) markers.push(key[1])
      else if (key[0] === SNAPSHOT_CHUNK) chunkedSnapshots.add(key[1])
    }
    // Chunks of a snapshot with no marker were cut short by a crash: remove them.
    const orphans = [...chunkedSnapshots].filter(id => !markers.includes(id))
    if (orphans.length > 0) {
      const w = this.tx('readwrite')
      for (const id of orphans) w.store.delete(IDBKeyRange.bound([SNAPSHOT_CHUNK, id], [SNAPSHOT_CHUNK, id, Infinity]))
      await w.done
    }
    return { segments: [...segments].sort((a, b) => a - b), snapshot: markers.length === 0 ? null : markers.reduce((a, b) => Math.max(a, b)) }
  }

  /**
   * The stored chunks of a segment or snapshot, in order, in batches of about READ_BATCH_BYTES (a segment
   * written by small group commits holds one chunk per commit, maybe hundreds of thousands of them, while a
   * snapshot's chunks are about 1 MiB each): each batch is one request, sized by the chunks seen so far.
   */
  private async * chunks (kind: number, id: number): AsyncGenerator<Uint8Array> {
    let from = 0
    let count = READ_BATCH_FIRST
    for (;;) {
      const { store, done } = this.tx('readonly')
      const range = IDBKeyRange.bound([kind, id, from], [kind, id, Infinity])
      const [keys, values] = await Promise.all([
        promisifyRequest(store.getAllKeys(range, count)),
        promisifyRequest(store.getAll(range, count)) as Promise<Uint8Array[]>
      ])
      await done
      let bytes = 0
      for (const value of values) bytes += value.length
      for (const value of values) yield value
      if (values.length < count) return
      from = (keys[keys.length - 1] as [number, number, number])[2] + 1
      count = Math.max(READ_BATCH_FIRST, Math.min(READ_BATCH_MAX, Math.floor(READ_BATCH_BYTES / Math.max(1, bytes / values.length))))
    }
  }

  async readSegment (id: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = []
    for await (const chunk of this.chunks(SEGMENT, id)) parts.push(chunk)
    return concat(parts)
  }

  readSnapshot (id: number): AsyncIterable<Uint8Array> {
    return this.chunks(SNAPSHOT_CHUNK, id)
  }

  private seal (): void {
    if (this.partsBytes === 0) return
    this.sealed.push({ key: [SEGMENT, this.segment, this.nextChunk++], bytes: concat(this.parts) })
    this.parts = []
    this.partsBytes = 0
  }

  startSegment (id: number): void {
    this.seal()
    this.segment = id
    this.nextChunk = 0
  }

  append (bytes: Uint8Array): void {
    if (this.failure !== null) throw this.failure
    this.parts.push(bytes) // its own buffer (WalAdapter.append), so storing it clones just these bytes
    this.partsBytes += bytes.length
    if (this.partsBytes >= this.bufferBytesMax) this.commit()
    else if (!this.scheduled) {
      this.scheduled = true
      setTimeout(() => { this.scheduled = false; if (this.db !== null) this.commit() }, 0)
    }
  }

  /** Starts one transaction with everything buffered. Transactions on one store commit in order. */
  private commit (): Promise<void> {
    this.seal()
    if (this.sealed.length === 0) return this.lastCommit
    const batch = this.sealed
    this.sealed = []
    const { store, done } = this.tx('readwrite')
    for (const { key, bytes } of batch) store.put(bytes, key)
    this.lastCommit = done.catch((error: unknown) => {
      this.failure ??= error
      throw error
    })
    this.lastCommit.catch(() => {})
    return this.lastCommit
  }

  async sync (): Promise<void> {
    if (this.failure !== null) throw this.failure
    await this.commit()
  }

  nextTurn (): Promise<void> {
    return nextTurn()
  }

  async truncateSegment (id: number, length: number): Promise<void> {
    const { store, done } = this.tx('readwrite')
    const range = IDBKeyRange.bound([SEGMENT, id], [SEGMENT, id, Infinity])
    const keys = await promisifyRequest(store.getAllKeys(range))
    const values = await promisifyRequest(store.getAll(range)) as Uint8Array[]
    let at = 0
    for (let i = 0; i < keys.length; i++) {
      const v = values[i]!
      if (at >= length) store.delete(keys[i]!)
      else if (at + v.length > length) store.put(v.slice(0, length - at), keys[i]!)
      at += v.length
    }
    await done
  }

  async writeSnapshot (id: number, chunks: Iterable<Uint8Array>): Promise<void> {
    let count = 0
    for (const chunk of chunks) {
      const { store, done } = this.tx('readwrite')
      store.put(chunk, [SNAPSHOT_CHUNK, id, count++])
      await done
    }
    const { store, done } = this.tx('readwrite')
    store.put(count, [SNAPSHOT_MARKER, id])
    await done
  }

  async dropBefore (id: number): Promise<void> {
    await this.commit()
    const { store, done } = this.tx('readwrite')
    for (const kind of [SEGMENT, SNAPSHOT_CHUNK, SNAPSHOT_MARKER]) store.delete(IDBKeyRange.bound([kind, -Infinity], [kind, id], false, true))
    await done
  }

  async close (): Promise<void> {
    await this.commit().catch(() => {})
    this.db?.close()
    this.db = null
  }

  describe (kind: 'segment' | 'snapshot', id: number): string {
    return `${this.location} ${kind} ${id}`
  }
}
