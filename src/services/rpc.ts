/**
 * Request/reply over libp2p for the KV protocols (/meshkv/kv/1.0.0, /meshkv/sync/1.0.0): one long-lived
 * stream per peer and direction, requests tagged with ids, replies matched to them, and coalescing — every
 * message queued for a stream while a frame is being written, or in the same event-loop turn, goes out in
 * the next frame, so 64 requests in flight cost a few frames, not 64 yamux frames and noise encryptions
 * (DESIGN.md §7). A turn here is the whole I/O phase (adapters/next-turn.ts), not one callback: requests that arrive
 * on 64 HTTP sockets in one poll phase share a frame, as do the replies of a batch the replica served.
 *
 * Our requests go on the stream we open to a peer and its replies come back on it; the peer's requests
 * arrive on the stream it opens to us and we reply there. In a private mesh both sides run the mesh-key
 * handshake (swim-service.ts) before anything else.
 *
 * A request of a type this version does not know (a newer peer's) is answered with an ERR_UNSUPPORTED error
 * reply; the stream stays up. Bounds: frames and messages have a maximum size (a peer exceeding it gets its
 * stream reset); at most
 * `inFlightMax` requests wait per peer and direction (more fail with OverloadedError, or an ERR_OVERLOADED
 * reply); every request has a deadline (TimeoutError). A dial that fails is retried once, since
 * node-datachannel fails about one WebRTC dial in 10-25.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { raceAbort } from '../core/abort.js'
import { Writer } from '../core/codec.js'
import type { Logger } from '../core/env.js'
import { DecodeError, errorMessage, OverloadedError, RecordTooLargeError, TimeoutError, UnreachableError } from '../core/errors.js'
import { ERR_UNSUPPORTED, type KvReply, type KvRequest, type WireLimits, decodeMessage, encodeFrame, encodeReply, encodeRequest, splitFrame } from '../core/kv/messages.js'
import { afterTurn } from '../adapters/next-turn.js'
import type { MeshLibp2p } from './mesh-node.js'
import { HANDSHAKE_TIMEOUT_MS } from './swim-service.js'

/** A frame stops taking more messages past this size (one message may be larger, up to the message limit). */
export const FRAME_TARGET_BYTES = 256 * 1024
/** Bytes queued on one stream (at least, and at least four messages) beyond which new requests fail with
 * OverloadedError; at twice that the peer is not reading its replies and the link is given up. */
export const LINK_QUEUE_BYTES_MAX = 64 * 1024 * 1024
/** Streams per connection and protocol: one each way is the norm, a few spare for reconnects. */
export const RPC_STREAMS_MAX = 4
const DIAL_TIMEOUT_MS = 10_000
/** Open unrelayed connections to one peer that a link's stream is tried on, newest first (firstStream). */
const DIAL_CONNECTIONS_MAX = 4
/** How long a link's stream has on one connection before the next connection to the peer is tried too. */
export const STREAM_STAGGER_MS = 1000
/** Dial attempts per link (a failed dial is retried once). */
const DIAL_ATTEMPTS = 2

/**
 * The longest a request can take here before it settles with a typed error: every dial attempt, a private
 * mesh's handshake (bounded by swim-service's HANDSHAKE_TIMEOUT_MS), then the request's own deadline, plus
 * a second for scheduling. The replication machine's own deadline is set above this (KvService), so this
 * layer's errors decide.
 */
export function requestWorstCaseMs (requestTimeoutMs: number): number {
  return DIAL_ATTEMPTS * DIAL_TIMEOUT_MS + HANDSHAKE_TIMEOUT_MS + requestTimeoutMs + 1000
}

export interface RpcStats {
  requests: number
  replies: number
  frames: number
  badMessages: number
  refusedPeers: number
  streamErrors: number
  timeouts: number
  overloaded: number
}

export function emptyRpcStats (): RpcStats {
  return { requests: 0, replies: 0, frames: 0, badMessages: 0, refusedPeers: 0, streamErrors: 0, timeouts: 0, overloaded: 0 }
}

type Lp = ReturnType<typeof lpStream>

export interface Handshake {
  opener(lp: Lp, peer: PeerId): Promise<void>
  responder(lp: Lp, peer: PeerId): Promise<void>
}

