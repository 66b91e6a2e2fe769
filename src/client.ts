/**
 * `meshkv/client`: a small typed client for a Node peer's HTTP API, on `fetch` (Node 18+ and browsers).
 * It carries the causal context, turns every error reply into the same typed error the library throws
 * (QuorumError, SiblingLimitError, ...; the server's message kept), retries 503s with backoff, and takes an
 * AbortSignal on every call.
 *
 *   const client = new MeshkvClient({ url: 'http://127.0.0.1:7000' })
 *   const { context } = await client.put('user:1', 'ada')
 *   const read = await client.get('user:1')               // { values, siblings, context, deleted }
 *   await client.put('user:1', 'ada l.', { context: read.context })
 */
import { base64urlDecode } from './core/codec.js'
import { integer } from './core/config.js'
import { decodeContext } from './core/version/context.js'
import {
  AbortError, ClosedError, ConfigError, DecodeError, InvalidContextError, InvalidCursorError, InvalidKeyError, LeavingError, MeshkvError,
  NoDurableReplicaError, OverloadedError, QuorumError, SiblingLimitError, StoreFullError, TimeoutError, UnreachableError, ValueTooLargeError
} from './core/errors.js'

export const CONTEXT_HEADER = 'x-meshkv-context'
/** `/kv/<key>` with or without a query: a key's own route (not `/kv/<key>/placement`, nor the listing). */
const KEY_PATH = /^\/kv\/[^/?]+(?:\?|$)/
/** Retries of a request answered 503 (or that could not reach the peer) unless `retries` says otherwise. */
export const CLIENT_RETRIES_DEFAULT = 3
/** First backoff; each retry doubles it, with full jitter, up to CLIENT_RETRY_MAX_MS. */
export const CLIENT_RETRY_BASE_MS = 100
export const CLIENT_RETRY_MAX_MS = 2000
/** A server's Retry-After is honoured up to this long. */
export const CLIENT_RETRY_AFTER_MAX_MS = 10_000
/** Each attempt's own time limit unless `timeoutMs` says otherwise. */
export const CLIENT_TIMEOUT_MS_DEFAULT = 30_000

export interface ClientOptions {
  /** The peer's HTTP address. Default http://127.0.0.1:7000. */
  url?: string
  /** Bearer token, for a peer whose HTTP API requires one. */
  token?: string
  /** Retries after a 503 or an unreachable peer (0..10, default 3); a put or delete only after a refusal that
   * stored nothing (ERR_OVERLOADED, ERR_LEAVING, ERR_STARTING, connection refused). Other errors are never retried. */
  retries?: number
  /** Time limit of each attempt in ms (default 30000). */
  timeoutMs?: number
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch
}

export interface ClientSibling {
  readonly value: Uint8Array
  /** Wall-clock ms of the write (its hybrid logical clock's physical part). */
  readonly wall: number
  /** The replica that coordinated the write and its counter (the dot). */
  readonly replica: string
  readonly counter: number
}

export interface ClientGetResult {
  readonly key: string
  /** Live values: none if missing or deleted, several for concurrent writes (siblings). */
  readonly values: readonly Uint8Array[]
  /** With more than one value: each value's write (the HTTP API sends them only then); else empty. */
  readonly siblings: readonly ClientSibling[]
  /** Opaque causal context: pass it to the next put or delete of the key ('' if the key never existed). */
  readonly context: string
  /** The key was deleted (a tombstone, no value). */
  readonly deleted: boolean
}

export interface ClientPutResult {
  readonly key: string
  readonly context: string
  /** Replicas that acknowledged (at least W). */
  readonly acks: number
}

export interface ClientReadOptions {
  r?: number
  /** Primaries only, no fallbacks. */
  strict?: boolean
  signal?: AbortSignal
}

export interface ClientWriteOptions {
  /** The context of the read this write replaces; without it existing values stay as siblings. */
  context?: string
  w?: number
  /** Durable replicas among the acknowledgements (at least the mesh's --durable-acks). */
  dw?: number
  lww?: boolean
  /** The key expires this long after its last write. */
  ttlMs?: number
  strict?: boolean
  signal?: AbortSignal
}

/** An error reply whose code no library error class stands for (a refused Origin, a missing token, ...). */
export class HttpResponseError extends MeshkvError {
  readonly code: string
  constructor (readonly status: number, code: string | undefined, message: string, readonly body: unknown) {
    super(message)
    this.code = code ?? `ERR_HTTP_${status}`
  }
}

/** Fields an error reply may carry (see the HTTP API's errors in the README). */
interface ErrorBody { error?: string; code?: string; acked?: number; required?: number; peer?: string; key?: string }

