/**
 * The HTTP API's front door (issue 15, "a hardened HTTP API"): which requests a Node peer's HTTP server
 * answers at all, decided from the request's headers before any route runs. Four refusals, each a JSON
 * error `{error, code}` with its own code, each counted (`HttpGuard.stats()`, in `GET /stats` as `http`):
 *
 * - ERR_FORBIDDEN_HOST (403): the Host header does not name this server — its bound address and port,
 *   `localhost` on a loopback or wildcard bind (127.0.0.1 and [::1] on a bind to `localhost`), a local
 *   interface address on a wildcard bind, or a name given with `--http-name`. A page on a name its
 *   attacker controls that re-resolves to 127.0.0.1 (DNS rebinding) sends that name as Host, so it is
 *   refused.
 * - ERR_FORBIDDEN_ORIGIN (403): an Origin header that is neither this server's own origin (http:// or
 *   https:// plus the Host the request named) nor one of the `--http-cors` origins. Browsers send Origin
 *   on every cross-origin fetch and on every POST/PUT/DELETE, so a page elsewhere cannot write; clients
 *   without a browser (curl, node/kv.js) send none and are not affected.
 * - ERR_FORM_POST (415): a POST without `application/json` or `application/octet-stream` as its
 *   Content-Type, that is one an HTML form (or any other "simple" cross-origin request, which needs no
 *   preflight) could send. Writes are PUT and DELETE; POST is only for the debug routes.
 * - ERR_UNAUTHORIZED (401): with a token (`--http-token`, `--http-token-file`, MESHKV_HTTP_TOKEN), a request
 *   without `Authorization: Bearer <token>`. The dashboard's static files (public build output) are served
 *   without it; the token is compared as SHA-256 digests with crypto.timingSafeEqual (constant time, and
 *   equal lengths whatever the caller sent).
 *
 * CORS is off unless `--http-cors` lists origins: those get Access-Control-Allow-Origin (never `*`) and
 * their preflight OPTIONS is answered. Whether a bind is loopback (127.0.0.0/8, ::1, localhost: only this
 * machine can connect) decides what `checkHttpExposure` demands at start.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'

/** Every code the guard refuses with; each has a counter from the start (zeros are shown). */
export const HTTP_REFUSAL_CODES = ['ERR_FORBIDDEN_HOST', 'ERR_FORBIDDEN_ORIGIN', 'ERR_FORM_POST', 'ERR_UNAUTHORIZED'] as const
export type HttpRefusalCode = typeof HTTP_REFUSAL_CODES[number]

/** POST bodies a form cannot send (forms: application/x-www-form-urlencoded, multipart/form-data, text/plain). */
export const POST_CONTENT_TYPES: readonly string[] = ['application/json', 'application/octet-stream']

/** Shortest and longest token accepted: short ones can be guessed, and a token is one header line. */
export const HTTP_TOKEN_CHARS_MIN = 16
export const HTTP_TOKEN_CHARS_MAX = 4096
/** Most `--http-name` and `--http-cors` entries each. */
export const HTTP_NAMES_MAX = 64

/** How long a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE_S = 600
const ALLOWED_METHODS = 'GET, HEAD, PUT, DELETE, POST, OPTIONS'
const ALLOWED_HEADERS = 'authorization, content-type, x-meshkv-context'
const EXPOSED_HEADERS = 'x-meshkv-context, x-meshkv-siblings, x-meshkv-acks'

export class HttpExposureError extends Error {
  override name = 'HttpExposureError'
}

/** True for an address only this machine can reach: 127.0.0.0/8 (Linux routes all of it to lo), ::1, localhost. */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (h === 'localhost') return true
  if (net.isIPv4(h)) return h.startsWith('127.')
  if (net.isIPv6(h)) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h)
  return false
}

function isWildcard (host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1')
  return h === '0.0.0.0' || h === '::' || h === '0:0:0:0:0:0:0:0'
}

/**
 * What a bind demands, checked before anything listens: a non-loopback HTTP host needs a token, and never
 * runs the debug API (it can kill and partition peers). Throws HttpExposureError with what to do instead.
 */
export function checkHttpExposure (options: { host: string; token: string | undefined; debugApi: boolean }): void {
  if (isLoopbackHost(options.host)) return
  if (options.debugApi) throw new HttpExposureError(`--debug-api is refused with --http-host ${options.host}: the debug routes kill and partition peers, so they are served on a loopback address only (127.0.0.1, ::1)`)
  if (options.token === undefined) throw new HttpExposureError(`--http-host ${options.host} exposes the HTTP API beyond this machine, so it needs a bearer token: set MESHKV_HTTP_TOKEN, --http-token-file <path> or --http-token <token> (at least ${HTTP_TOKEN_CHARS_MIN} characters), or bind 127.0.0.1`)
}

