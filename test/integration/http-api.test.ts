/**
 * The HTTP API's KV routes as a client meets them, against a real `node node/peer.js` (one peer, N=1): the
 * body read once into the stored value (binary-exact, also when it arrives in many chunks), keys as one raw
 * path segment, typed errors for bad keys, options and sizes, and a client that goes away mid-body without
 * harming the peer.
 */
import * as http from 'node:http'
import * as net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HTTP_KEEP_ALIVE_MS } from '../../src/cli/http-api.js'
import { startingHandler } from '../../src/cli/peer-cli.js'
import { type PeerProcess, peerGroup } from '../helpers/peers.js'

const group = peerGroup('meshkv-http-api-', ['--n', '1', '--r', '1', '--w', '1'])
let peer: PeerProcess
beforeAll(async () => { peer = await group.start('one', ['--bootstrap']) }, 60_000)
afterAll(async () => { await group.stopAll() })

function request (method: string, path: string, chunks: Uint8Array[] = [], headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; headers: http.IncomingHttpHeaders }> {
  const base = new URL(peer.http)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers, timeout: 20_000 }, res => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), headers: res.headers }) })
    })
    req.on('timeout', () => { req.destroy(new Error('no answer within 20 s')) })
    req.on('error', reject)
    for (const c of chunks) req.write(c)
    req.end()
  })
}