/** The typed error for an error reply: the library's class for its code, with the server's message. */
export function errorFromReply (status: number, body: ErrorBody, op: 'get' | 'put' | 'delete', url: string): MeshkvError {
  const message = typeof body.error === 'string' ? body.error : `HTTP ${status}`
  const acked = body.acked ?? 0
  const required = body.required ?? 0
  const peer = body.peer ?? url
  let error: MeshkvError
  switch (body.code) {
    case 'ERR_INVALID_KEY': error = new InvalidKeyError(message); break
    case 'ERR_INVALID_CONTEXT': error = new InvalidContextError(message); break
    case 'ERR_CONFIG': error = new ConfigError('request', message); break
    case 'ERR_INVALID_CURSOR': error = new InvalidCursorError(message); break
    case 'ERR_DECODE': error = new DecodeError('request', message); break
    case 'ERR_VALUE_TOO_LARGE':
    case 'ERR_RECORD_TOO_LARGE': error = new ValueTooLargeError(0, 0); break
    case 'ERR_SIBLING_LIMIT': error = new SiblingLimitError(body.key ?? '', 0, 0); break
    case 'ERR_STORE_FULL': error = new StoreFullError(0, 0, 'write'); break
    case 'ERR_QUORUM': error = new QuorumError(op, acked, required, required); break
    case 'ERR_NO_DURABLE_REPLICA': error = new NoDurableReplicaError(op === 'get' ? 'put' : op, acked, required, 0); break
    case 'ERR_TIMEOUT': error = new TimeoutError(peer, 0); break
    case 'ERR_UNREACHABLE': error = new UnreachableError(peer, message); break
    case 'ERR_OVERLOADED': error = new OverloadedError(peer, 0); break
    case 'ERR_LEAVING': error = new LeavingError(peer); break
    case 'ERR_CLOSED': error = new ClosedError(peer); break
    case 'ERR_ABORTED': error = new AbortError(); break
    default: return new HttpResponseError(status, body.code, message, body)
  }
  // The server's words, which say more than what the fields of the reply allow rebuilding.
  error.message = message
  return error
}

/** An optional integer option: absent, or within [min, max] (ConfigError naming it otherwise). */
function checkInt (name: string, value: number | undefined, min: number, max: number): void {
  if (value !== undefined) integer(name, value, min, max)
}

/**
 * A key as one URL path segment, percent-encoded. `.` and `..` cannot be one: URL parsing resolves them away
 * (`%2E` included), so a request for them would reach another path; they are refused (use the library).
 */
export function encodeKey (key: string): string {
  if (typeof key !== 'string' || key === '') throw new InvalidKeyError('must be a non-empty string')
  if (key === '.' || key === '..') throw new InvalidKeyError(`${JSON.stringify(key)} cannot be addressed over HTTP (URL parsing resolves it away); use the library`)
  try {
    return encodeURIComponent(key)
  } catch {
    throw new InvalidKeyError('is not valid UTF-16 (it holds a lone surrogate), so it has no UTF-8 form')
  }
}

const isAborted = (signal: AbortSignal | undefined): boolean => signal?.aborted === true

const sleep = (ms: number, signal: AbortSignal | undefined): Promise<void> => new Promise((resolve, reject) => {
  if (signal?.aborted === true) { reject(new AbortError(signal.reason)); return }
  const onAbort = (): void => { clearTimeout(timer); reject(new AbortError(signal?.reason)) }
  const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
  signal?.addEventListener('abort', onAbort, { once: true })
})

export class MeshkvClient {
  readonly url: string
  private readonly token: string | undefined
  private readonly retries: number
  private readonly timeoutMs: number
  private readonly fetch: typeof fetch

