/**
 * The HTTP API of a Node peer (127.0.0.1 unless told otherwise): health, members, ring, the key-value
 * operations, per-key placement, statistics, and the dashboard's static files.
 *
 *   GET    /kv/:key   200 with the value as the body; 300 with JSON {siblings: [...]} when there are
 *                     concurrent values; 404 when missing or deleted. The causal context is in the
 *                     X-Meshkv-Context response header.
 *   PUT    /kv/:key   body = the value's bytes; X-Meshkv-Context request header = the context of the read the
 *                     write replaces (without it, existing values stay as siblings). 204 on success.
 *   DELETE /kv/:key   writes a tombstone (send the context too). 204.
 *   query options: r, w (quorum sizes), dw (durable replicas among the write's acks: at least the mesh's
 *   --durable-acks, the default), strict=1 (primaries only), lww=1 (last writer wins), ttl=<ms>; each route
 *   takes only its own (a GET r and strict; QUERY_PARAMETERS), and refuses any other.
 *   Keys are one URL path segment: percent-encode '/' and other reserved characters.
 *
 * Errors are JSON {error, code, ...}: 400 bad key, context or option; 413 value too large; 409 too many
 * siblings; 507 the store is full (ERR_STORE_FULL: past --memory-max-mb); 503 quorum not reached (with `acked` and `required`), not enough durable replicas up or
 * acknowledging (ERR_NO_DURABLE_REPLICA, with `acked` and `required` durable replicas), or a replica that
 * did not answer.
 *
 *   PUT /heartbeat/:id?ttl=<ms>   a heartbeat of service :id (body: optional metadata, JSON or text, 4 KiB)
 *   GET /services[?local=1]       heartbeat services of the mesh (or this peer's records): state, last beat,
 *                                 replica, metadata
 *   GET /watch?prefix=<p>         Server-Sent Events: put, delete, expired, revived for keys under <p>
 *
 *   GET /kv?prefix=<p>&limit=<n>&cursor=<c>[&local=1]   a page of keys under <p> (limit 1..1000, default
 *                     100), merged across the mesh (or this peer's own with local=1): JSON {keys, cursor,
 *                     membersAsked, membersFailed}; pass `cursor` back for the next page until it is null.
 *   GET /metrics                  Prometheus text format (metrics.ts; README "Metrics")
 *
 * Before any route, the guard (http-guard.ts) refuses a foreign Host (403 ERR_FORBIDDEN_HOST), a foreign
 * Origin (403 ERR_FORBIDDEN_ORIGIN), a POST with a content type a form could send (415 ERR_FORM_POST) and,
 * with a token, a request without it (401 ERR_UNAUTHORIZED; the dashboard's static files stay public).
 * Writes are PUT and DELETE only: POST on /kv/ and /heartbeat/ is 405 ERR_METHOD.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import type * as stream from 'node:stream'
import { base64urlEncode } from '../core/codec.js'
import { errorMessage, MeshkvError, NoDurableReplicaError, QuorumError, RemoteError } from '../core/errors.js'
import { SEGMENT_COUNT, segmentRange } from '../core/ring/ring.js'
import { LIST_LIMIT_MAX } from '../core/kv/listing.js'
import { HEARTBEAT_META_BYTES_MAX, HEARTBEAT_TTL_MS_DEFAULT, HEARTBEAT_TTL_MS_MIN, type Meta } from '../core/kv/heartbeat.js'
import type { MeshPeer as Peer } from '../peer.js'
import { WATCH_TOPIC } from '../services/watch.js'
import type { HttpGuard, HttpRefusal } from './http-guard.js'

export const CONTEXT_HEADER = 'x-meshkv-context'

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
  '.png': 'image/png'
}

/**
 * How long a browser may keep a dashboard file: the build's /assets/ carry a hash of their content in their
 * names (Vite), so a kept copy never goes stale; the page and the service worker are asked for again.
 */
export function staticCaching (pathname: string): string {
  return pathname.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'
}

class HttpError extends Error {
  constructor (readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message)
  }
}