export interface RpcInit {
  protocol: string
  limits: WireLimits
  messageBytesMax: number
  requestTimeoutMs: number
  inFlightMax: number
  handler: (from: string, request: KvRequest) => Promise<KvReply>
  /**
   * How long a request of ours may wait for company before its frame goes out (0, the default: it goes at the
   * end of the turn). A deferred request leaves with the next frame to that peer, whatever sends it, or after
   * this many milliseconds, or as soon as a frame's worth of bytes is queued: KvService defers heartbeat
   * refreshes (`kv.refresh-coalesce-ms`), which nobody waits for closely, so that a peer sends them to each
   * replica a few frames a second instead of one frame per turn.
   */
  deferMs?: (request: KvRequest) => number
  /** The private mesh's handshake; undefined for an open mesh. */
  handshake?: Handshake
  log: Logger
}

interface Pending {
  resolve: (reply: KvReply) => void
  reject: (error: Error) => void
  deadline: number
}

/** One stream, either direction: sends coalesced frames, reads frames, dispatches requests and replies. */
class Link {
  readonly pending = new Map<number, Pending>()
  private queue: Uint8Array[] = []
  private queuedBytes = 0
  private writing = false
  closed = false
  private nextId = 1
  private serving = 0
  private readonly writer = new Writer(1024)
  private readonly frameWriter = new Writer(64 * 1024)
  /** The timer that sends deferred requests if no other frame takes them first. */
  private deferTimer: ReturnType<typeof setTimeout> | null = null

  constructor (readonly peer: string, readonly stream: Stream, readonly lp: Lp, private readonly rpc: RpcEndpoint) {}

  /** Queues `message` for the next frame; with `deferMs`, that frame may wait so long for more (RpcInit.deferMs). */
  push (message: Uint8Array, deferMs = 0): void {
    if (this.closed) return
    this.queuedBytes += message.length
    if (this.queuedBytes > 2 * this.rpc.queueLimit) {
      this.fail(new Error(`more than ${2 * this.rpc.queueLimit} bytes queued: the peer is not reading`))
      return
    }
    this.queue.push(message)
    if (this.writing) return
    if (deferMs > 0 && this.queuedBytes < FRAME_TARGET_BYTES) {
      this.deferTimer ??= setTimeout(() => { this.deferTimer = null; this.sendSoon() }, deferMs)
      return
    }
    this.sendSoon()
  }

  /** Sends what is queued (the deferred requests too) at the end of this turn. */
  private sendSoon (): void {
    if (this.writing || this.closed || this.queue.length === 0) return
    if (this.deferTimer !== null) { clearTimeout(this.deferTimer); this.deferTimer = null }
    this.writing = true
    // Everything produced in this turn (every callback of this I/O phase) joins the first frame.
    afterTurn(() => { void this.flush() })
  }

