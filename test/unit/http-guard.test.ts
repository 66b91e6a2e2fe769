// The HTTP API's front door (src/cli/http-guard.ts) as a decision over request headers: which Host and
// Origin values pass, what a preflight gets, which POSTs are refused, the token check, the start-up rules
// for non-loopback binds, and that every refusal is counted under its code. The real server is covered by
// test/integration/http-security.test.ts.
import type * as http from 'node:http'
import { describe, expect, it } from 'vitest'
import { HttpExposureError, HttpGuard, checkHttpExposure, checkHttpToken, isLoopbackHost, parseCorsOrigin, parseHttpName, splitHost } from '../../src/cli/http-guard.js'

const TOKEN = 'a-token-of-32-characters-0123456'

/** A request as the guard reads it: method and headers (lower-case names, as Node gives them). */
function req (method: string, headers: Record<string, string>): http.IncomingMessage {
  return { method, headers } as unknown as http.IncomingMessage
}

/** A response that records what the guard set and wrote. */
function res (): http.ServerResponse & { set: Record<string, unknown>; status: number | null } {
  const r = {
    set: {} as Record<string, unknown>,
    status: null as number | null,
    setHeader (name: string, value: unknown) { r.set[name] = value },
    writeHead (status: number, headers: Record<string, unknown>) { r.status = status; Object.assign(r.set, headers) },
    end () {}
  }
  return r as unknown as http.ServerResponse & { set: Record<string, unknown>; status: number | null }
}

describe('http guard: Host (DNS rebinding)', () => {
  it('loopback bind: the bound address and localhost on its port, nothing else', () => {
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000 })
    for (const host of ['127.0.0.1:7000', 'localhost:7000', 'LOCALHOST:7000']) expect(g.admit(req('GET', { host }), res()), host).toBeNull()
    for (const host of ['evil.example:7000', '127.0.0.1:7001', '127.0.0.1', 'localhost', '127.0.0.2:7000', '[::1]:7000', 'a:b:c', '']) {
      expect(g.admit(req('GET', { host }), res()), host).toMatchObject({ status: 403, code: 'ERR_FORBIDDEN_HOST' })
    }
    expect(g.admit(req('GET', {}), res())).toMatchObject({ code: 'ERR_FORBIDDEN_HOST' })
    expect(g.stats().refusals.ERR_FORBIDDEN_HOST).toBe(9)
  })

  it('IPv6 loopback, port 80 without a port, and --http-name with and without a port', () => {
    expect(new HttpGuard({ bindHost: '::1', port: 7000 }).admit(req('GET', { host: '[::1]:7000' }), res())).toBeNull()
    expect(new HttpGuard({ bindHost: '127.0.0.1', port: 80 }).admit(req('GET', { host: '127.0.0.1' }), res())).toBeNull()
    const byName = new HttpGuard({ bindHost: 'localhost', port: 7000 })
    for (const host of ['localhost:7000', '127.0.0.1:7000', '[::1]:7000']) expect(byName.admit(req('GET', { host }), res()), host).toBeNull()
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000, names: ['kv.example', 'other.example:8443'] })
    for (const host of ['kv.example', 'kv.example:443', 'other.example:8443']) expect(g.admit(req('GET', { host }), res()), host).toBeNull()
    for (const host of ['other.example', 'other.example:7000', 'kv.example.evil:7000']) expect(g.admit(req('GET', { host }), res()), host).toMatchObject({ code: 'ERR_FORBIDDEN_HOST' })
  })

  it('wildcard bind: the local interface addresses, the bound address (as printed) and localhost on its port', () => {
    const g = new HttpGuard({ bindHost: '0.0.0.0', port: 7000, token: TOKEN, interfaceAddresses: ['127.0.0.1', '10.1.2.3', 'fe80::1%eth0'] })
    for (const host of ['127.0.0.1:7000', '10.1.2.3:7000', 'localhost:7000', '[fe80::1]:7000', '0.0.0.0:7000']) expect(g.admit(req('GET', { host }), res()), host).toBeNull()
    for (const host of ['10.1.2.4:7000', '10.1.2.3:7001', 'evil.example:7000']) expect(g.admit(req('GET', { host }), res()), host).toMatchObject({ code: 'ERR_FORBIDDEN_HOST' })
  })

  it('splits Host headers', () => {
    expect(splitHost('Example.COM:80')).toEqual({ name: 'example.com', port: 80 })
    expect(splitHost('[::1]:7000')).toEqual({ name: '[::1]', port: 7000 })
    expect(splitHost('[::1]')).toEqual({ name: '[::1]', port: null })
    expect(splitHost('::1')).toBeNull()
    expect(splitHost('a b:1')).toEqual({ name: 'a b', port: 1 })
  })
})