const STATUS_BY_CODE: Record<string, number> = {
  ERR_INVALID_KEY: 400,
  ERR_INVALID_CONTEXT: 400,
  ERR_INVALID_CURSOR: 400,
  ERR_CONFIG: 400,
  ERR_DECODE: 400,
  ERR_VALUE_TOO_LARGE: 413,
  ERR_RECORD_TOO_LARGE: 413,
  ERR_SIBLING_LIMIT: 409,
  ERR_STORE_FULL: 507,
  ERR_QUORUM: 503,
  ERR_NO_DURABLE_REPLICA: 503,
  ERR_TIMEOUT: 503,
  ERR_UNREACHABLE: 503,
  ERR_OVERLOADED: 503,
  ERR_CLOSED: 503,
  ERR_LEAVING: 503,
  ERR_ABORTED: 503
}

function errorBody (error: unknown): { status: number; body: Record<string, unknown> } {
  if (error instanceof HttpError) return { status: error.status, body: { error: error.message, ...error.extra } }
  if (error instanceof QuorumError || error instanceof NoDurableReplicaError) return { status: 503, body: { error: error.message, code: error.code, acked: error.acked, required: error.required } }
  if (error instanceof RemoteError) return { status: STATUS_BY_CODE[error.remoteCode] ?? 502, body: { error: error.remoteMessage, code: error.remoteCode, peer: error.peer } }
  if (error instanceof MeshkvError) return { status: STATUS_BY_CODE[error.code] ?? 500, body: { error: error.message, code: error.code } }
  return { status: 500, body: { error: errorMessage(error), code: 'ERR_INTERNAL' } }
}

/** A request's query parameters (URLSearchParams, or NO_QUERY for a target without any). */
type Query = Pick<URLSearchParams, 'get' | 'getAll' | 'keys'>
const NO_QUERY: Query = new URLSearchParams()

/**
 * The query parameters each route takes. Any other is refused (400 ERR_CONFIG) rather than ignored: a
 * misspelt option (`?tll=60000`) would otherwise store a key that never expires, or write with another quorum
 * than the one asked for.
 */
const QUERY_PARAMETERS = {
  get: ['r', 'strict'],
  put: ['w', 'dw', 'lww', 'strict', 'ttl'],
  delete: ['w', 'dw', 'lww', 'strict'],
  placement: [],
  list: ['prefix', 'limit', 'cursor', 'local'],
  heartbeat: ['ttl'],
  ring: ['tokens'],
  services: ['local'],
  watch: ['prefix']
} as const satisfies Record<string, readonly string[]>

function allowOnly (query: Query, route: string, allowed: readonly string[]): void {
  if (query === NO_QUERY) return
  for (const name of query.keys()) {
    if (allowed.includes(name)) continue
    const takes = allowed.length === 0 ? 'no query parameters' : `only ${allowed.join(', ')}`
    throw new HttpError(400, `unknown query parameter ${JSON.stringify(name.slice(0, 64))}: ${route} takes ${takes}`, { code: 'ERR_CONFIG' })
  }
}

/**
 * Splits a request target into its path and query without a URL parse: the hot KV routes take their key
 * as one raw path segment (decoded once, by decodeURIComponent) and most of their requests carry no query.
 */
function splitTarget (target: string): { pathname: string; query: Query } {
  const q = target.indexOf('?')
  if (q < 0) return { pathname: target, query: NO_QUERY }
  const raw = target.slice(q + 1)
  // URLSearchParams takes a malformed escape (%ZZ) literally and invalid UTF-8 as U+FFFD, so a listing's
  // prefix would silently be another one: refused, as the same escapes in a key are.
  if (raw.includes('%')) {
    for (const part of raw.split(/[&=]/)) {
      try {
        decodeURIComponent(part)
      } catch {
        throw new HttpError(400, `the query is not valid percent-encoded UTF-8: ${JSON.stringify(part.slice(0, 64))}`, { code: 'ERR_DECODE' })
      }
    }
  }
  return { pathname: target.slice(0, q), query: new URLSearchParams(raw) }
}

/**
 * The origin form (path and query) of an absolute-form request target, `http://host:port/kv/x?w=2`, which a
 * client configured for a proxy sends and a server must accept (RFC 9112 §3.2.2). Its authority must be the
 * request's Host header, which the guard checks (against DNS rebinding): a target naming another host is
 * refused, not served as if it named this one. The path is taken as sent, not normalized (`/kv/..` stays
 * the key `..`).
 */
