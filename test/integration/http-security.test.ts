/**
 * The hardened HTTP API (issue 15, item 4) against real `node node/peer.js` processes: cross-site writes
 * (a POST or PUT with a foreign Origin), DNS rebinding (a foreign Host) and form-type POSTs are refused and
 * change nothing (each key is read back); the peer's own origin and clients without an Origin still write;
 * --http-cors lets one listed origin in and no other; a token is enforced on every API request but not on
 * the dashboard's files; a non-loopback --http-host needs a token and refuses --debug-api before anything
 * is bound; every refusal is counted in /stats. All traffic goes to 127.0.0.1.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PeerProcess, startPeer } from '../helpers/peers.js'

const TOKEN = 'integration-test-token-7f3a9c21e5'
const ALLOWED = 'http://allowed.example:5173'
const EVIL = 'http://evil.example'
const BASE_FLAGS = ['--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', '--n', '1', '--r', '1', '--w', '1', '--bootstrap']

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-http-security-'))
const started: PeerProcess[] = []
/** No token from the environment of whoever runs the tests, unless a test gives one. */
const NO_TOKEN_ENV = { MESHKV_HTTP_TOKEN: '' }

async function start (name: string, extra: string[], env: NodeJS.ProcessEnv = NO_TOKEN_ENV): Promise<PeerProcess> {
  const p = await startPeer(['--data-dir', path.join(root, name), ...BASE_FLAGS, ...extra], env)
  started.push(p)
  return p
}

afterAll(async () => {
  for (const p of started) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL')
  await Promise.all(started.map(p => p.exited))
  fs.rmSync(root, { recursive: true, force: true })
})

interface Reply { status: number; body: Buffer; headers: http.IncomingHttpHeaders; json: () => { error?: string; code?: string } & Record<string, unknown> }

/** One request to 127.0.0.1:<port> with exactly these headers (Host too, when given). */
function request (port: number, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, timeout: 20_000 }, res => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => {
        const all = Buffer.concat(parts)
        resolve({ status: res.statusCode ?? 0, body: all, headers: res.headers, json: () => JSON.parse(all.toString()) as { error?: string; code?: string } })
      })
    })
    req.on('timeout', () => { req.destroy(new Error('no answer within 20 s')) })
    req.on('error', reject)
    req.end(body)
  })
}

function portOf (p: PeerProcess): number {
  return Number(new URL(p.http).port)
}

