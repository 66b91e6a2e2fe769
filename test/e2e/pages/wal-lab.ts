/**
 * A test page (built by test/e2e/wal-indexeddb.spec.ts, never shipped): runs the contract's large-log cases
 * (test/contracts/large-log.ts) against IndexedDbWal in the real browser, and a log stored as hundreds of
 * thousands of small chunks, as a segment written by that many small group commits is.
 */
import { IndexedDbWal } from '../../../src/adapters/wal-indexeddb.js'
import { ManualClock, SeededRng } from '../../../src/core/env.js'
import { StorageEngine } from '../../../src/core/storage/engine.js'
import { LARGE_LOG_CASES, type LargeLogSizes } from '../../contracts/large-log.js'

let databases = 0

function deleteDatabase (name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(name)
    request.onsuccess = () => { resolve() }
    request.onerror = () => { reject(request.error) }
  })
}

function request<T> (r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => { r.onsuccess = () => { resolve(r.result) }; r.onerror = () => { reject(r.error) } })
}

async function withDatabase<T> (fn: (name: string) => Promise<T>): Promise<T> {
  const name = `meshkv-wal-lab-${Date.now()}-${databases++}`
  try { return await fn(name) } finally { await deleteDatabase(name) }
}

/** Runs large-log case `index`; resolves with the time it took, or rejects with what was wrong. */
async function runCase (index: number, sizes: LargeLogSizes): Promise<{ name: string; ms: number }> {
  const c = LARGE_LOG_CASES[index]!
  const start = performance.now()
  await withDatabase(name => c.run({ make: () => new IndexedDbWal(name) }, sizes))
  return { name: c.name(sizes), ms: performance.now() - start }
}

/**
 * Writes `keys` keys, then stores every segment again as chunks of `chunkBytes` (a segment is the
 * concatenation of its chunks), and reopens: recovery must read them all.
 */
async function manyChunks (keys: number, chunkBytes: number): Promise<{ chunks: number; keys: number; reopenMs: number }> {
  return withDatabase(async name => {
    const open = (): Promise<StorageEngine> => StorageEngine.open({ replicaId: 'lab', clock: new ManualClock(1_000), rng: new SeededRng(5), wal: new IndexedDbWal(name), durability: 'async' })
    const e = await open()
    for (let i = 0; i < keys; i++) await e.put(`k${i}`, Uint8Array.of(i & 0xff, (i >>> 8) & 0xff, (i >>> 16) & 0xff))
    await e.close()
    const db = await request(indexedDB.open(name, 1))
    const read = db.transaction('wal', 'readonly').objectStore('wal')
    const segmentKeys = (await request(read.getAllKeys(IDBKeyRange.bound([0, -Infinity], [0, Infinity])))) as Array<[number, number, number]>
    const ids = [...new Set(segmentKeys.map(k => k[1]))]
    let chunks = 0
    for (const id of ids) {
      const r = db.transaction('wal', 'readonly').objectStore('wal')
      const parts = (await request(r.getAll(IDBKeyRange.bound([0, id], [0, id, Infinity])))) as Uint8Array[]
      const total = parts.reduce((n, p) => n + p.length, 0)
      const whole = new Uint8Array(total)
      let at = 0
      for (const p of parts) { whole.set(p, at); at += p.length }
      const tx = db.transaction('wal', 'readwrite')
      const w = tx.objectStore('wal')
      w.delete(IDBKeyRange.bound([0, id], [0, id, Infinity]))
      for (let k = 0, off = 0; off < whole.length; k++, off += chunkBytes) { w.put(whole.slice(off, off + chunkBytes), [0, id, k]); chunks++ }
      await new Promise<void>((resolve, reject) => { tx.oncomplete = () => { resolve() }; tx.onerror = () => { reject(tx.error) } })
    }
    db.close()
    const start = performance.now()
    const again = await open()
    const reopenMs = performance.now() - start
    let intact = 0
    for (let i = 0; i < keys; i++) {
      const v = again.get(`k${i}`)?.values[0]?.value
      if (v !== undefined && v !== null && v[0] === (i & 0xff) && v[1] === ((i >>> 8) & 0xff) && v[2] === ((i >>> 16) & 0xff)) intact++
    }
    await again.close()
    return { chunks, keys: intact, reopenMs }
  })
}

Object.assign(window, { walLab: { cases: LARGE_LOG_CASES.length, runCase, manyChunks } })
