// IndexedDB in Node through fake-indexeddb (a spec-complete in-memory implementation); the same contract runs
// in a real Chromium in the browser tests of a later issue.
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { describe, expect, it } from 'vitest'
import { IndexedDbWal } from '../../src/adapters/wal-indexeddb.js'
import { runWalContract } from './wal-contract.js'

Object.assign(globalThis, { IDBKeyRange })

let counter = 0

// Both commit modes: 'strict' (the default, durable tabs) and 'relaxed' (volatile tabs, web/main.ts).
for (const durability of ['strict', 'relaxed'] as const) runWalContract(`indexeddb (${durability})`, async () => {
  const factory = new IDBFactory()
  const name = `meshkv-contract-${counter++}`
  const raw = async <T>(mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest<T> | undefined): Promise<T | undefined> => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const r = factory.open(name, 1)
      r.onupgradeneeded = () => { r.result.createObjectStore('wal') }
      r.onsuccess = () => { resolve(r.result) }
      r.onerror = () => { reject(r.error) }
    })
    const tx = db.transaction('wal', mode)
    const req = fn(tx.objectStore('wal'))
    const result = await new Promise<T | undefined>((resolve, reject) => {
      tx.oncomplete = () => { resolve(req?.result) }
      tx.onerror = () => { reject(tx.error) }
    })
    db.close()
    return result
  }
  return {
    make: () => new IndexedDbWal(name, { indexedDB: factory, durability }),
    readRaw: async id => {
      const chunks = (await raw('readonly', s => s.getAll(IDBKeyRange.bound([0, id], [0, id, Infinity])) as IDBRequest<Uint8Array[]>)) ?? []
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
      let at = 0
      for (const c of chunks) { out.set(c, at); at += c.length }
      return out
    },
    writeRaw: async (id, bytes) => {
      await raw('readwrite', s => { s.delete(IDBKeyRange.bound([0, id], [0, id, Infinity])); return s.put(bytes.slice(), [0, id, 0]) })
    },
    dispose: async () => {}
  }
})

describe('IndexedDbWal options', () => {
  it('refuses a durability other than strict or relaxed', () => {
    expect(() => new IndexedDbWal('x', { indexedDB: new IDBFactory(), durability: 'default' as 'strict' })).toThrow(/durability must be 'strict' or 'relaxed'/)
  })
})