describe('HTTP API', () => {
  it('stores the body byte for byte, whole or chunked, and reads it back', async () => {
    const value = new Uint8Array(70_000).map((_, i) => (i * 7919) & 0xff)
    expect((await request('PUT', '/kv/binary', [value])).status).toBe(204)
    // Chunked transfer encoding, in uneven pieces.
    const pieces = [value.subarray(0, 1), value.subarray(1, 40_000), value.subarray(40_000)]
    expect((await request('PUT', '/kv/chunked', pieces, { 'transfer-encoding': 'chunked' })).status).toBe(204)
    for (const key of ['binary', 'chunked']) {
      const got = await request('GET', `/kv/${key}`)
      expect(got.status).toBe(200)
      expect(Buffer.compare(got.body, Buffer.from(value))).toBe(0)
    }
    expect((await request('PUT', '/kv/empty')).status).toBe(204)
    expect((await request('GET', '/kv/empty')).body.length).toBe(0)
  })

  it('takes a key as one raw path segment, percent-decoded once', async () => {
    for (const key of ['..', 'a\\b', 'sp ace/slash', 'ü']) {
      const path = `/kv/${encodeURIComponent(key).replace(/\./g, '%2E')}`
      expect((await request('PUT', path, [Buffer.from(key)])).status).toBe(204)
      expect((await request('GET', path)).body.toString()).toBe(key)
    }
    // The raw segment '..' is the key '..' too, not a step up the path.
    expect((await request('GET', '/kv/..')).body.toString()).toBe('..')
  })

  it('answers bad input with a status and a JSON error, and stays up', async () => {
    const bad = async (method: string, path: string, status: number, code: string, chunks: Uint8Array[] = [], headers: Record<string, string> = {}): Promise<void> => {
      const r = await request(method, path, chunks, headers)
      expect(r.status, `${method} ${path}`).toBe(status)
      expect(JSON.parse(r.body.toString()).code, `${method} ${path}`).toBe(code)
    }
    await bad('PUT', '/kv/%E0%A4%A', 400, 'ERR_INVALID_KEY', [Buffer.from('x')])
    await bad('PUT', '/kv/', 400, 'ERR_INVALID_KEY', [Buffer.from('x')])
    await bad('PUT', '/kv/k?w=0', 400, 'ERR_CONFIG', [Buffer.from('x')])
    await bad('GET', '/kv/k?r=x', 400, 'ERR_CONFIG')
    await bad('PUT', '/kv/k?lww=maybe', 400, 'ERR_CONFIG', [Buffer.from('x')])
    await bad('PUT', '/kv/k?ttl=-1', 400, 'ERR_CONFIG', [Buffer.from('x')])
    // Numbers in decimal digits only (Number() would take '' as 0, hex and exponents), each parameter once.
    await bad('PUT', '/kv/k?ttl=', 400, 'ERR_CONFIG', [Buffer.from('x')])
    await bad('GET', '/kv/k?r=0x1', 400, 'ERR_CONFIG')
    await bad('GET', '/kv/k?r=1e0', 400, 'ERR_CONFIG')
    await bad('GET', '/kv/k?r=%201', 400, 'ERR_CONFIG')
    await bad('PUT', '/kv/k?w=1&w=banana', 400, 'ERR_CONFIG', [Buffer.from('x')])
    await bad('GET', '/kv?limit=5&limit=6', 400, 'ERR_CONFIG')
    // A parameter the route does not take is refused, not ignored: a misspelt ttl would store a key that
    // never expires, and a read's option on a write would be a quorum the client did not get.
    const unknown = await request('PUT', '/kv/k?tll=60000', [Buffer.from('x')])
    expect(unknown.status).toBe(400)
    expect(JSON.parse(unknown.body.toString())).toMatchObject({ code: 'ERR_CONFIG', error: 'unknown query parameter "tll": PUT /kv/<key> takes only w, dw, lww, strict, ttl' })
    await bad('PUT', '/kv/k?r=2', 400, 'ERR_CONFIG', [Buffer.from('x')])
    await bad('DELETE', '/kv/k?ttl=5000', 400, 'ERR_CONFIG')
    await bad('GET', '/kv/k?w=2', 400, 'ERR_CONFIG')
    await bad('GET', '/kv/k/placement?r=2', 400, 'ERR_CONFIG')
    await bad('GET', '/kv?prefx=a', 400, 'ERR_CONFIG')
    await bad('PUT', '/heartbeat/svc?tl=5000', 400, 'ERR_CONFIG')
    await bad('GET', '/services?locall=1', 400, 'ERR_CONFIG')
    await bad('GET', '/ring?token=0', 400, 'ERR_CONFIG')
    await bad('GET', '/watch?prefixx=a', 400, 'ERR_CONFIG')
    expect((await request('GET', '/kv/k?r=1&strict=0')).status).toBe(404)
    expect((await request('GET', '/ring?tokens=0')).status).toBe(200)
    // A prefix with a malformed escape or invalid UTF-8 is not silently another prefix.
    await bad('GET', '/kv?prefix=%ZZ', 400, 'ERR_DECODE')
    await bad('GET', '/kv?prefix=%ED%A0%80', 400, 'ERR_DECODE')
    expect((await request('GET', '/kv?prefix=%C3%A9')).status).toBe(200)
    expect((await request('GET', '/kv/k')).status).toBe(404) // none of them stored anything
    // An absolute-form target (what a client set up for a proxy sends) is its path and query, taken as
    // sent; one naming another host than the Host header is refused.
    const host = new URL(peer.http).host
    expect((await request('PUT', `http://${host}/kv/abs%2F..?w=1`, [Buffer.from('absolute')])).status).toBe(204)
    expect((await request('GET', '/kv/abs%2F..')).body.toString()).toBe('absolute')
    expect((await request('GET', `http://${host}/kv/abs%2F..`)).body.toString()).toBe('absolute')
    const elsewhere = await request('PUT', 'http://example.com/kv/abs%2F..', [Buffer.from('x')])
    expect(elsewhere.status).toBe(400)
    expect(JSON.parse(elsewhere.body.toString())).toMatchObject({ code: 'ERR_DECODE', error: `the request target names "example.com" but the Host header is "${host}"` })
    await bad('GET', `ftp://${host}/kv/abs`, 400, 'ERR_DECODE')
    // The guard still judges the host: a foreign one named in both the target and Host is refused by it.
    await bad('GET', 'http://evil.example/kv/abs%2F..', 403, 'ERR_FORBIDDEN_HOST', [], { host: 'evil.example' })
    expect((await request('GET', '/kv/abs%2F..')).body.toString()).toBe('absolute')
    // A route that exists with another method is a 405; a path that is no route, a 404.
    await bad('PUT', '/kv/a/placement', 405, 'ERR_METHOD', [Buffer.from('x')])
    await bad('PUT', '/heartbeat/a/b', 404, 'ERR_NOT_FOUND', [Buffer.from('x')])
    expect((await request('HEAD', '/kv/a/placement')).status).toBe(200)
    const listPut = await request('PUT', '/kv', [Buffer.from('x')])
    expect(listPut.status).toBe(405)
    expect(JSON.parse(listPut.body.toString()).code).toBe('ERR_METHOD')
    // Counted, by code.
    const stats = JSON.parse((await request('GET', '/stats')).body.toString()) as { http: { errors: Record<string, number> } }
    expect(stats.http.errors.ERR_CONFIG).toBeGreaterThanOrEqual(20)
    expect(stats.http.errors.ERR_DECODE).toBeGreaterThanOrEqual(4)
    expect(stats.http.errors.ERR_INVALID_KEY).toBeGreaterThanOrEqual(2)
    expect(stats.http.errors.ERR_METHOD).toBeGreaterThanOrEqual(2)
    // Too large, declared up front and discovered while reading a chunked body (the default limit is 1 MiB).
    await bad('PUT', '/kv/big', 413, 'ERR_VALUE_TOO_LARGE', [], { 'content-length': String(2 * 1024 * 1024) })
    await bad('PUT', '/kv/big', 413, 'ERR_VALUE_TOO_LARGE', [new Uint8Array(600_000), new Uint8Array(600_000)], { 'transfer-encoding': 'chunked' }).catch((error: unknown) => {
      // The peer may close the upload before the client has sent it all: also a refusal.
      expect(String(error)).toMatch(/EPIPE|ECONNRESET|socket hang up/)
    })
    expect((await request('GET', '/kv/big')).status).toBe(404)
    // A client that declares a body and goes away half-way.
    const base = new URL(peer.http)
    const socket = net.connect(Number(base.port), base.hostname)
    await new Promise(resolve => socket.once('connect', resolve))
    await new Promise<void>(resolve => { socket.write(`PUT /kv/half HTTP/1.1\r\nHost: ${base.host}\r\nContent-Length: 100\r\n\r\nonly part`, () => { resolve() }) })
    socket.destroy()
    expect((await request('GET', '/health')).status).toBe(200)
    expect((await request('GET', '/kv/half')).status).toBe(404)
    // What Node's parser refuses before any route: a JSON answer with a code, counted, not an empty 431/400.
    const raw = async (text: string): Promise<{ status: number; code: string }> => {
      const s = net.connect(Number(base.port), base.hostname)
      const chunks: Buffer[] = []
      s.on('data', (c: Buffer) => chunks.push(c))
      await new Promise(resolve => s.once('connect', resolve))
      s.write(text)
      await new Promise(resolve => s.once('close', resolve))
      const answer = Buffer.concat(chunks).toString()
      return { status: Number(answer.split(' ')[1]), code: (JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { code: string }).code }
    }
    expect(await raw(`GET /kv/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: ${base.host}\r\n\r\n`)).toEqual({ status: 431, code: 'ERR_HEADERS_TOO_LARGE' })
    expect(await raw('NOT HTTP AT ALL\r\n\r\n')).toEqual({ status: 400, code: 'ERR_DECODE' })
    const counted = JSON.parse((await request('GET', '/stats')).body.toString()) as { http: { errors: Record<string, number> } }
    expect(counted.http.errors.ERR_HEADERS_TOO_LARGE).toBe(1)
    expect(counted.http.errors.ERR_DECODE).toBeGreaterThanOrEqual(1)
    expect((await request('GET', '/health')).status).toBe(200)
  })
  it('keeps idle keep-alive connections for HTTP_KEEP_ALIVE_MS and says so, not Node\'s 5 s', async () => {
    // With 5 s, a client that keeps connections without a timeout of its own (http.Agent({ keepAlive:
    // true })) races the server's close and gets ECONNRESET for a PUT it cannot know the outcome of.
    const base = new URL(peer.http)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const sockets = new Set<net.Socket>()
    const get = (): Promise<http.IncomingMessage> => new Promise((resolve, reject) => {
      const req = http.request({ host: base.hostname, port: base.port, path: '/kv/keep-alive', agent, timeout: 20_000 }, res => {
        sockets.add(res.socket)
        res.resume()
        res.on('end', () => { resolve(res) })
      })
      req.on('timeout', () => { req.destroy(new Error('no answer within 20 s')) })
      req.on('error', reject)
      req.end()
    })
    try {
      const first = await get()
      expect(first.headers.connection).toBe('keep-alive')
      expect(first.headers['keep-alive']).toBe(`timeout=${HTTP_KEEP_ALIVE_MS / 1000}`)
      await get()
      expect(sockets.size).toBe(1)
    } finally {
      agent.destroy()
    }
  })

  it('answers 503 ERR_STARTING with Retry-After while the peer starts (the port is bound before the log replays)', async () => {
    // The handler peer-cli puts on the server until the peer is up, on a server of its own.
    const server = http.createServer(startingHandler)
    await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
    try {
      const port = (server.address() as net.AddressInfo).port
      for (const [method, body] of [['GET', undefined], ['PUT', 'x']] as const) {
        const r = await new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, method, path: '/kv/k', timeout: 20_000, agent: false }, res => {
            const parts: Buffer[] = []
            res.on('data', (c: Buffer) => parts.push(c))
            res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString(), headers: res.headers }) })
          })
          req.on('timeout', () => { req.destroy(new Error('no answer within 20 s')) })
          req.on('error', reject)
          req.end(body)
        })
        expect(r.status).toBe(503)
        expect(r.headers['retry-after']).toBe('1')
        expect(JSON.parse(r.body).code).toBe('ERR_STARTING')
      }
    } finally {
      server.close()
    }
  })
})
