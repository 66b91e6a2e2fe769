/**
 * Hostile input on the KV protocol: a real peer process gets garbage, a forged count and an oversized frame
 * on /meshkv/kv/1.0.0 from a libp2p node in the test. Each stream is reset and counted; the peer keeps
 * serving. A request of a type it does not know (a newer peer's) gets a typed error reply instead, on a
 * stream that stays up.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, describe, expect, it } from 'vitest'
import '../../src/polyfills.js'
import { createMeshLibp2p } from '../../src/services/mesh-node.js'
import { Writer } from '../../src/core/codec.js'
import { decodeMessage, encodeFrame, encodeRequest, splitFrame } from '../../src/core/kv/messages.js'
import { KV_PROTOCOL } from '../../src/services/kv-service.js'
import { type PeerProcess, startPeer, waitUntil } from '../helpers/peers.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-kvwire-'))
let target: PeerProcess | undefined
afterAll(async () => {
  target?.proc.kill('SIGKILL')
  await target?.exited
  fs.rmSync(root, { recursive: true, force: true })
})

interface Stats { rpc: { badMessages: number } }

describe('kv protocol under hostile input', () => {
  it('resets and counts malformed streams, and keeps serving', async () => {
    target = await startPeer(['--bootstrap', '--data-dir', path.join(root, 't'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0'])
    const node = await createMeshLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: [], extraTransports: [tcp()] })
    try {
      await node.dial(multiaddr(target.tcp))
      const send = async (frame: Uint8Array): Promise<void> => {
        const stream = await node.dialProtocol(peerIdFromString(target!.id), KV_PROTOCOL)
        const lp = lpStream(stream)
        await lp.write(frame)
        // The peer answers garbage by resetting the stream: reading ends with an error or EOF.
        await expect(lp.read({ signal: AbortSignal.timeout(20_000) })).rejects.toThrow()
      }
      await send(new Uint8Array([1, 9, 9, 9, 9]))
      await send(new Uint8Array([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))
      await waitUntil(async () => (await (await fetch(`${target!.http}/stats`)).json() as Stats).rpc.badMessages >= 2, 20_000, 'bad messages counted')
      // Oversized: a length prefix far beyond the message limit.
      const stream = await node.dialProtocol(peerIdFromString(target.id), KV_PROTOCOL)
      stream.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]))
      await waitUntil(async () => stream.status !== 'open' || stream.readStatus !== 'readable', 20_000, 'oversized stream reset')
      expect((await fetch(`${target.http}/health`)).status).toBe(200)
      const put = await fetch(`${target.http}/kv/still-here`, { method: 'PUT', body: 'yes', signal: AbortSignal.timeout(20_000) })
      // A single peer cannot reach W=2: a clear 503 with the acked count, not a crash.
      expect(put.status).toBe(503)
      expect(await put.json()).toMatchObject({ code: 'ERR_QUORUM', acked: 1, required: 2 })
      // (The failed write stays on the replica that took it, as documented; a fresh key shows W=1 working.)
      const one = await fetch(`${target.http}/kv/w1?w=1`, { method: 'PUT', body: 'yes' })
      expect(one.status).toBe(204)
      expect(await (await fetch(`${target.http}/kv/w1?r=1`)).text()).toBe('yes')
    } finally {
      await node.stop()
    }
  }, 120_000)

  it('answers a request type it does not know with ERR_UNSUPPORTED and keeps the stream for the next request', async () => {
    target ??= await startPeer(['--bootstrap', '--data-dir', path.join(root, 't'), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0'])
    const node = await createMeshLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: [], extraTransports: [tcp()] })
    try {
      await node.dial(multiaddr(target.tcp))
      const lp = lpStream(await node.dialProtocol(peerIdFromString(target.id), KV_PROTOCOL))
      // A newer peer's request (type 200, a body this version cannot read), then a known one on the same stream.
      const newer = new Writer().u8(1).varint(7).u8(200).string('from the future').finish().slice()
      await lp.write(encodeFrame(new Writer(), [newer]).slice())
      await lp.write(encodeFrame(new Writer(), [encodeRequest(new Writer(), 8, { type: 'read', key: 'k' })]).slice())
      const replies = []
      while (replies.length < 2) {
        const frame = (await lp.read({ signal: AbortSignal.timeout(20_000) })).subarray()
        for (const m of splitFrame(frame, 1 << 24)) replies.push(decodeMessage(m, { keyBytesMax: 1024, valueBytesMax: 1 << 20 }))
      }
      expect(replies[0]).toMatchObject({ kind: 'reply', id: 7, reply: { type: 'error', code: 'ERR_UNSUPPORTED' } })
      expect(replies[1]).toMatchObject({ kind: 'reply', id: 8, reply: { type: 'state', state: null } })
    } finally {
      await node.stop()
    }
  }, 120_000)
})