/** A token as given, or a UsageError-worthy message. */
export function checkHttpToken (token: string, from: string): string {
  if (token.length < HTTP_TOKEN_CHARS_MIN || token.length > HTTP_TOKEN_CHARS_MAX) throw new HttpExposureError(`${from}: the HTTP token must be ${HTTP_TOKEN_CHARS_MIN} to ${HTTP_TOKEN_CHARS_MAX} characters, got ${token.length}`)
  if (!/^[\x21-\x7e]+$/.test(token)) throw new HttpExposureError(`${from}: the HTTP token must be printable ASCII without spaces (it travels in an Authorization header)`)
  return token
}

/** An `--http-cors` value: an origin exactly as browsers send it (scheme://host[:port], no path, no `*`). */
export function parseCorsOrigin (value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new HttpExposureError(`--http-cors ${JSON.stringify(value)} is not an origin (expected e.g. http://127.0.0.1:5173; "*" is not accepted)`)
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value.replace(/\/$/, '').toLowerCase()) {
    throw new HttpExposureError(`--http-cors ${JSON.stringify(value)} is not an origin: give scheme://host[:port] only, e.g. ${url.origin === 'null' ? 'http://127.0.0.1:5173' : url.origin}`)
  }
  return url.origin
}

/** An `--http-name` value: a host name or address, optionally with :port. */
export function parseHttpName (value: string): string {
  const v = value.toLowerCase()
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:\d{1,5})?$/.test(v)) throw new HttpExposureError(`--http-name ${JSON.stringify(value)} is not a host name or address with an optional :port`)
  return v
}

/** Splits a Host header into its (lower-case) name and port; null when it is malformed. */
export function splitHost (header: string): { name: string; port: number | null } | null {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(header.toLowerCase())
  if (m === null) return null
  return { name: m[1]!, port: m[2] === undefined ? null : Number(m[2]) }
}

function bracket (address: string): string {
  return address.includes(':') ? `[${address}]` : address
}

export interface HttpGuardOptions {
  /** The address the server is bound to (`--http-host`). */
  bindHost: string
  /** The port it listens on (known once it listens). */
  port: number
  /** Extra names clients reach it by (`--http-name`): `name` matches any port, `name:port` only that one. */
  names?: readonly string[]
  /** Origins allowed cross-origin (`--http-cors`), as parseCorsOrigin returns them. */
  corsOrigins?: readonly string[]
  /** The bearer token; undefined: no authentication (allowed on loopback binds only, see checkHttpExposure). */
  token?: string
  /** Local interface addresses, for a wildcard bind (default: os.networkInterfaces() at construction). */
  interfaceAddresses?: readonly string[]
}

/** A refusal: status, code and message; `headers` to add (WWW-Authenticate). */
export interface HttpRefusal { status: number; code: HttpRefusalCode; error: string; headers?: Record<string, string> }

/** Distinct error codes `noteError` counts apart; past them, under 'other' (codes come from a fixed set). */
export const HTTP_ERROR_CODES_MAX = 64

export class HttpGuard {
  private readonly refusals: Record<HttpRefusalCode, number>
  /** Requests a route answered with a 4xx (bad input), by error code. */
  private readonly errors = new Map<string, number>()
  /** Host names (bracketed IPv6) accepted on the server's own port (or with no port when it is 80). */
  private readonly boundNames = new Set<string>()
  /** `--http-name` entries: a bare name (any port) or name:port (exactly). */
  private readonly names = new Set<string>()
  private readonly cors: ReadonlySet<string>
  private readonly tokenDigest: Buffer | null