  private async flush (): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.closed) {
        // A frame stays within what the receiver accepts (the message limit plus framing), so coalescing
        // never turns acceptable messages into an oversized frame.
        const target = Math.min(FRAME_TARGET_BYTES, this.rpc.init.messageBytesMax)
        let bytes = 0
        let count = 0
        while (count < this.queue.length && (count === 0 || bytes + this.queue[count]!.length + 10 <= target)) bytes += this.queue[count++]!.length + 10
        const batch = this.queue.splice(0, count)
        for (const m of batch) this.queuedBytes -= m.length
        // A fresh buffer: the muxer may hold on to it after write() returns.
        await this.lp.write(encodeFrame(this.frameWriter, batch).slice())
        this.rpc.stats.frames++
      }
    } catch (error) {
      this.fail(error)
    } finally {
      this.writing = false
    }
  }

  request (request: KvRequest, timeoutMs: number, deferMs: number): Promise<KvReply> {
    if (this.closed) return Promise.reject(new UnreachableError(this.peer, 'stream closed'))
    if (this.pending.size >= this.rpc.init.inFlightMax) {
      this.rpc.stats.overloaded++
      return Promise.reject(new OverloadedError(`requests to ${this.peer}`, this.rpc.init.inFlightMax))
    }
    const id = this.nextId++
    const message = encodeRequest(this.writer, id, request)
    if (message.length > this.rpc.init.messageBytesMax) return Promise.reject(new RecordTooLargeError(message.length, this.rpc.init.messageBytesMax))
    if (this.queuedBytes + message.length > this.rpc.queueLimit) {
      this.rpc.stats.overloaded++
      return Promise.reject(new OverloadedError(`bytes queued to ${this.peer}`, this.rpc.queueLimit))
    }
    return new Promise<KvReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs })
      this.rpc.armExpiry()
      this.rpc.stats.requests++
      this.push(message, deferMs)
    })
  }

  /** Reads frames until the stream ends; a malformed frame resets the stream. */
  async read (): Promise<void> {
    try {
      for (;;) {
        const frame = (await this.lp.read()).subarray()
        for (const bytes of splitFrame(frame, this.rpc.init.messageBytesMax)) {
          const message = decodeMessage(bytes, this.rpc.init.limits)
          if (message.kind === 'reply') {
            const p = this.pending.get(message.id)
            if (p === undefined) continue // timed out already
            this.pending.delete(message.id)
            this.rpc.stats.replies++
            p.resolve(message.reply)
          } else if (message.kind === 'unsupported') {
            this.push(encodeReply(this.writer, message.id, { type: 'error', code: ERR_UNSUPPORTED, message: `request type ${message.type} is unknown to this peer (an older version)`, acked: 0, required: 0 }))
          } else {
            this.serve(message.id, message.request)
          }
        }
      }
    } catch (error) {
      // InvalidDataLengthError: a frame over the limit (lpStream's own check).
      if (error instanceof DecodeError || (error instanceof Error && error.name === 'InvalidDataLengthError')) {
        this.rpc.stats.badMessages++
        this.rpc.init.log.info(`${this.rpc.init.protocol}: malformed message from ${this.peer} (${(error as Error).message}); resetting its stream`)
      }
      this.fail(error)
    }
  }

  private serve (id: number, request: KvRequest): void {
    if (this.serving >= this.rpc.init.inFlightMax) {
      this.rpc.stats.overloaded++
      this.push(encodeReply(this.writer, id, { type: 'error', code: 'ERR_OVERLOADED', message: `more than ${this.rpc.init.inFlightMax} requests outstanding`, acked: 0, required: 0 }))
      return
    }
    this.serving++
    this.rpc.init.handler(this.peer, request).then(reply => {
      this.serving--
      let bytes = encodeReply(this.writer, id, reply)
      if (bytes.length > this.rpc.init.messageBytesMax) {
        bytes = encodeReply(this.writer, id, { type: 'error', code: 'ERR_RECORD_TOO_LARGE', message: `reply of ${bytes.length} bytes exceeds the message limit`, acked: 0, required: 0 })
      }
      this.push(bytes)
    }, (error: unknown) => {
      // handler() turns failures into error replies; reaching here is a bug, reported rather than fatal.
      this.serving--
      this.rpc.init.log.error(`${this.rpc.init.protocol}: handler threw`, error)
      this.push(encodeReply(this.writer, id, { type: 'error', code: 'ERR_INTERNAL', message: 'internal error', acked: 0, required: 0 }))
    })
  }

  /** Expires requests past their deadline. */
  expire (now: number): void {
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue
      this.pending.delete(id)
      this.rpc.stats.timeouts++
      p.reject(new TimeoutError(this.peer, this.rpc.init.requestTimeoutMs))
    }
  }

  fail (error: unknown): void {
    if (this.closed) return
    this.closed = true
    const reason = errorMessage(error)
    if (!this.rpc.stopping) this.rpc.stats.streamErrors++
    this.stream.abort(error instanceof Error ? error : new Error(reason))
    for (const p of this.pending.values()) p.reject(new UnreachableError(this.peer, `stream closed: ${reason}`))
    this.pending.clear()
    this.queue = []
    if (this.deferTimer !== null) { clearTimeout(this.deferTimer); this.deferTimer = null }
    this.rpc.forget(this)
  }
}

/** How often the deadlines of waiting requests are checked. */
const EXPIRY_CHECK_MS = 500