export function originForm (target: string, host: string | undefined): string {
  const m = /^https?:\/\/([^/?#]*)/i.exec(target)
  if (m === null) throw new HttpError(400, `unsupported request target ${JSON.stringify(target.slice(0, 64))}: send a path, or an absolute http:// URL`, { code: 'ERR_DECODE' })
  const authority = m[1]!
  if (host === undefined || authority.toLowerCase() !== host.toLowerCase()) {
    throw new HttpError(400, `the request target names ${JSON.stringify(authority.slice(0, 64))} but the Host header ${host === undefined ? 'is missing' : `is ${JSON.stringify(host.slice(0, 64))}`}`, { code: 'ERR_DECODE' })
  }
  const rest = target.slice(m[0].length)
  return rest.startsWith('/') ? rest : `/${rest}`
}

/** The one value of query parameter `name` (null if absent); given twice it is refused, not silently the first. */
function single (query: Query, name: string): string | null {
  const raw = query.get(name)
  if (raw !== null && query.getAll(name).length > 1) throw new HttpError(400, `query parameter ${name} given more than once`, { code: 'ERR_CONFIG' })
  return raw
}

/** Decimal digits only: not '', '0x1', '1e3', ' 1' or '-0', which Number() would take. */
const DECIMAL = /^\d{1,16}$/

function option (query: Query, name: string, min: number, max: number): number | undefined {
  const raw = single(query, name)
  if (raw === null) return undefined
  const n = DECIMAL.test(raw) ? Number(raw) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, `query parameter ${name} must be an integer in [${min}, ${max}] in decimal digits, got ${JSON.stringify(raw)}`, { code: 'ERR_CONFIG' })
  return n
}

function flag (query: Query, name: string): boolean | undefined {
  const raw = single(query, name)
  if (raw === null) return undefined
  if (raw === '1' || raw === 'true' || raw === '') return true
  if (raw === '0' || raw === 'false') return false
  throw new HttpError(400, `query parameter ${name} must be 1 or 0, got ${JSON.stringify(raw)}`, { code: 'ERR_CONFIG' })
}

/**
 * Reads a request body of at most `limit` bytes into one array (the only copy: the engine keeps it as the
 * value); a larger one is refused with 413 without reading it all. Settles once the body ends, or on the
 * request's error or close (a client that went away).
 */
export function readBody (req: http.IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? NaN)
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new HttpError(413, `value of ${declared} bytes exceeds the limit of ${limit} bytes`, { code: 'ERR_VALUE_TOO_LARGE' }))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (error: Error | null): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
      if (error !== null) { reject(error); return }
      const body = new Uint8Array(size)
      let at = 0
      for (const c of chunks) { body.set(c, at); at += c.length }
      resolve(body)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) done(new HttpError(413, `value exceeds the limit of ${limit} bytes`, { code: 'ERR_VALUE_TOO_LARGE' }))
      else chunks.push(chunk)
    }
    const onEnd = (): void => { done(null) }
    const onError = (error: Error): void => { done(error) }
    const onClose = (): void => { done(new HttpError(400, 'the request body ended early: the client went away', { code: 'ERR_DECODE' })) }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
  })
}

function utf8OrNull (bytes: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return null
  }
}

export interface HttpApiOptions {
  peer: Peer
  webRoot: string
  info: () => unknown
  /** `GET /metrics` in Prometheus text format (metrics.ts); without it the route is 404. */
  metrics?: { render(): Promise<{ contentType: string; body: string }> }
  /** Host, Origin, form-POST and token checks, run before every route; its counters go into /stats as `http`. */
  guard: HttpGuard
  /** Extra routes (the debug API); return true if handled. `send` answers JSON; `res` is there for other bodies. */
  extra?: (req: http.IncomingMessage, url: URL, send: (status: number, body: unknown) => void, res: http.ServerResponse) => Promise<boolean>
}