  constructor (private readonly options: HttpGuardOptions) {
    this.refusals = Object.fromEntries(HTTP_REFUSAL_CODES.map(c => [c, 0])) as Record<HttpRefusalCode, number>
    const bind = options.bindHost.toLowerCase().replace(/^\[(.*)\]$/, '$1')
    this.boundNames.add(bracket(bind))
    if (isLoopbackHost(bind) || isWildcard(bind)) this.boundNames.add('localhost')
    // Bound by name: the addresses `localhost` resolves to are the same server.
    if (bind === 'localhost') { this.boundNames.add('127.0.0.1'); this.boundNames.add('[::1]') }
    if (isWildcard(bind)) {
      const addresses = options.interfaceAddresses ?? Object.values(os.networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address))
      for (const a of addresses) this.boundNames.add(bracket(a.toLowerCase().replace(/%.*$/, '')))
    }
    for (const n of options.names ?? []) this.names.add(parseHttpName(n))
    this.cors = new Set(options.corsOrigins ?? [])
    this.tokenDigest = options.token === undefined ? null : digest(options.token)
  }

  /** Whether requests need `Authorization: Bearer <token>`. */
  get authenticates (): boolean {
    return this.tokenDigest !== null
  }

  /** Refusals so far, per code (a copy; every code present), and the routes' 4xx answers by code. */
  stats (): { refusals: Record<HttpRefusalCode, number>; errors: Record<string, number>; token: boolean; cors: string[] } {
    return { refusals: { ...this.refusals }, errors: Object.fromEntries(this.errors), token: this.authenticates, cors: [...this.cors] }
  }

  /** Counts a request a route refused as bad input (a 4xx), by its error code (the body's `code`). */
  noteError (code: string | undefined): void {
    let c = code ?? 'none'
    if (!this.errors.has(c) && this.errors.size >= HTTP_ERROR_CODES_MAX) c = 'other'
    this.errors.set(c, (this.errors.get(c) ?? 0) + 1)
  }

  private refuse (code: HttpRefusalCode, status: number, error: string, headers?: Record<string, string>): HttpRefusal {
    this.refusals[code]++
    return { status, code, error, ...(headers === undefined ? {} : { headers }) }
  }

  private hostAllowed (header: string | undefined): boolean {
    if (header === undefined) return false
    const host = splitHost(header)
    if (host === null) return false
    if (this.boundNames.has(host.name) && (host.port === this.options.port || (host.port === null && this.options.port === 80))) return true
    return this.names.has(host.name) || (host.port !== null && this.names.has(`${host.name}:${host.port}`))
  }

  /**
   * Checks Host, Origin, the answer to a preflight and a POST's content type, in that order; sets the CORS
   * headers on `res` for an allowed cross-origin request. Returns a refusal, 'preflight' when the request
   * was an OPTIONS (answered here), or null to go on (then `authorized` decides about the token).
   */
  admit (req: http.IncomingMessage, res: http.ServerResponse): HttpRefusal | 'preflight' | null {
    const host = req.headers.host
    if (!this.hostAllowed(host)) {
      return this.refuse('ERR_FORBIDDEN_HOST', 403, `Host ${JSON.stringify(host ?? '')} does not name this server: use its bound address (or localhost on a loopback bind), or start it with --http-name <name>`)
    }
    if (this.cors.size > 0) res.setHeader('vary', 'Origin')
    const origin = req.headers.origin
    if (origin !== undefined) {
      const o = origin.toLowerCase()
      const own = o === `http://${host!.toLowerCase()}` || o === `https://${host!.toLowerCase()}`
      if (!own) {
        if (!this.cors.has(o)) return this.refuse('ERR_FORBIDDEN_ORIGIN', 403, `requests from origin ${JSON.stringify(origin)} are refused: only this peer's own dashboard, or an origin given with --http-cors, may call the API from a browser`)
        res.setHeader('access-control-allow-origin', o)
        res.setHeader('access-control-expose-headers', EXPOSED_HEADERS)
      }
    }
    if (req.method === 'OPTIONS') {
      // A preflight from an allowed origin (checked above), or a plain OPTIONS: what may be sent.
      const headers: Record<string, string | number> = { allow: ALLOWED_METHODS, 'content-length': 0 }
      if (origin !== undefined && req.headers['access-control-request-method'] !== undefined) {
        headers['access-control-allow-methods'] = ALLOWED_METHODS
        headers['access-control-allow-headers'] = ALLOWED_HEADERS
        headers['access-control-max-age'] = PREFLIGHT_MAX_AGE_S
        // Chromium's Private Network Access: a public page asking for a private address says so.
        if (req.headers['access-control-request-private-network'] === 'true') headers['access-control-allow-private-network'] = 'true'
      }
      res.writeHead(204, headers)
      res.end()
      return 'preflight'
    }
    if (req.method === 'POST') {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
      if (!POST_CONTENT_TYPES.includes(type)) {
        return this.refuse('ERR_FORM_POST', 415, `POST needs Content-Type ${POST_CONTENT_TYPES.join(' or ')} (types no HTML form can send), got ${JSON.stringify(req.headers['content-type'] ?? '')}; writes are PUT and DELETE`)
      }
    }
    return null
  }

  /** Whether the request carries the token (always true without one). Counts nothing: see `unauthorized`. */
  authorized (req: http.IncomingMessage): boolean {
    if (this.tokenDigest === null) return true
    const header = req.headers.authorization
    if (header === undefined) return false
    const m = /^bearer +(.+)$/i.exec(header.trim())
    if (m === null) return false
    return timingSafeEqual(digest(m[1]!), this.tokenDigest)
  }

  /** The refusal of a request that is not `authorized`, counted. */
  unauthorized (req: http.IncomingMessage): HttpRefusal {
    const given = req.headers.authorization !== undefined
    return this.refuse('ERR_UNAUTHORIZED', 401, given ? 'the bearer token is wrong' : 'this peer\'s HTTP API needs Authorization: Bearer <token> (the token the peer was started with)', { 'www-authenticate': 'Bearer realm="meshkv"' })
  }
}

function digest (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}
