/**
 * A browser tab's identity: an Ed25519 key kept in IndexedDB, so a reloaded tab comes back as the same
 * peer. Tabs of one origin share IndexedDB, so each tab claims a numbered slot: the slot number lives in
 * sessionStorage (which survives a reload of this tab) and is held with a Web Lock for the tab's lifetime
 * (a duplicated tab copies sessionStorage, but cannot take a lock the original holds, so it claims another
 * slot). The slot also stores the last incarnation this identity used.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { createStore, get, set } from 'idb-keyval'

/** Slots tried before giving up (tabs of one origin open at once). */
export const TAB_SLOTS_MAX = 64

export interface TabIdentity {
  slot: number
  privateKey: PrivateKey
  /** The incarnation to start from: above the last one this identity used. */
  incarnation: number
}

const store = createStore('meshkv-identity', 'slots')

/** Holds the lock named `name` until the page goes away; resolves false if another tab holds it. */
function holdLock (name: string): Promise<boolean> {
  return new Promise(resolve => {
    void navigator.locks.request(name, { ifAvailable: true }, lock => {
      if (lock === null) { resolve(false); return undefined }
      resolve(true)
      return new Promise<void>(() => {}) // held until the tab closes
    })
  })
}

export async function claimTabIdentity (): Promise<TabIdentity> {
  const remembered = Number(sessionStorage.getItem('meshkv-slot') ?? NaN)
  const order = [...(Number.isInteger(remembered) ? [remembered] : []), ...Array.from({ length: TAB_SLOTS_MAX }, (_, i) => i).filter(i => i !== remembered)]
  for (const slot of order) {
    if (!await holdLock(`meshkv-slot-${slot}`)) continue
    sessionStorage.setItem('meshkv-slot', String(slot))
    const saved = await get<{ key: Uint8Array; incarnation: number }>(`slot-${slot}`, store)
    const privateKey = saved === undefined ? await generateKeyPair('Ed25519') : privateKeyFromProtobuf(saved.key)
    const incarnation = saved === undefined ? 0 : saved.incarnation + 1
    await set(`slot-${slot}`, { key: privateKeyToProtobuf(privateKey), incarnation }, store)
    return { slot, privateKey, incarnation }
  }
  throw new Error(`more than ${TAB_SLOTS_MAX} meshkv tabs are open in this browser`)
}