export class RpcEndpoint {
  readonly stats = emptyRpcStats()
  stopping = false
  readonly queueLimit: number
  private readonly outbound = new Map<string, Promise<Link>>()
  /** The settled outbound links, so a closed one is forgotten at once (not a turn later). */
  private readonly opened = new Map<string, Link>()
  private readonly links = new Set<Link>()
  private timer: ReturnType<typeof setInterval> | null = null

  constructor (private readonly node: MeshLibp2p, readonly init: RpcInit) {
    this.queueLimit = Math.max(LINK_QUEUE_BYTES_MAX, 4 * init.messageBytesMax)
  }

  async start (): Promise<void> {
    await this.node.handle(this.init.protocol, (stream, connection) => { void this.onInbound(stream, connection) }, {
      maxInboundStreams: RPC_STREAMS_MAX,
      maxOutboundStreams: RPC_STREAMS_MAX,
      runOnLimitedConnection: true
    })
  }

  /** Whether the deadline check runs (only while some request waits). */
  get checkingDeadlines (): boolean { return this.timer !== null }

  /**
   * Deadlines are checked twice a second while any request waits: a request fails at most 0.5 s after its time
   * limit. The check stops when nothing waits (an idle peer, a tab above all, wakes for nothing).
   */
  armExpiry (): void {
    if (this.timer !== null || this.stopping) return
    this.timer = setInterval(() => {
      const now = Date.now()
      let waiting = false
      for (const link of this.links) {
        link.expire(now)
        if (link.pending.size > 0) waiting = true
      }
      if (!waiting && this.timer !== null) { clearInterval(this.timer); this.timer = null }
    }, EXPIRY_CHECK_MS)
  }

  async stop (): Promise<void> {
    this.stopping = true
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.node.unhandle(this.init.protocol).catch(() => {})
    for (const link of [...this.links]) link.fail(new Error('peer stopping'))
    this.outbound.clear()
  }

  forget (link: Link): void {
    this.links.delete(link)
    if (this.opened.get(link.peer) === link) {
      this.opened.delete(link.peer)
      this.outbound.delete(link.peer)
    }
  }