/** Runs node/peer.js expecting it to refuse to start: its exit code and what it printed. */
function refusedStart (name: string, extra: string[], env: NodeJS.ProcessEnv = NO_TOKEN_ENV): Promise<{ code: number | null; output: string; listened: boolean }> {
  const proc = spawn(process.execPath, ['node/peer.js', '--data-dir', path.join(root, name), ...BASE_FLAGS, ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let output = ''
  proc.stdout.on('data', (c: Buffer) => { output += c.toString() })
  proc.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 30_000)
  return new Promise(resolve => {
    proc.on('close', code => {
      clearTimeout(timer)
      resolve({ code, output, listened: /^http: /m.test(output) || fs.existsSync(path.join(root, name, 'peer.key')) })
    })
  })
}

describe('HTTP API without a token (loopback): Origin, Host, POST and CORS', () => {
  let peer: PeerProcess
  let port: number
  let own: string
  beforeAll(async () => {
    peer = await start('open', ['--debug-api', '--http-cors', ALLOWED])
    port = portOf(peer)
    own = `127.0.0.1:${port}`
    expect((await request(port, 'PUT', '/kv/k', {}, 'original')).status).toBe(204)
  }, 60_000)

  const value = async (): Promise<string> => {
    const r = await request(port, 'GET', '/kv/k')
    expect(r.status).toBe(200)
    return r.body.toString()
  }

  const refused = async (r: Reply, status: number, code: string, what: string): Promise<void> => {
    expect(r.status, what).toBe(status)
    expect(r.json().code, what).toBe(code)
    expect(typeof r.json().error, what).toBe('string')
  }

  it('refuses a cross-origin POST (form types and JSON alike) and a PUT from another origin: 403, nothing written', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json']) {
      await refused(await request(port, 'POST', '/kv/k', { origin: EVIL, 'content-type': type }, 'evil'), 403, 'ERR_FORBIDDEN_ORIGIN', `cross-origin POST ${type}`)
    }
    await refused(await request(port, 'POST', '/debug/heal', { origin: EVIL, 'content-type': 'application/json' }, '{}'), 403, 'ERR_FORBIDDEN_ORIGIN', 'cross-origin debug POST')
    for (const origin of [EVIL, `http://127.0.0.1:${port + 1}`, `http://localhost:${port}`, 'null']) {
      await refused(await request(port, 'PUT', '/kv/k', { origin }, 'evil'), 403, 'ERR_FORBIDDEN_ORIGIN', `PUT from ${origin}`)
      await refused(await request(port, 'DELETE', '/kv/k', { origin }), 403, 'ERR_FORBIDDEN_ORIGIN', `DELETE from ${origin}`)
    }
    // A refused upload is not drained: the answer comes at once and the connection closes.
    const socket = net.connect(port, '127.0.0.1')
    let answer = ''
    socket.on('data', (c: Buffer) => { answer += c.toString() })
    const closed = new Promise(resolve => socket.once('close', resolve))
    socket.write(`PUT /kv/k HTTP/1.1\r\nHost: ${own}\r\nOrigin: ${EVIL}\r\nContent-Length: 100000000\r\n\r\n${'x'.repeat(1000)}`)
    await closed
    expect(answer).toMatch(/^HTTP\/1\.1 403 /)
    expect(answer).toMatch(/connection: close/i)
    expect(await value()).toBe('original')
  })

  it('refuses a foreign Host (DNS rebinding): 403, nothing written or read', async () => {
    for (const host of [`evil.example:${port}`, `127.0.0.1:${port + 1}`, 'evil.example']) {
      await refused(await request(port, 'PUT', '/kv/k', { host }, 'evil'), 403, 'ERR_FORBIDDEN_HOST', `PUT with Host ${host}`)
      // The rebound page would even send its own origin: still refused.
      await refused(await request(port, 'PUT', '/kv/k', { host, origin: `http://${host}` }, 'evil'), 403, 'ERR_FORBIDDEN_HOST', `PUT with Host and Origin ${host}`)
      await refused(await request(port, 'GET', '/kv/k', { host }), 403, 'ERR_FORBIDDEN_HOST', `GET with Host ${host}`)
    }
    expect(await value()).toBe('original')
  })

  it('refuses a POST a form can send, even without an Origin; writes are PUT and DELETE only', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      await refused(await request(port, 'POST', '/kv/k', { 'content-type': type }, 'evil'), 415, 'ERR_FORM_POST', `POST /kv ${type}`)
      await refused(await request(port, 'POST', '/debug/heal', { 'content-type': type }), 415, 'ERR_FORM_POST', `POST /debug ${type}`)
    }
    await refused(await request(port, 'POST', '/debug/heal'), 415, 'ERR_FORM_POST', 'POST without a content type')
    // A POST no form can send still does not write a key: 405, and so for heartbeats.
    await refused(await request(port, 'POST', '/kv/k', { 'content-type': 'application/octet-stream' }, 'evil'), 405, 'ERR_METHOD', 'POST /kv octet-stream')
    await refused(await request(port, 'POST', '/heartbeat/svc', { 'content-type': 'application/json' }, '{}'), 405, 'ERR_METHOD', 'POST /heartbeat json')
    expect(await value()).toBe('original')
    // The debug routes take a JSON POST.
    expect((await request(port, 'POST', '/debug/heal', { 'content-type': 'application/json' }, '{}')).status).toBe(200)
    // A full collection, then this process's memory: what the heartbeat benchmark measures per service by.
    const gc = await request(port, 'POST', '/debug/gc', { 'content-type': 'application/json' }, '{}')
    expect(gc.status).toBe(200)
    const memory = gc.json() as Record<string, number>
    for (const field of ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers']) expect(memory[field]).toBeGreaterThanOrEqual(0)
    expect(memory.rss).toBeGreaterThan(memory.heapUsed!)
    await refused(await request(port, 'GET', '/debug/gc'), 405, 'ERR_METHOD', 'GET /debug/gc')
  })

  it('takes writes from its own origin (by address or localhost) and from clients without an Origin', async () => {
    expect((await request(port, 'PUT', '/kv/k?lww=1', { origin: `http://${own}` }, 'same-origin')).status).toBe(204)
    expect(await value()).toBe('same-origin')
    expect((await request(port, 'PUT', '/kv/k?lww=1', { host: `localhost:${port}`, origin: `http://localhost:${port}` }, 'via-localhost')).status).toBe(204)
    expect(await value()).toBe('via-localhost')
    expect((await request(port, 'POST', '/debug/heal', { origin: `http://${own}`, 'content-type': 'application/json' }, '{}')).status).toBe(200)
    const got = await request(port, 'GET', '/kv/k', { origin: `http://${own}` })
    expect(got.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('lets the --http-cors origin in with CORS headers and a preflight, and no other origin', async () => {
    const pre = await request(port, 'OPTIONS', '/kv/k', { origin: ALLOWED, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'x-meshkv-context' })
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe(ALLOWED)
    expect(pre.headers['access-control-allow-methods']).toMatch(/PUT/)
    expect(pre.headers['access-control-allow-headers']).toMatch(/x-meshkv-context/)
    expect(pre.headers.vary).toBe('Origin')
    const put = await request(port, 'PUT', '/kv/k?lww=1', { origin: ALLOWED }, 'from-allowed')
    expect(put.status).toBe(204)
    expect(put.headers['access-control-allow-origin']).toBe(ALLOWED)
    const get = await request(port, 'GET', '/kv/k', { origin: ALLOWED })
    expect(get.body.toString()).toBe('from-allowed')
    expect(get.headers['access-control-allow-origin']).toBe(ALLOWED)
    expect(get.headers['access-control-expose-headers']).toMatch(/x-meshkv-context/)
    const other = await request(port, 'OPTIONS', '/kv/k', { origin: 'http://allowed.example:5174', 'access-control-request-method': 'PUT' })
    await refused(other, 403, 'ERR_FORBIDDEN_ORIGIN', 'preflight from an unlisted origin')
    expect(other.headers['access-control-allow-origin']).toBeUndefined()
    expect(await value()).toBe('from-allowed')
  })

  it('counts every refusal by code in /stats', async () => {
    const stats = (await request(port, 'GET', '/stats')).json() as { http: { refusals: Record<string, number>; errors: Record<string, number>; token: boolean; cors: string[]; files: { served: number; assets: number } } }
    // Counted above: origin 3 + 1 + 4 * 2 + 1 (upload) + 1 (preflight); host 3 * 3; form POST 3 * 2 + 1.
    expect(stats.http).toEqual({ refusals: { ERR_FORBIDDEN_ORIGIN: 14, ERR_FORBIDDEN_HOST: 9, ERR_FORM_POST: 7, ERR_UNAUTHORIZED: 0 }, errors: expect.any(Object), token: false, cors: [ALLOWED], files: { served: expect.any(Number), assets: expect.any(Number) } })
    // The guard's refusals are not also counted as the routes' bad input.
    for (const code of Object.keys(stats.http.refusals)) expect(stats.http.errors[code], code).toBeUndefined()
  })
})

describe('HTTP API with a token', () => {
  it('needs Authorization: Bearer <token> on every API request (token file), not on the dashboard files', async () => {
    const file = path.join(root, 'token.txt')
    fs.writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 })
    const peer = await start('token', ['--http-token-file', file])
    const port = portOf(peer)
    const auth = { authorization: `Bearer ${TOKEN}` }
    expect((await request(port, 'PUT', '/kv/t', auth, 'kept')).status).toBe(204)
    const wrong: Array<Record<string, string>> = [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${TOKEN}` }]
    for (const headers of wrong) {
      const put = await request(port, 'PUT', '/kv/t', headers, 'overwritten')
      expect(put.status).toBe(401)
      expect(put.json().code).toBe('ERR_UNAUTHORIZED')
      expect(put.headers['www-authenticate']).toMatch(/^Bearer/)
      for (const target of ['/kv/t', '/api/info', '/stats', '/members', '/no-such-file']) expect((await request(port, 'GET', target, headers)).status, target).toBe(401)
    }
    expect((await request(port, 'GET', '/kv/t', auth)).body.toString()).toBe('kept')
    // The page itself is public build output; what it then asks for needs the token (#token= in the page).
    const page = await request(port, 'GET', '/')
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toMatch(/text\/html/)
    // The page is asked for again each time; its hashed assets are kept by the browser for good.
    expect(page.headers['cache-control']).toBe('no-cache')
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(page.body.toString())?.[1]
    expect(asset, 'the page names its script under /assets/').toBeDefined()
    const script = await request(port, 'GET', asset!)
    expect(script.status).toBe(200)
    expect(script.headers['cache-control']).toBe('public, max-age=31536000, immutable')
    expect((await request(port, 'GET', '/sw.js')).status).toBe(200)
    // The token does not open the door to a foreign Origin.
    expect((await request(port, 'PUT', '/kv/t', { ...auth, origin: EVIL }, 'evil')).status).toBe(403)
    const stats = (await request(port, 'GET', '/stats', auth)).json() as { http: { refusals: Record<string, number>; token: boolean } }
    expect(stats.http.token).toBe(true)
    expect(stats.http.refusals.ERR_UNAUTHORIZED).toBe(3 * 6)
    expect(peer.output.join('\n')).not.toContain(TOKEN)
  })

  it('node/kv.js sends MESHKV_HTTP_TOKEN', async () => {
    const peer = await start('kvjs', [], { MESHKV_HTTP_TOKEN: TOKEN })
    const kv = (args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> => new Promise(resolve => {
      const proc = spawn(process.execPath, ['node/kv.js', ...args, '--peer', peer.http], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
      let out = ''
      let err = ''
      proc.stdout.on('data', (c: Buffer) => { out += c.toString() })
      proc.stderr.on('data', (c: Buffer) => { err += c.toString() })
      proc.on('close', code => { resolve({ code, out, err }) })
    })
    expect(await kv(['put', 'cli', 'v1'], { MESHKV_HTTP_TOKEN: TOKEN })).toMatchObject({ code: 0 })
    expect(await kv(['get', 'cli'], { MESHKV_HTTP_TOKEN: TOKEN })).toMatchObject({ code: 0, out: 'v1' })
    const without = await kv(['put', 'cli', 'v2'], NO_TOKEN_ENV)
    expect(without.code).toBe(4)
    expect(without.err).toMatch(/^401: /)
    expect(await kv(['get', 'cli'], { MESHKV_HTTP_TOKEN: TOKEN })).toMatchObject({ code: 0, out: 'v1' })
  })

  it('a non-loopback --http-host starts with a token and enforces it', async () => {
    // Bound to every interface for the length of this test, behind the token; the test talks to 127.0.0.1 only.
    const peer = await start('wildcard', ['--http-host', '0.0.0.0'], { MESHKV_HTTP_TOKEN: TOKEN })
    const port = portOf(peer)
    expect(peer.http).toBe(`http://0.0.0.0:${port}`)
    expect((await request(port, 'PUT', '/kv/w', {}, 'x')).status).toBe(401)
    expect((await request(port, 'PUT', '/kv/w', { authorization: `Bearer ${TOKEN}` }, 'x')).status).toBe(204)
    expect((await request(port, 'GET', '/kv/w', { authorization: `Bearer ${TOKEN}`, host: `evil.example:${port}` })).status).toBe(403)
    expect((await request(port, 'GET', '/kv/w', { authorization: `Bearer ${TOKEN}` })).body.toString()).toBe('x')
  })
})

