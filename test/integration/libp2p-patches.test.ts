/**
 * The patch-package patches to the libp2p stack that cut syscalls and frames per message (patches/, README
 * "Patches"). Each test fails on the unpatched package.
 *
 * - @libp2p/tcp: a send of several chunks (noise hands over its length prefix and its ciphertext apart) leaves
 *   in one writev instead of one write per chunk, over a real TCP socket on 127.0.0.1.
 * - @chainsafe/libp2p-yamux: a receiver sends a window update only once half its window is consumed, not after
 *   every data frame; data beyond one window still flows.
 * - @libp2p/utils: LengthPrefixedDecoder (noise's framing) stops at an empty buffer instead of asking the length
 *   decoder, which throws a RangeError (with its stack trace) at the end of every chunk received; and lpStream's
 *   read (the RPC links' framing) decodes a varint length only once its last byte arrived, instead of throwing
 *   and catching a RangeError for each earlier byte (every message of 128 bytes or more).
 */
import '../../src/polyfills.js'
import * as net from 'node:net'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { yamux } from '@chainsafe/libp2p-yamux'
import { defaultLogger } from '@libp2p/logger'
import { LengthPrefixedDecoder, lpStream, multiaddrConnectionPair, streamPair } from '@libp2p/utils'
import { pEvent } from 'p-event'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'

// Not among the package's exports: imported by path (the patched file itself).
const socketToConn = pathToFileURL(path.resolve('node_modules/@libp2p/tcp/dist/src/socket-to-conn.js')).href

describe('@libp2p/tcp patch: one writev per tick', () => {
  const closers: Array<() => void> = []
  afterEach(() => { for (const c of closers.splice(0)) c() })

  it('writes the chunks of one send (and of sends in the same tick) with one system call, in order', async () => {
    const { toMultiaddrConnection } = await import(socketToConn) as { toMultiaddrConnection: (init: Record<string, unknown>) => { sendData: (data: Uint8ArrayList) => { sentBytes: number; canSendMore: boolean } } }
    const received: Buffer[] = []
    const server = net.createServer(s => { s.on('data', (b: Buffer) => received.push(b)) })
    server.listen(0, '127.0.0.1')
    await pEvent(server, 'listening')
    closers.push(() => { server.close() })
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    await pEvent(socket, 'connect')
    closers.push(() => { socket.destroy() })
    // Each _write or _writev is one write system call on the socket's handle.
    let calls = 0
    const s = socket as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void }
    const write = s._write.bind(socket)
    const writev = s._writev.bind(socket)
    s._write = (...a) => { calls++; write(...a) }
    s._writev = (...a) => { calls++; writev(...a) }
    const conn = toMultiaddrConnection({ socket, direction: 'outbound', log: defaultLogger().forComponent('test') })
    const result = conn.sendData(new Uint8ArrayList(Uint8Array.of(0, 3), Uint8Array.of(1, 2, 3)))
    conn.sendData(new Uint8ArrayList(Uint8Array.of(0, 1), Uint8Array.of(4)))
    expect(result).toEqual({ sentBytes: 5, canSendMore: true })
    await new Promise(resolve => { setImmediate(resolve) })
    expect(calls).toBe(1)
    const deadline = Date.now() + 10_000
    while (Buffer.concat(received).length < 8 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect([...Buffer.concat(received)]).toEqual([0, 3, 1, 2, 3, 0, 1, 4])
    // The next tick's send is corked anew and flushed on its own.
    conn.sendData(new Uint8ArrayList(Uint8Array.of(9), Uint8Array.of(9)))
    await new Promise(resolve => { setImmediate(resolve) })
    expect(calls).toBe(2)
  })
})