  /** Sends a request to `to` and resolves with its reply. */
  request (to: string, request: KvRequest, signal?: AbortSignal): Promise<KvReply> {
    // The common case, an open link and no signal: straight onto the link, without the async frame and the
    // turn an await of the settled link would take (each replica request of every write comes this way).
    const open = signal === undefined && !this.stopping ? this.opened.get(to) : undefined
    if (open === undefined || open.closed) return this.requestVia(to, request, signal, false)
    try {
      return this.send(open, request)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  private send (link: Link, request: KvRequest): Promise<KvReply> {
    return link.request(request, this.init.requestTimeoutMs, this.init.deferMs?.(request) ?? 0)
  }

  /** request() through the outbound link to `to`, opening it first if there is none. */
  private async requestVia (to: string, request: KvRequest, signal: AbortSignal | undefined, retried: boolean): Promise<KvReply> {
    if (this.stopping) throw new UnreachableError(to, 'this peer is stopping')
    let link = this.outbound.get(to)
    if (link === undefined) {
      link = this.open(to)
      this.outbound.set(to, link)
      link.catch(() => { if (this.outbound.get(to) === link) this.outbound.delete(to) })
    }
    const l = await raceAbort(link, signal)
    if (l.closed) {
      // It closed while we waited for it: open a fresh one, once.
      if (this.outbound.get(to) === link) this.outbound.delete(to)
      if (retried) throw new UnreachableError(to, 'stream closed')
      return await this.requestVia(to, request, signal, true)
    }
    return await raceAbort(this.send(l, request), signal)
  }

  private async open (to: string): Promise<Link> {
    const peer = peerIdFromString(to)
    let stream: Stream
    try {
      stream = await this.dial(peer)
    } catch (first) {
      this.init.log.debug(`${this.init.protocol}: dial ${to} failed, retrying once: ${errorMessage(first)}`)
      try {
        stream = await this.dial(peer)
      } catch (error) {
        this.stats.streamErrors++
        throw new UnreachableError(to, errorMessage(error))
      }
    }
    const lp = lpStream(stream, { maxDataLength: this.init.messageBytesMax + 1024 })
    if (this.init.handshake !== undefined) {
      try {
        await this.init.handshake.opener(lp, peer)
      } catch (error) {
        this.stats.refusedPeers++
        stream.abort(error instanceof Error ? error : new Error(String(error)))
        throw new UnreachableError(to, `handshake failed: ${errorMessage(error)}`)
      }
    }
    if (this.stopping) {
      stream.abort(new Error('peer stopping'))
      throw new UnreachableError(to, 'this peer is stopping')
    }
    const link = new Link(to, stream, lp, this)
    this.links.add(link)
    this.opened.set(to, link)
    void link.read()
    return link
  }

  private async dial (peer: PeerId): Promise<Stream> {
    const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS)
    const unrelayed = this.node.getConnections(peer).filter(c => c.status === 'open' && c.limits == null)
    if (unrelayed.length > 1) {
      this.init.log.debug(`${this.init.protocol}: ${unrelayed.length} open unrelayed connections to ${peer.toString()}: the stream is tried on the newest ${DIAL_CONNECTIONS_MAX} in turn`)
      return await firstStream(unrelayed.slice(-DIAL_CONNECTIONS_MAX).reverse(), this.init.protocol, signal)
    }
    return await this.node.dialProtocol(peer, this.init.protocol, { signal, runOnLimitedConnection: true })
  }

  private async onInbound (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    const lp = lpStream(stream, { maxDataLength: this.init.messageBytesMax + 1024 })
    try {
      if (this.stopping) throw new Error('peer stopping')
      if (this.init.handshake !== undefined) await this.init.handshake.responder(lp, from)
    } catch (error) {
      this.stats.refusedPeers++
      this.init.log.info(`${this.init.protocol}: refused ${from.toString()}: ${errorMessage(error)}`)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
      return
    }
    const link = new Link(from.toString(), stream, lp, this)
    this.links.add(link)
    await link.read()
  }
}

/**
 * Opens a stream for `protocol` on one of `connections` (open, unrelayed, all to one peer, in the order to
 * try them): on the first, then on the next each `staggerMs` it has not opened (or at once when every try
 * so far failed), and keeps the first stream that opens; the other tries are aborted, and a stream that
 * opens after the winner is closed. Two tabs that dialled each other at once hold several WebRTC
 * connections, and the far side may already have closed one that this side lists as open for another
 * 15 s, whose data channels then never open. libp2p's dialProtocol takes the first direct connection it
 * lists, so a link's first stream could wait out the whole dial timeout (10 s: a new tab's first request
 * to an old tab, once in 18 instrumented relay-failover runs). Trying one at a time while they answer
 * keeps a healthy peer from seeing streams opened and dropped (the far side counts those as refused or
 * failed). `signal` bounds the whole call.
 */
export async function firstStream (connections: readonly Connection[], protocol: string, signal: AbortSignal, staggerMs = STREAM_STAGGER_MS): Promise<Stream> {
  if (connections.length === 0) throw new Error('no connection to the peer to open a stream on')
  signal.throwIfAborted()
  const tries = new AbortController()
  const trySignal = AbortSignal.any([signal, tries.signal])
  return await new Promise<Stream>((resolve, reject) => {
    let started = 0
    let failed = 0
    let settled = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const errors: string[] = []
    const finish = (error: Error | null, stream?: Stream): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      tries.abort(new Error(error === null ? 'another connection to this peer opened the stream first' : 'the stream was given up'))
      if (error === null) resolve(stream!)
      else reject(error)
    }
    const onAbort = (): void => { finish(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))) }
    const next = (): void => {
      clearTimeout(timer)
      if (settled || started === connections.length) return
      const connection = connections[started++]!
      if (started < connections.length) timer = setTimeout(next, staggerMs)
      connection.newStream(protocol, { signal: trySignal, runOnLimitedConnection: true }).then(stream => {
        if (settled) stream.abort(new Error('another connection to this peer opened the stream first'))
        else finish(null, stream)
      }, (error: unknown) => {
        errors.push(errorMessage(error))
        failed++
        if (failed === connections.length) finish(new Error(`no connection to the peer opened a stream (${connections.length} tried): ${errors.join('; ')}`))
        else if (failed === started) next()
      })
    }
    signal.addEventListener('abort', onAbort, { once: true })
    next()
  })
}