/** Watch streams (Server-Sent Events) one peer serves at once, and what each may have buffered. */
export const SSE_CLIENTS_MAX = 64
/** A refused (too large) upload is read and dropped up to this many bytes and this long after the 413, so the
 * client gets the answer instead of a reset connection; past either, the connection is closed. */
export const UPLOAD_DRAIN_BYTES_MAX = 64 * 1024 * 1024
export const UPLOAD_DRAIN_MS = 10_000
export const SSE_BUFFER_BYTES_MAX = 1024 * 1024
/** Retry-After of a 503 ERR_OVERLOADED (admission control, a full queue to a replica), in seconds; the
 * heartbeat benchmark's services wait this long before they retry a refused beat, as meshkv/client does. */
export const OVERLOADED_RETRY_AFTER_S = 1
/**
 * How long an idle keep-alive connection stays open (the server's `keepAliveTimeout`; Node 20 closes it about
 * a second after, and announces `Keep-Alive: timeout=65`). Node's default of 5 s races clients that keep
 * connections without a timeout of their own, as `http.Agent({ keepAlive: true })` does: a request sent on a
 * connection as the server closes it gets ECONNRESET, and the client cannot tell whether a PUT was applied.
 * 65 s outlasts the usual proxy idle timeouts (60 s) and a busy client's idle sockets; fetch (undici) and
 * meshkv/client close theirs a second before the announced timeout.
 */
export const HTTP_KEEP_ALIVE_MS = 65_000

/**
 * Answers a request Node's HTTP parser refused before any route (`clientError`): request line and headers
 * over `http.maxHeaderSize` (16 KiB unless node's --max-http-header-size says otherwise) get 431
 * ERR_HEADERS_TOO_LARGE, headers not complete within the server's headersTimeout 408 ERR_TIMEOUT, anything
 * else unparsable 400 ERR_DECODE; each as JSON `{error, code}` on a connection that then closes, and told to
 * `count` by code. Instead of Node's default: the same statuses with an empty body, counted nowhere.
 */
export function clientErrorHandler (count: (code: string) => void): (error: Error & { code?: string }, socket: stream.Duplex) => void {
  return (error, socket) => {
    // A connection reset or already answered: nothing to say on it.
    if (error.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    const [status, code, message] = error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'ERR_HEADERS_TOO_LARGE', `the request line and headers exceed ${http.maxHeaderSize} bytes`]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'ERR_TIMEOUT', 'the request headers did not arrive in time']
        : [400, 'ERR_DECODE', `malformed HTTP request (${error.code ?? error.message})`]
    count(code)
    const body = JSON.stringify({ error: message, code }) + '\n'
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]!}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  }
}

/** Whether a request carries a body (chunked, or a Content-Length other than 0). */
export function hasBody (req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
}

/** Applies the HTTP API's connection settings to the peer's server. */
export function configureHttpServer (server: http.Server): void {
  server.keepAliveTimeout = HTTP_KEEP_ALIVE_MS
}

