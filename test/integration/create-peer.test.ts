/**
 * `createPeer` as a library user calls it: defaults that start, and options it refuses before anything
 * listens (a refused peer leaves no socket open behind, which would keep the user's process alive).
 */
import { describe, expect, it } from 'vitest'
import { ConfigError, createPeer } from '../../src/index.js'
import { waitUntil } from '../helpers/peers.js'

const servers = (): number => process.getActiveResourcesInfo().filter(r => r === 'TCPServerWrap').length

describe('createPeer', () => {
  it('refuses bad options before it listens, leaving no server behind', async () => {
    const before = servers()
    await expect(createPeer({ location: '' })).rejects.toBeInstanceOf(ConfigError)
    await expect(createPeer({ swim: { probeIntervalMs: 100, probeTimeoutMs: 500 } })).rejects.toBeInstanceOf(ConfigError)
    await expect(createPeer({ kv: { n: 0 } })).rejects.toBeInstanceOf(ConfigError)
    expect(servers()).toBe(before)
  })

  it('starts with defaults (a shorter probe interval alone is valid) and stops, closing what it opened', async () => {
    const before = servers()
    const peer = await createPeer({ swim: { probeIntervalMs: 200 } })
    expect(peer.addresses().some(a => a.startsWith('/ip4/127.0.0.1/tcp/') && a.includes('/ws/p2p/'))).toBe(true)
    expect(peer.members().map(m => m.id)).toEqual([peer.id])
    await peer.stop()
    // The WebSocket server closes a moment after stop() resolves.
    await waitUntil(() => Promise.resolve(servers() === before), 5000, 'the peer\'s servers closed')
  })
})