  constructor (options: ClientOptions = {}) {
    const url = options.url ?? 'http://127.0.0.1:7000'
    try {
      const parsed = new URL(url)
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`protocol ${parsed.protocol}`)
    } catch (error) {
      throw new ConfigError('url', `must be an http(s) URL such as http://127.0.0.1:7000, got ${JSON.stringify(url)} (${error instanceof Error ? error.message : String(error)})`)
    }
    checkInt('retries', options.retries, 0, 10)
    checkInt('timeoutMs', options.timeoutMs, 1, 3_600_000)
    this.url = url.replace(/\/+$/, '')
    this.token = options.token
    this.retries = options.retries ?? CLIENT_RETRIES_DEFAULT
    this.timeoutMs = options.timeoutMs ?? CLIENT_TIMEOUT_MS_DEFAULT
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
  }

  async get (key: string, options: ClientReadOptions = {}): Promise<ClientGetResult> {
    checkInt('r', options.r, 1, 16)
    const res = await this.request('GET', this.kvPath(key, { r: options.r, strict: options.strict }), 'get', options.signal)
    const context = res.headers.get(CONTEXT_HEADER) ?? ''
    if (res.status === 200) {
      const value = new Uint8Array(await res.arrayBuffer())
      return { key, values: [value], siblings: [], context, deleted: false }
    }
    if (res.status === 300) {
      const body = await res.json() as { siblings: Array<{ base64url: string; wall: number; replica: string; counter: number }> }
      const siblings = body.siblings.map(s => ({ value: base64urlDecode(s.base64url, 'sibling value'), wall: s.wall, replica: s.replica, counter: s.counter }))
      return { key, values: siblings.map(s => s.value), siblings, context, deleted: false }
    }
    // 404: missing, or deleted (the tombstone's context lets a put replace it without a sibling).
    const body = await res.json() as { error?: string }
    return { key, values: [], siblings: [], context, deleted: body.error === 'deleted' }
  }

  /** The first value as UTF-8 text, or null if the key is missing or deleted (siblings: see `get`). */
  async getText (key: string, options: ClientReadOptions = {}): Promise<string | null> {
    const result = await this.get(key, options)
    return result.values.length === 0 ? null : new TextDecoder().decode(result.values[0])
  }

  async put (key: string, value: Uint8Array | string, options: ClientWriteOptions = {}): Promise<ClientPutResult> {
    const body = typeof value === 'string' ? new TextEncoder().encode(value) : value
    if (!(body instanceof Uint8Array)) throw new TypeError('value must be a Uint8Array or a string')
    return await this.write('PUT', key, body, options)
  }

  async delete (key: string, options: Omit<ClientWriteOptions, 'ttlMs'> = {}): Promise<ClientPutResult> {
    return await this.write('DELETE', key, undefined, options)
  }

  /**
   * A page of live keys under `prefix` (GET /kv?prefix=), merged across the mesh (`local`: this peer's own):
   * pass `cursor` back for the next page until it is null; `membersFailed` names members that did not
   * answer (keys only they hold may be missing). `limit` 1..1000, default 100.
   */
  async list (options: { prefix?: string; limit?: number; cursor?: string | null; local?: boolean; signal?: AbortSignal } = {}): Promise<{ keys: string[]; cursor: string | null; membersAsked: number; membersFailed: string[] }> {
    checkInt('limit', options.limit, 1, 1000)
    const params = new URLSearchParams({ prefix: options.prefix ?? '' })
    if (options.limit !== undefined) params.set('limit', String(options.limit))
    if (options.cursor !== undefined && options.cursor !== null && options.cursor !== '') params.set('cursor', options.cursor)
    if (options.local === true) params.set('local', '1')
    const res = await this.request('GET', `/kv?${params.toString()}`, 'get', options.signal)
    return await res.json() as Awaited<ReturnType<MeshkvClient['list']>>
  }

  /** The key's ring position, preference list and each replica's version (GET /kv/<key>/placement). */
  async placement (key: string, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    const res = await this.request('GET', `/kv/${encodeKey(key)}/placement`, 'get', options.signal)
    return await res.json()
  }

  /** One beat of service `serviceId`: expires `ttlMs` (default 10 s) after its last beat. */
  async heartbeat (serviceId: string, options: { ttlMs?: number; meta?: unknown; signal?: AbortSignal } = {}): Promise<{ acks: number }> {
    const query = options.ttlMs === undefined ? '' : `?ttl=${options.ttlMs}`
    const body = options.meta === undefined ? undefined : new TextEncoder().encode(JSON.stringify(options.meta))
    const res = await this.request('PUT', `/heartbeat/${encodeKey(serviceId)}${query}`, 'put', options.signal, body)
    return { acks: Number(res.headers.get('x-meshkv-acks') ?? 0) }
  }

  /** Heartbeat services of the mesh (`local: true`: this peer's own records). */
  async services (options: { local?: boolean; signal?: AbortSignal } = {}): Promise<{ alive: number; expired: number; services: Array<{ id: string; state: string } & Record<string, unknown>> } & Record<string, unknown>> {
    const res = await this.request('GET', `/services${options.local === true ? '?local=1' : ''}`, 'get', options.signal)
    return await res.json() as Awaited<ReturnType<MeshkvClient['services']>>
  }

  /** The members the peer knows, with state, kind, location and durability. */
  async members (options: { signal?: AbortSignal } = {}): Promise<Array<{ id: string; state: string } & Record<string, unknown>>> {
    const res = await this.request('GET', '/members', 'get', options.signal)
    return await res.json() as Awaited<ReturnType<MeshkvClient['members']>>
  }

  private async write (method: 'PUT' | 'DELETE', key: string, body: Uint8Array | undefined, options: ClientWriteOptions): Promise<ClientPutResult> {
    checkInt('w', options.w, 1, 16)
    checkInt('dw', options.dw, 0, 16)
    checkInt('ttlMs', options.ttlMs, 0, Number.MAX_SAFE_INTEGER)
    const path = this.kvPath(key, { w: options.w, dw: options.dw, lww: options.lww, ttl: options.ttlMs, strict: options.strict })
    // Checked here: a header fetch refuses would otherwise surface as a network failure (and be retried).
    if (options.context !== undefined) decodeContext(options.context)
    const headers: Record<string, string> = options.context === undefined || options.context === '' ? {} : { [CONTEXT_HEADER]: options.context }
    const res = await this.request(method, path, method === 'PUT' ? 'put' : 'delete', options.signal, body, headers)
    return { key, context: res.headers.get(CONTEXT_HEADER) ?? '', acks: Number(res.headers.get('x-meshkv-acks') ?? 0) }
  }

  private kvPath (key: string, query: Record<string, number | boolean | undefined>): string {
    const params = new URLSearchParams()
    for (const [name, value] of Object.entries(query)) {
      if (value === undefined || value === false) continue
      params.set(name, value === true ? '1' : String(value))
    }
    const qs = params.toString()
    return `/kv/${encodeKey(key)}${qs === '' ? '' : `?${qs}`}`
  }

  /**
   * One request, retried after a 503 or an unreachable peer (a put or delete only after a refusal that stored
   * nothing: ERR_OVERLOADED, ERR_LEAVING, ERR_STARTING, a refused connection) with exponential backoff and full jitter
   * (CLIENT_RETRY_BASE_MS doubling up to CLIENT_RETRY_MAX_MS, or the server's Retry-After up to
   * CLIENT_RETRY_AFTER_MAX_MS), at most `retries` times. Resolves with any 2xx, 300 or 404 (for GET)
   * response; anything else becomes the typed error.
   */
  private async request (method: string, path: string, op: 'get' | 'put' | 'delete', signal: AbortSignal | undefined, body?: Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
    const url = this.url + path
    // Reads, and heartbeats (a beat is a last-writer-wins record: a repeat changes nothing), are safe to retry.
    const idempotent = method === 'GET' || path.startsWith('/heartbeat/')
    const allHeaders: Record<string, string> = { ...headers }
    if (this.token !== undefined) allHeaders.authorization = `Bearer ${this.token}`
    if (body !== undefined) allHeaders['content-type'] = 'application/octet-stream'
    for (let attempt = 0; ; attempt++) {
      if (isAborted(signal)) throw new AbortError(signal?.reason)
      const attemptSignal = signal === undefined ? AbortSignal.timeout(this.timeoutMs) : AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)])
      let res: Response
      try {
        res = await this.fetch(url, { method, headers: allHeaders, ...(body === undefined ? {} : { body: body as Uint8Array<ArrayBuffer> }), signal: attemptSignal })
      } catch (error) {
        if (isAborted(signal)) throw new AbortError(signal?.reason)
        const reason = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)
        const unreachable = attemptSignal.aborted ? new TimeoutError(this.url, this.timeoutMs) : new UnreachableError(this.url, reason)
        // A write is retried only when it surely never arrived (the connection was refused): one that timed
        // out or broke midway may have been stored, and a retry would add a second sibling.
        const refused = ((error as { cause?: { code?: string } }).cause?.code) === 'ECONNREFUSED'
        if (attempt >= this.retries || (!idempotent && !refused)) throw unreachable
        await sleep(this.backoff(attempt, null), signal)
        continue
      }
      // A 404 of a key's GET is an answer (missing or deleted); of anything else (a placement), an error.
      if (res.ok || res.status === 300 || (res.status === 404 && method === 'GET' && KEY_PATH.test(path))) return res
      const text = await res.text()
      let parsed: ErrorBody = {}
      try { parsed = JSON.parse(text) as ErrorBody } catch { parsed = { error: text.trim() === '' ? `HTTP ${res.status}` : text.trim() } }
      const error = errorFromReply(res.status, parsed, op, this.url)
      // A write is retried only after a refusal that stored nothing: admission control (ERR_OVERLOADED) or a
      // peer on its way out (ERR_LEAVING) or still starting (ERR_STARTING). A quorum or timeout error may have left it on some replicas.
      const retryable = res.status === 503 && (idempotent || parsed.code === 'ERR_OVERLOADED' || parsed.code === 'ERR_LEAVING' || parsed.code === 'ERR_STARTING')
      if (!retryable || attempt >= this.retries) throw error
      await sleep(this.backoff(attempt, res.headers.get('retry-after')), signal)
    }
  }

  private backoff (attempt: number, retryAfter: string | null): number {
    const seconds = retryAfter === null ? NaN : Number(retryAfter)
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, CLIENT_RETRY_AFTER_MAX_MS)
    return Math.random() * Math.min(CLIENT_RETRY_MAX_MS, CLIENT_RETRY_BASE_MS * 2 ** attempt)
  }
}

export * from './core/errors.js'