export function httpHandler (options: HttpApiOptions): http.RequestListener {
  const { peer, guard } = options
  /** Dashboard files answered (`/stats` http.files): all of them, and those under /assets/. */
  const files = { served: 0, assets: 0 }
  let streams = 0
  return (req, res) => {
    const reply = (status: number, body: unknown, headers: Record<string, string>): void => {
      if (res.headersSent) return
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
      res.end(JSON.stringify(body, null, 2) + '\n')
    }
    // Every 4xx a route answers is bad input, counted by its code (the guard's own refusals are counted apart).
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      if (status >= 400 && status < 500 && !res.headersSent) guard.noteError((body as { code?: string } | null)?.code)
      reply(status, body, headers)
    }
    const fail = (error: unknown): void => {
      // Bad input is the client's problem: a clear status and message, never a crashed peer.
      const { status, body } = errorBody(error)
      // Refused by admission control (or a full queue to a replica): try again after OVERLOADED_RETRY_AFTER_S.
      if (body.code === 'ERR_OVERLOADED') { json(status, body, { 'retry-after': String(OVERLOADED_RETRY_AFTER_S) }); return }
      if (status !== 413) { json(status, body); return }
      // A refused upload: answer at once, and read the rest of the body into nothing so the client, still
      // sending, gets the 413 instead of a reset connection (closing the socket under an upload resets it),
      // and the connection stays usable. Bounded: past UPLOAD_DRAIN_BYTES_MAX or UPLOAD_DRAIN_MS the
      // connection is destroyed.
      json(status, body)
      let drained = 0
      const timer = setTimeout(() => { req.destroy() }, UPLOAD_DRAIN_MS)
      req.on('data', (chunk: Buffer) => { drained += chunk.length; if (drained > UPLOAD_DRAIN_BYTES_MAX) { clearTimeout(timer); req.destroy() } })
      req.on('end', () => { clearTimeout(timer) })
      req.on('close', () => { clearTimeout(timer) })
      req.resume()
    }
    const refuse = (refusal: HttpRefusal): void => {
      // A refused upload is not read: the connection closes after the answer instead of draining the body.
      reply(refusal.status, { error: refusal.error, code: refusal.code }, { ...refusal.headers, ...(hasBody(req) ? { connection: 'close' } : {}) })
    }
    // Everything below reads the target in origin form (a path); `OPTIONS *` goes on to the guard as it is.
    if (req.url !== undefined && !req.url.startsWith('/') && req.url !== '*') {
      try {
        req.url = originForm(req.url, req.headers.host)
      } catch (error) {
        const { status, body } = errorBody(error)
        json(status, body, hasBody(req) ? { connection: 'close' } : {})
        return
      }
    }
    const admitted = guard.admit(req, res)
    if (admitted === 'preflight') return
    if (admitted !== null) { refuse(admitted); return }
    if (!guard.authorized(req)) {
      // Without the token only the dashboard's files (public build output, no data) are served.
      publicFile(req).then(url => { if (url === null) refuse(guard.unauthorized(req)); else serveStatic(url, res, json) }).catch(fail)
      return
    }
    route(req, res, json).catch(fail)
  }

  /** The URL of a GET/HEAD for an existing file of the dashboard, else null. */
  async function publicFile (req: http.IncomingMessage): Promise<URL | null> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return null
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      return null
    }
    const file = staticFile(url)
    if (file === null) return null
    try {
      return (await fs.promises.stat(file)).isFile() ? url : null
    } catch {
      return null
    }
  }

  async function route (req: http.IncomingMessage, res: http.ServerResponse, json: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    const target = req.url ?? '/'
    // The KV and heartbeat routes, most of all requests, skip the URL parse (splitTarget).
    if (target.startsWith('/kv/') || target.startsWith('/heartbeat/')) {
      const { pathname, query } = splitTarget(target)
      const parts = pathname.split('/')
      if (parts[1] === 'kv') return await kvRoute(req, res, query, parts, json)
      if (parts.length === 3) return await heartbeatRoute(req, res, query, parts[2]!, json)
      throw new HttpError(404, 'not found: use PUT /heartbeat/<percent-encoded service id>', { code: 'ERR_NOT_FOUND' })
    }
    // Key listing: checked after the hot routes above, so they pay nothing for it.
    if (target === '/kv' || target.startsWith('/kv?')) return await listRoute(req, splitTarget(target).query, json)
    let url: URL
    try {
      url = new URL(target, 'http://localhost')
    } catch {
      throw new HttpError(400, 'unparsable request URL', { code: 'ERR_DECODE' })
    }
    if (url.pathname === '/watch' && req.method === 'GET') return watchRoute(req, res, url)
    if (options.extra !== undefined && await options.extra(req, url, json, res)) return
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed', code: 'ERR_METHOD' })
    if (url.pathname === '/health') return json(200, { status: 'ok', id: peer.id })
    if (url.pathname === '/metrics' && options.metrics !== undefined) {
      const { contentType, body } = await options.metrics.render()
      res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    if (url.pathname === '/members') {
      return json(200, peer.members().map(m => ({ id: m.id, state: m.state, incarnation: m.incarnation, kind: m.meta.kind ?? 'unknown', vnodes: m.meta.vnodes, location: m.meta.location, durability: m.meta.durability ?? 'durable', http: m.meta.http, relay: m.meta.relay, addrs: m.meta.addrs })))
    }
    if (url.pathname === '/ring') {
      allowOnly(url.searchParams, 'GET /ring', QUERY_PARAMETERS.ring)
      return json(200, ringView(peer, flag(url.searchParams, 'tokens') ?? true))
    }
    if (url.pathname === '/stats') return json(200, { id: peer.id, storage: peer.engine.stats(), ...peer.store.stats(), swim: peer.membership.stats, watch: { ...peer.watcher.stats, subscribers: peer.libp2p.services.pubsub.getSubscribers(WATCH_TOPIC).length, publishing: peer.watcher.publishing }, http: { ...guard.stats(), files: { ...files } } })
    if (url.pathname === '/api/info') return json(200, options.info())
    if (url.pathname === '/services') {
      // Mesh-wide by default (every up member's records, merged); ?local=1 for this peer's own records.
      allowOnly(url.searchParams, 'GET /services', QUERY_PARAMETERS.services)
      const local = flag(url.searchParams, 'local') === true
      const result = local ? { services: peer.services(), asked: 1, failed: 0 } : await peer.meshServices({ signal: AbortSignal.timeout(10_000) })
      const services = result.services
      return json(200, { peer: peer.id, scope: local ? 'local' : 'mesh', detector: peer.store.kv.detector, membersAsked: result.asked, membersFailed: result.failed, alive: services.filter(x => x.state === 'alive').length, expired: services.filter(x => x.state === 'expired').length, services })
    }
    return serveStatic(url, res, json)
  }

  async function kvRoute (req: http.IncomingMessage, res: http.ServerResponse, query: Query, parts: string[], json: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    let key: string
    try {
      key = decodeURIComponent(parts[2]!)
    } catch {
      throw new HttpError(400, 'the key is not valid percent-encoded UTF-8', { code: 'ERR_INVALID_KEY' })
    }
    if (parts.length === 4 && parts[3] === 'placement' && (req.method === 'GET' || req.method === 'HEAD')) {
      allowOnly(query, 'GET /kv/<key>/placement', QUERY_PARAMETERS.placement)
      const p = await peer.placement(key)
      return json(200, {
        key,
        position: p.position,
        segment: p.segment,
        primaries: p.primaries,
        replicas: p.replicas.map(r => ({
          id: r.id,
          role: r.role,
          ...(r.hintFor === undefined ? {} : { hintFor: r.hintFor }),
          up: r.up,
          location: r.location,
          durability: r.durable ? 'durable' : 'volatile',
          reason: r.reason,
          why: whyChosen(r),
          ...(r.error === undefined ? {} : { error: r.error }),
          ...(r.state === undefined ? {} : { version: r.state === null ? null : { vv: Object.fromEntries(pairs(r.state.vv)), siblings: r.state.siblings.map(s => ({ replica: s.id, counter: s.n, deleted: s.value === null, wall: s.wall })) } })
        }))
      })
    }
    if (parts.length === 4 && parts[3] === 'placement') return json(405, { error: 'method not allowed: GET /kv/<key>/placement', code: 'ERR_METHOD' }, { allow: 'GET, HEAD' })
    if (parts.length !== 3) throw new HttpError(404, 'not found: use /kv/<percent-encoded key> or /kv/<key>/placement', { code: 'ERR_NOT_FOUND' })
    const context = req.headers[CONTEXT_HEADER]
    const ctx = typeof context === 'string' && context !== '' ? { context } : {}
    const strict = flag(query, 'strict')
    const common = strict === undefined ? {} : { strict }
    if (req.method === 'GET' || req.method === 'HEAD') {
      allowOnly(query, 'GET /kv/<key>', QUERY_PARAMETERS.get)
      const r = option(query, 'r', 1, 16)
      const result = await peer.get(key, { ...common, ...(r === undefined ? {} : { r }) })
      const headers: Record<string, string> = result.context === '' ? {} : { [CONTEXT_HEADER]: result.context }
      if (result.values.length === 0) return json(404, { error: result.deleted ? 'deleted' : 'not found', key }, headers)
      if (result.values.length === 1) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'x-meshkv-siblings': '1', ...headers })
        res.end(req.method === 'HEAD' ? undefined : result.values[0])
        return
      }
      return json(300, {
        key,
        context: result.context,
        siblings: result.siblings.map(s => ({ value: utf8OrNull(s.value), base64url: base64urlEncode(s.value), bytes: s.value.length, wall: s.wall, replica: s.replica, counter: s.counter }))
      }, { ...headers, 'x-meshkv-siblings': String(result.values.length) })
    }
    if (req.method === 'PUT') allowOnly(query, 'PUT /kv/<key>', QUERY_PARAMETERS.put)
    else if (req.method === 'DELETE') allowOnly(query, 'DELETE /kv/<key>', QUERY_PARAMETERS.delete)
    const w = option(query, 'w', 1, 16)
    const dw = option(query, 'dw', 0, 16)
    const lww = flag(query, 'lww')
    const writeOptions = { ...common, ...ctx, ...(w === undefined ? {} : { w }), ...(dw === undefined ? {} : { dw }), ...(lww === undefined ? {} : { lww }) }
    if (req.method === 'PUT') {
      const ttlMs = option(query, 'ttl', 0, Number.MAX_SAFE_INTEGER)
      const value = await readBody(req, peer.engine.config.valueBytesMax)
      const result = await peer.put(key, value, { ...writeOptions, ...(ttlMs === undefined ? {} : { ttlMs }) })
      res.writeHead(204, { [CONTEXT_HEADER]: result.context, 'x-meshkv-acks': String(result.acks) })
      res.end()
      return
    }
    if (req.method === 'DELETE') {
      const result = await peer.delete(key, writeOptions)
      res.writeHead(204, { [CONTEXT_HEADER]: result.context, 'x-meshkv-acks': String(result.acks) })
      res.end()
      return
    }
    json(405, { error: 'method not allowed: use GET, PUT or DELETE', code: 'ERR_METHOD' }, { allow: 'GET, HEAD, PUT, DELETE' })
  }

  async function listRoute (req: http.IncomingMessage, query: Query, json: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed: GET /kv?prefix=<p>&limit=<n>&cursor=<c>', code: 'ERR_METHOD' }, { allow: 'GET, HEAD' })
    allowOnly(query, 'GET /kv', QUERY_PARAMETERS.list)
    const local = flag(query, 'local') === true
    const limit = option(query, 'limit', 1, LIST_LIMIT_MAX)
    const prefix = single(query, 'prefix') ?? ''
    const cursor = single(query, 'cursor')
    // A page waits at most for its rounds of requests (kv/listing.ts), each bounded by the request timeout.
    const result = await peer.list({ prefix, local, ...(limit === undefined ? {} : { limit }), ...(cursor === null ? {} : { cursor }), signal: AbortSignal.timeout(60_000) })
    json(200, { peer: peer.id, scope: local ? 'local' : 'mesh', prefix, keys: result.keys, cursor: result.cursor, membersAsked: result.membersAsked, membersFailed: result.membersFailed })
  }

  async function heartbeatRoute (req: http.IncomingMessage, res: http.ServerResponse, query: Query, encoded: string, json: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    if (req.method !== 'PUT') return json(405, { error: 'method not allowed: PUT /heartbeat/<service id>', code: 'ERR_METHOD' }, { allow: 'PUT' })
    let id: string
    try {
      id = decodeURIComponent(encoded)
    } catch {
      throw new HttpError(400, 'the service id is not valid percent-encoded UTF-8', { code: 'ERR_INVALID_KEY' })
    }
    allowOnly(query, 'PUT /heartbeat/<service id>', QUERY_PARAMETERS.heartbeat)
    const ttlMs = option(query, 'ttl', HEARTBEAT_TTL_MS_MIN, peer.engine.config.ttlMsMax) ?? HEARTBEAT_TTL_MS_DEFAULT
    const body = await readBody(req, HEARTBEAT_META_BYTES_MAX)
    let meta: Meta = null
    if (body.length > 0) {
      const text = utf8OrNull(body)
      if (text === null) throw new HttpError(400, 'heartbeat metadata must be UTF-8 (JSON or text)', { code: 'ERR_CONFIG' })
      try { meta = JSON.parse(text) as Meta } catch { meta = text }
    }
    const result = await peer.heartbeat(id, { ttlMs, meta })
    res.writeHead(204, { 'x-meshkv-acks': String(result.acks) })
    res.end()
  }

  function watchRoute (req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    if (streams >= SSE_CLIENTS_MAX) throw new HttpError(503, `more than ${SSE_CLIENTS_MAX} watch streams on this peer`, { code: 'ERR_OVERLOADED' })
    allowOnly(url.searchParams, 'GET /watch', QUERY_PARAMETERS.watch)
    const prefix = single(url.searchParams, 'prefix') ?? ''
    streams++
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
    res.write(`: watching ${JSON.stringify(prefix)} on ${peer.id}\n\n`)
    const off = peer.watch(prefix, event => {
      // A client that does not keep up is disconnected (it reconnects and re-reads /services) rather than
      // silently missing events.
      if (res.writableLength > SSE_BUFFER_BYTES_MAX) { res.destroy(); return }
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
    })
    const keepAlive = setInterval(() => { res.write(': keep-alive\n\n') }, 15_000)
    const close = (): void => {
      clearInterval(keepAlive)
      off()
      streams--
    }
    req.once('close', close)
  }

  /** The dashboard file a path names, never outside webRoot; null for none. */
  function staticFile (url: URL): string | null {
    let rel: string
    try {
      rel = url.pathname === '/' ? 'index.html' : decodeURIComponent(url.pathname).replace(/^\/+/, '')
    } catch {
      throw new HttpError(400, 'undecodable path', { code: 'ERR_DECODE' })
    }
    if (rel.includes('\0')) return null
    const file = path.resolve(options.webRoot, rel)
    return file.startsWith(path.resolve(options.webRoot) + path.sep) ? file : null
  }

  function serveStatic (url: URL, res: http.ServerResponse, json: (status: number, body: unknown) => void): void {
    const file = staticFile(url)
    if (file === null) return json(404, { error: 'not found', code: 'ERR_NOT_FOUND' })
    fs.readFile(file, (error, body) => {
      if (error !== null) return json(404, { error: 'not found', code: 'ERR_NOT_FOUND', path: url.pathname })
      files.served++
      if (url.pathname.startsWith('/assets/')) files.assets++
      res.writeHead(200, { 'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': staticCaching(url.pathname) })
      res.end(body)
    })
  }
}