describe('@chainsafe/libp2p-yamux patch: window updates after half the window', () => {
  async function pair (): Promise<{ send: (bytes: Uint8Array) => boolean, received: () => number, updates: () => number, drain: () => Promise<void> }> {
    const [a, b] = multiaddrConnectionPair()
    const left = yamux()().createStreamMuxer(a)
    const right = yamux()().createStreamMuxer(b)
    const inbound = pEvent<'stream', CustomEvent>(right, 'stream')
    const outbound = await left.createStream()
    const stream = (await inbound).detail as { addEventListener: (e: string, f: (ev: { data: Uint8ArrayList }) => void) => void; sendFrame: (f: { type: number; flag: number; length: number }) => void }
    let received = 0
    let updates = 0
    stream.addEventListener('message', ev => { received += ev.data.byteLength })
    const sendFrame = stream.sendFrame.bind(stream)
    // FrameType.WindowUpdate is 1; flag 0 is a plain update (not the SYN/ACK of opening the stream).
    stream.sendFrame = f => { if (f.type === 1 && f.flag === 0) updates++; sendFrame(f) }
    return {
      send: bytes => outbound.send(bytes),
      received: () => received,
      updates: () => updates,
      drain: async () => { await outbound.onDrain() }
    }
  }

  async function until (check: () => boolean): Promise<void> {
    const deadline = Date.now() + 10_000
    while (!check()) {
      if (Date.now() > deadline) throw new Error('not within 10 s')
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }

  it('sends no update for small messages well within the window', async () => {
    const p = await pair()
    // One message per turn, as request/reply traffic goes: each is its own data frame.
    for (let i = 0; i < 200; i++) {
      p.send(new Uint8Array(100))
      await until(() => p.received() === (i + 1) * 100)
    }
    expect(p.updates()).toBe(0)
  })

  it('still moves data beyond one window (256 KiB), with an update about every half window', async () => {
    const p = await pair()
    const total = 1024 * 1024
    for (let sent = 0; sent < total; sent += 1024) {
      if (!p.send(new Uint8Array(1024))) await p.drain()
    }
    await until(() => p.received() === total)
    expect(p.updates()).toBeGreaterThan(0)
    expect(p.updates()).toBeLessThanOrEqual(total / (128 * 1024) + 1)
  })
})

describe('@libp2p/utils patch: no thrown RangeError per chunk decoded', () => {
  it('decodes whole and split messages without asking the length decoder about an empty buffer', () => {
    let emptyCalls = 0
    const uint16 = (data: Uint8Array | { length: number; getUint16: (at: number) => number }): number => {
      if (data.length === 0) emptyCalls++
      if (data.length < 2) throw new RangeError('Could not decode int16BE')
      return data instanceof Uint8Array ? (data[0]! << 8) | data[1]! : data.getUint16(0)
    }
    const decoder = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2 })
    const out: number[][] = []
    for (const m of decoder.decode(Uint8Array.of(0, 2, 7, 8, 0, 1, 9))) out.push([...m.subarray()])
    for (const m of decoder.decode(Uint8Array.of(0, 3, 1))) out.push([...m.subarray()]) // a message split over chunks
    for (const m of decoder.decode(Uint8Array.of(2, 3))) out.push([...m.subarray()])
    expect(out).toEqual([[7, 8], [9], [1, 2, 3]])
    expect(emptyCalls).toBe(0)
  })
})

describe('@libp2p/utils patch: lpStream reads a length without a thrown RangeError per byte', () => {
  it('reads messages whose lengths take one to four bytes, constructing no RangeError', async () => {
    const [outbound, inbound] = await streamPair()
    const writer = lpStream(outbound)
    const reader = lpStream(inbound)
    const sizes = [0, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_100_000]
    const Original = globalThis.RangeError
    let constructed = 0
    globalThis.RangeError = class extends Original { constructor (message?: string) { super(message); constructed++ } } as RangeErrorConstructor
    try {
      const read = (async () => { const got: number[] = []; for (const _ of sizes) got.push((await reader.read()).byteLength); return got })()
      for (const n of sizes) await writer.write(new Uint8Array(n).fill(n % 251))
      expect(await read).toEqual(sizes)
    } finally {
      globalThis.RangeError = Original
    }
    expect(constructed).toBe(0)
  })

  it('still refuses a length longer than maxDataLength allows', async () => {
    const [outbound, inbound] = await streamPair()
    const reader = lpStream(inbound, { maxDataLength: 100 })
    const read = reader.read().then(() => null, (error: Error) => error.name)
    await lpStream(outbound).write(new Uint8Array(200))
    expect(await read).toBe('InvalidDataLengthLengthError')
  })
})