describe('http guard: Origin and CORS', () => {
  const host = '127.0.0.1:7000'

  it('takes no Origin and its own origin; refuses every other origin, null included', () => {
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000 })
    expect(g.admit(req('PUT', { host }), res())).toBeNull()
    expect(g.admit(req('PUT', { host, origin: 'http://127.0.0.1:7000' }), res())).toBeNull()
    expect(g.admit(req('PUT', { host: 'localhost:7000', origin: 'http://localhost:7000' }), res())).toBeNull()
    for (const origin of ['http://evil.example', 'http://127.0.0.1:5173', 'http://localhost:7000', 'null']) {
      expect(g.admit(req('PUT', { host, origin }), res()), origin).toMatchObject({ status: 403, code: 'ERR_FORBIDDEN_ORIGIN' })
    }
    expect(g.stats().refusals.ERR_FORBIDDEN_ORIGIN).toBe(4)
  })

  it('lets a listed origin in with Access-Control-Allow-Origin and answers its preflight', () => {
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000, corsOrigins: ['http://app.example:5173'] })
    const r = res()
    expect(g.admit(req('GET', { host, origin: 'http://app.example:5173' }), r)).toBeNull()
    expect(r.set['access-control-allow-origin']).toBe('http://app.example:5173')
    expect(r.set.vary).toBe('Origin')
    const pre = res()
    expect(g.admit(req('OPTIONS', { host, origin: 'http://app.example:5173', 'access-control-request-method': 'PUT', 'access-control-request-private-network': 'true' }), pre)).toBe('preflight')
    expect(pre.status).toBe(204)
    expect(pre.set['access-control-allow-methods']).toContain('PUT')
    expect(pre.set['access-control-allow-headers']).toContain('authorization')
    expect(pre.set['access-control-allow-private-network']).toBe('true')
    const other = res()
    expect(g.admit(req('OPTIONS', { host, origin: 'http://evil.example', 'access-control-request-method': 'PUT' }), other)).toMatchObject({ code: 'ERR_FORBIDDEN_ORIGIN' })
    expect(other.set['access-control-allow-origin']).toBeUndefined()
  })

  it('parses --http-cors and --http-name strictly', () => {
    expect(parseCorsOrigin('http://127.0.0.1:5173')).toBe('http://127.0.0.1:5173')
    expect(parseCorsOrigin('https://App.Example/')).toBe('https://app.example')
    for (const bad of ['*', 'null', 'http://a.example/path', 'ftp://a.example', 'a.example', 'http://a.example:80']) expect(() => parseCorsOrigin(bad), bad).toThrow(HttpExposureError)
    expect(parseHttpName('KV.example:8080')).toBe('kv.example:8080')
    expect(parseHttpName('meshkv_1')).toBe('meshkv_1')
    for (const bad of ['http://kv.example', 'kv.example/x', 'a b', '']) expect(() => parseHttpName(bad), bad).toThrow(HttpExposureError)
  })
})

describe('http guard: POST and the token', () => {
  const host = '127.0.0.1:7000'

  it('refuses a POST a form could send (or one with no type); takes JSON and octet-stream', () => {
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000 })
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain;charset=UTF-8', undefined]) {
      const headers: Record<string, string> = type === undefined ? { host } : { host, 'content-type': type }
      expect(g.admit(req('POST', headers), res()), type).toMatchObject({ status: 415, code: 'ERR_FORM_POST' })
    }
    for (const type of ['application/json', 'Application/JSON; charset=utf-8', 'application/octet-stream']) expect(g.admit(req('POST', { host, 'content-type': type }), res()), type).toBeNull()
    expect(g.stats().refusals).toEqual({ ERR_FORBIDDEN_HOST: 0, ERR_FORBIDDEN_ORIGIN: 0, ERR_FORM_POST: 4, ERR_UNAUTHORIZED: 0 })
  })

  it('with a token, only Authorization: Bearer <token> is authorized', () => {
    const open = new HttpGuard({ bindHost: '127.0.0.1', port: 7000 })
    expect(open.authorized(req('GET', { host }))).toBe(true)
    const g = new HttpGuard({ bindHost: '127.0.0.1', port: 7000, token: TOKEN })
    expect(g.authorized(req('GET', { host, authorization: `Bearer ${TOKEN}` }))).toBe(true)
    expect(g.authorized(req('GET', { host, authorization: `bearer ${TOKEN}` }))).toBe(true)
    for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, 'Bearer ', `Basic ${TOKEN}`, TOKEN]) {
      const headers: Record<string, string> = authorization === undefined ? { host } : { host, authorization }
      expect(g.authorized(req('GET', headers)), authorization).toBe(false)
    }
    expect(g.unauthorized(req('GET', { host }))).toMatchObject({ status: 401, code: 'ERR_UNAUTHORIZED', headers: { 'www-authenticate': 'Bearer realm="meshkv"' } })
    expect(g.stats()).toMatchObject({ token: true, refusals: { ERR_UNAUTHORIZED: 1 } })
  })

  it('refuses to start beyond loopback without a token, or with --debug-api; 127.0.0.0/8 is loopback', () => {
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(host), host).toBe(true)
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1']) expect(isLoopbackHost(host), host).toBe(false)
    expect(() => { checkHttpExposure({ host: '127.0.0.1', token: undefined, debugApi: true }) }).not.toThrow()
    expect(() => { checkHttpExposure({ host: '0.0.0.0', token: TOKEN, debugApi: false }) }).not.toThrow()
    expect(() => { checkHttpExposure({ host: '0.0.0.0', token: undefined, debugApi: false }) }).toThrow(/needs a bearer token/)
    expect(() => { checkHttpExposure({ host: '10.0.0.1', token: TOKEN, debugApi: true }) }).toThrow(/--debug-api is refused/)
    expect(() => checkHttpToken('short', 'x')).toThrow(HttpExposureError)
    expect(() => checkHttpToken(`${TOKEN} with space`, 'x')).toThrow(/printable ASCII/)
    expect(checkHttpToken(TOKEN, 'x')).toBe(TOKEN)
  })
})