describe('HTTP exposure checked before the peer starts', () => {
  it('refuses a non-loopback --http-host without a token, and --debug-api there, before binding anything', async () => {
    const cases: Array<{ name: string; extra: string[]; env?: NodeJS.ProcessEnv; message: RegExp }> = [
      { name: 'no-token', extra: ['--http-host', '0.0.0.0'], message: /--http-host 0\.0\.0\.0 exposes the HTTP API beyond this machine, so it needs a bearer token/ },
      { name: 'no-token-v6', extra: ['--http-host', '::'], message: /needs a bearer token/ },
      { name: 'debug', extra: ['--http-host', '0.0.0.0', '--debug-api'], env: { MESHKV_HTTP_TOKEN: TOKEN }, message: /--debug-api is refused with --http-host 0\.0\.0\.0/ },
      { name: 'short', extra: ['--http-token', 'short'], message: /the HTTP token must be 16 to 4096 characters/ },
      { name: 'cors-star', extra: ['--http-cors', '*'], message: /--http-cors "\*" is not an origin/ },
      { name: 'both', extra: ['--http-token', TOKEN, '--http-token-file', '/nonexistent'], message: /--http-token or --http-token-file, not both/ }
    ]
    for (const c of cases) {
      const r = await refusedStart(c.name, c.extra, c.env)
      expect(r.code, `${c.name}: ${r.output}`).toBe(2)
      expect(r.output, c.name).toMatch(c.message)
      expect(r.listened, `${c.name} bound or wrote nothing`).toBe(false)
      expect(r.output).not.toContain(TOKEN)
    }
  })
})
