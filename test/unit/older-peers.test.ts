import { describe, expect, it } from 'vitest'
import { OLDER_PEERS_MAX, OLDER_PEER_MEMORY_MS, OlderPeers } from '../../src/core/replication/older-peers.js'

describe('peers known to be older', () => {
  it('remembers a peer for a while, then asks it again', () => {
    const older = new OlderPeers()
    expect(older.has('a', 0)).toBe(false)
    older.note('a', 1000)
    expect(older.has('a', 1000 + OLDER_PEER_MEMORY_MS - 1)).toBe(true)
    expect(older.has('b', 1000)).toBe(false)
    expect(older.has('a', 1000 + OLDER_PEER_MEMORY_MS)).toBe(false)
    expect(older.size).toBe(0)
  })

  it('is bounded: the peer remembered longest is forgotten first', () => {
    const older = new OlderPeers()
    for (let i = 0; i <= OLDER_PEERS_MAX; i++) older.note(`p${i}`, i)
    expect(older.size).toBe(OLDER_PEERS_MAX)
    expect(older.has('p0', OLDER_PEERS_MAX)).toBe(false)
    expect(older.has('p1', OLDER_PEERS_MAX)).toBe(true)
    // Noted again, a peer is the newest: p1 outlives p2 now.
    older.note('p1', OLDER_PEERS_MAX + 1)
    older.note('extra', OLDER_PEERS_MAX + 2)
    expect(older.has('p1', OLDER_PEERS_MAX + 2)).toBe(true)
    expect(older.has('p2', OLDER_PEERS_MAX + 2)).toBe(false)
    older.clear()
    expect(older.has('p1', OLDER_PEERS_MAX + 2)).toBe(false)
    expect(older.size).toBe(0)
  })
})