function pairs (vv: ReadonlyArray<string | number>): Array<[string, number]> {
  const out: Array<[string, number]> = []
  for (let i = 0; i < vv.length; i += 2) out.push([vv[i] as string, vv[i + 1] as number])
  return out
}

/** A replica's place in a key's list, in words (`GET /kv/<key>/placement`). */
function whyChosen (r: { role: string; hintFor?: string; location: string; durable: boolean; reason: string }): string {
  const what = r.durable ? 'durable' : 'volatile'
  if (r.role === 'fallback') return `fallback (${what}, ${r.location}) holding a hint for down primary ${r.hintFor ?? '?'}: the next up member clockwise that keeps the location and durability rules`
  if (r.reason === 'repeated-location') return `primary (${what}) at a location already used (${r.location}): fewer locations than N, or a durable place to fill`
  return `primary (${what}), the first member clockwise at location ${r.location}`
}

/** Members with their state and token count, optionally every token, and each segment's replicas. */
export function ringView (peer: Peer, withTokens: boolean): unknown {
  const ring = peer.ring()
  const states = new Map(peer.members().map(m => [m.id, m.state]))
  const ownership = ring.ownership()
  const n = peer.store.config.n
  return {
    n,
    segments: SEGMENT_COUNT,
    minDurable: ring.durableWanted(n),
    locations: ring.locationCount,
    members: ring.members.map(m => ({ id: m.id, vnodes: m.vnodes, location: m.location ?? m.id, durability: m.durable === false ? 'volatile' : 'durable', state: states.get(m.id) ?? 'unknown', ownership: ownership.get(m.id) ?? 0 })),
    ...(withTokens ? { tokens: ring.tokenList().map(([position, id]) => ({ position, id })) } : {}),
    segmentReplicas: Array.from({ length: SEGMENT_COUNT }, (_, s) => ({ segment: s, start: segmentRange(s)[0], replicas: ring.segmentReplicas(s, n) }))
  }
}
