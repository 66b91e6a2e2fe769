/**
 * SWIM over libp2p: the thin service around the pure state machine (src/core/membership/swim.ts). It owns
 * the timer, the streams and the mesh-key handshake; the machine owns every decision.
 *
 * Streams: protocol /meshkv/swim/1.0.0. Each peer keeps one long-lived outbound stream to every member it
 * talks to and reads the inbound streams others open to it, so a message costs one length-prefixed frame,
 * not a stream negotiation. Outbound messages queue per member (bounded; SWIM tolerates loss, so a full
 * queue drops the oldest) while the stream opens.
 *
 * Handshake, first thing on every stream, opener (A) to responder (B):
 *   A -> B  hello  = 'MKVH' | version | keyed | nonceA (16 bytes)
 *   B -> A  reply  = 'MKVR' | keyed | nonceB | (keyed: HMAC(key, "meshkv/swim/responder" | B | A | nonceA | nonceB))
 *   A -> B  proof  = 'MKVP' | (keyed: HMAC(key, "meshkv/swim/opener" | A | B | nonceA | nonceB))
 * Peer ids come from the noise-authenticated connection, so each side proves knowledge of the mesh key to
 * this very peer with fresh nonces; a peer that does not is refused, counted, and its stream reset. Without a
 * key both sides must be keyless (a keyed peer refuses a keyless one and vice versa).
 *
 * Mesh-wide agreement (src/core/agreement.ts) is checked one step later, on the join's push-pull, which
 * carries each side's metadata (N, minDurable, durableAcks, protocol versions, ring hash scheme): the machine refuses a
 * member whose settings differ and answers with its own record, so both sides log the refusal with both
 * values and the joiner's `join()` fails with an IncompatiblePeerError. It is not in the stream handshake
 * above because peers of the previous build accept only that handshake's exact bytes, and a mesh must be
 * upgradable one peer at a time.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { Emitter } from '../core/emitter.js'
import type { Clock, Logger, Rng } from '../core/env.js'
import { DecodeError, IncompatiblePeerError, errorMessage } from '../core/errors.js'
import type { SwimConfig } from '../core/membership/config.js'
import { type Effect, type MemberState, type MemberView, type Meta, Swim, type SwimMessage } from '../core/membership/swim.js'
import { SWIM_MESSAGE_BYTES_MAX, decodeSwim, encodeSwim } from '../core/protocol/swim-codec.js'
import type { MeshLibp2p } from './mesh-node.js'
import { isTabLinkAddress } from '../adapters/tab-link.js'

export const SWIM_PROTOCOL = '/meshkv/swim/1.0.0'
/** Messages queued for one member while its stream opens; beyond this the oldest are dropped. */
export const OUTBOUND_QUEUE_MAX = 256
/** Longest wait for a stream to open or a handshake step to arrive. */
export const HANDSHAKE_TIMEOUT_MS = 10_000
/** Inbound SWIM streams allowed per connection (one per remote peer is the norm; a few spare for reconnects). */
export const SWIM_INBOUND_STREAMS_MAX = 4
const ADDRS_META_BYTES_MAX = 1000

export interface SwimServiceInit {
  config: SwimConfig
  /** Published metadata (kind, vnodes, protocol version, HTTP address); `addrs` is filled in here. */
  meta: Record<string, string | number>
  /** Start above the incarnation a previous run of this peer used (persisted by the caller). */
  incarnation: number
  /** Why a member publishing `meta` cannot share this mesh, or null (src/core/agreement.ts). Default: any can. */
  compatibility?: (meta: Meta) => string | null
  /** Shared secret of a private mesh; undefined for an open mesh. Never logged. */
  meshKey?: string
  clock: Clock
  rng: Rng
  log: Logger
}

export interface SwimChange {
  member: MemberView
  previous: MemberState | null
}

export interface SwimServiceEvents extends Record<string, unknown> {
  change: SwimChange
  joined: { via: string }
  /** A mesh-key handshake with `peer` failed because the keys differ (a wrong key, or one side private and
   * the other open); a garbled or cut-off handshake is only counted. */
  refused: { peer: string; reason: string; outbound: boolean }
  /** A member was refused because its settings differ from this peer's (reported once per member and
   * reason); `direct` when it came from the member itself (a join or push-pull), not from others' news. */
  incompatible: { peer: string; reason: string; direct: boolean }
}

/** A join that no bootstrap address answered within its attempts. */
export class JoinError extends Error {
  override name = 'JoinError'
  constructor (message: string, readonly attempts: number) { super(message) }
}

export interface SwimServiceStats {
  sent: number
  received: number
  dropped: number
  badMessages: number
  refusedPeers: number
  streamErrors: number
  /** Members refused because their mesh-wide settings differ (once per member and reason). */
  incompatible: number
}

interface Outbound {
  queue: Uint8Array[]
  writing: boolean
  write: ((bytes: Uint8Array) => Promise<void>) | null
  stream: Stream | null
}

const enc = new TextEncoder()
const MAGIC_HELLO = enc.encode('MKVH')
const MAGIC_REPLY = enc.encode('MKVR')
const MAGIC_PROOF = enc.encode('MKVP')
const NONCE_BYTES = 16

function concat (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(new ArrayBuffer(parts.reduce((n, p) => n + p.length, 0)))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** What each side's HMAC covers: the role, both peer ids (opener first) and both nonces. */
function macInput (label: string, opener: string, responder: string, nonceA: Uint8Array, nonceB: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(enc.encode(`meshkv/swim/${label}`), enc.encode(opener), enc.encode(responder), nonceA, nonceB)
}

function startsWith (bytes: Uint8Array, magic: Uint8Array): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b)
}

/**
 * The HMAC key is derived from the mesh secret with PBKDF2 (SHA-256, MESH_KEY_ITERATIONS rounds): a
 * handshake reveals an HMAC over public nonces, so a weak secret could otherwise be guessed offline at
 * billions per second. Use a long random secret all the same.
 */
export const MESH_KEY_ITERATIONS = 200_000

async function deriveMeshKey (secret: string): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey('raw', enc.encode(secret), 'PBKDF2', false, ['deriveKey'])
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt: enc.encode('meshkv/mesh-key/v1'), iterations: MESH_KEY_ITERATIONS },
    material,
    { name: 'HMAC', hash: 'SHA-256', length: 256 },
    false,
    ['sign', 'verify']
  )
}

export class HandshakeError extends Error {
  override name = 'HandshakeError'
  /** The two sides disagree about the mesh key (not a garbled or cut-off handshake). */
  constructor (message: string, readonly mismatch = false) { super(message) }
}

export class SwimService {
  readonly swim: Swim
  readonly events: Emitter<SwimServiceEvents>
  readonly stats: SwimServiceStats = { sent: 0, received: 0, dropped: 0, badMessages: 0, refusedPeers: 0, streamErrors: 0, incompatible: 0 }
  private readonly outbound = new Map<string, Outbound>()
  private readonly inbound = new Set<Stream>()
  private timer: ReturnType<typeof setTimeout> | null = null
  private running = false
  private hmacKey: Promise<CryptoKey> | null
  private readonly log: Logger
  private readonly clock: Clock

  constructor (private readonly node: MeshLibp2p, private readonly init: SwimServiceInit) {
    this.log = init.log
    this.clock = init.clock
    this.events = new Emitter<SwimServiceEvents>(error => { this.log.error('swim listener threw', error) })
    this.swim = new Swim(node.peerId.toString(), { ...init.meta, addrs: this.addrsMeta() }, init.incarnation, init.config, init.rng, init.clock.nowMs(),
      init.compatibility === undefined ? {} : { compatibility: init.compatibility })
    this.hmacKey = init.meshKey === undefined ? null : deriveMeshKey(init.meshKey)
  }

  /**
   * This peer's addresses for its metadata, at most ADDRS_META_BYTES_MAX characters, most useful first:
   * WebRTC through a WebSocket relay (what a tab can dial), other WebRTC, then WebSocket, then the rest. A
   * tab with reservations on two relays has eight addresses, more than fit, and each relay must be in.
   */
  private addrsMeta (): string {
    let out = ''
    const rank = (s: string): number => (s.includes('/webrtc') ? 0 : 2) + (s.includes('/ws') ? 0 : 1)
    for (const s of this.node.getMultiaddrs().map(String).sort((a, b) => rank(a) - rank(b))) {
      // A tab link address (/memory/...) is only for tabs of the same browser, which find each other anyway.
      if (out.length + s.length + 1 > ADDRS_META_BYTES_MAX || isTabLinkAddress(s)) continue
      out = out === '' ? s : `${out} ${s}`
    }
    return out
  }

  async start (): Promise<void> {
    this.running = true
    await this.node.handle(SWIM_PROTOCOL, (stream, connection) => { void this.onInbound(stream, connection) }, {
      maxInboundStreams: SWIM_INBOUND_STREAMS_MAX,
      maxOutboundStreams: SWIM_INBOUND_STREAMS_MAX
    })
    // Our addresses change as listeners and relay reservations come up: republish them.
    this.node.addEventListener('self:peer:update', this.onSelfUpdate)
    this.schedule()
  }

  private readonly onSelfUpdate = (): void => {
    const addrs = this.addrsMeta()
    const meta = this.swim.view(this.swim.id)!.meta
    if (meta.addrs !== addrs && this.running) this.swim.setMeta({ ...meta, addrs })
  }

  /** Stops at once (a crash-like stop; use `leave()` first for a graceful one). */
  async stop (): Promise<void> {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.node.removeEventListener('self:peer:update', this.onSelfUpdate)
    await this.node.unhandle(SWIM_PROTOCOL)
    for (const out of this.outbound.values()) out.stream?.abort(new Error('swim stopped'))
    for (const s of this.inbound) s.abort(new Error('swim stopped'))
    this.outbound.clear()
    this.inbound.clear()
  }

  members (): MemberView[] {
    return this.swim.list()
  }

  /** Whether a member is reachable as far as SWIM knows: alive or (not yet proven dead) suspect. */
  isUp (id: string): boolean {
    const state = this.swim.stateOf(id)
    return state === 'alive' || state === 'suspect'
  }

  // ------------------------------------------------------------ timing

  private schedule (): void {
    if (!this.running) return
    if (this.timer !== null) clearTimeout(this.timer)
    // Wake at the machine's next deadline, and at least once a second as a safety net.
    const wait = Math.min(1000, Math.max(0, this.swim.nextWakeMs() - this.clock.nowMs()))
    this.timer = setTimeout(() => {
      this.timer = null
      if (!this.running) return
      this.perform(this.swim.tick(this.clock.nowMs()))
      this.schedule()
    }, wait)
  }

  private perform (effects: Effect[]): void {
    for (const e of effects) {
      if (e.type === 'send') this.send(e.to, e.message)
      else if (e.type === 'refused') {
        this.stats.incompatible++
        this.log.warn(`swim: refusing member ${e.id}${e.direct ? '' : ' (news of it from another member)'}: its mesh-wide settings differ from this peer's: ${e.reason} (every peer of a mesh needs the same --n, --min-durable and --durable-acks and a compatible version)`)
        this.events.emit('incompatible', { peer: e.id, reason: e.reason, direct: e.direct })
        const out = this.outbound.get(e.id)
        if (out !== undefined && out.queue.length === 0 && !out.writing) this.dropOutbound(e.id)
      } else {
        this.learnAddresses(e.member)
        // A member that died or left gets no more messages: release its stream (bounded by live members).
        if (e.member.state === 'dead' || e.member.state === 'left') this.dropOutbound(e.member.id)
        this.events.emit('change', { member: e.member, previous: e.previous })
      }
    }
  }

  private dropOutbound (id: string): void {
    const out = this.outbound.get(id)
    if (out === undefined) return
    this.outbound.delete(id)
    out.stream?.close().catch(() => {})
  }

  /** Members' published addresses go into the peer store, so a member learned by gossip can be dialled. */
  private learnAddresses (member: MemberView): void {
    const addrs = member.meta.addrs
    if (typeof addrs !== 'string' || addrs === '' || member.id === this.swim.id) return
    try {
      const multiaddrs = addrs.split(' ').map(a => multiaddr(a))
      void this.node.peerStore.merge(peerIdFromString(member.id), { multiaddrs }).catch(() => {})
    } catch (error) {
      this.log.debug(`ignoring unparsable addresses of ${member.id}`, error)
    }
  }

  // ------------------------------------------------------------ joining and leaving

  /**
   * Joins through bootstrap addresses: dials each and exchanges full state with it, retrying with
   * exponential backoff (0.5 s doubling to 30 s, with jitter) until one exchange succeeds, `signal` aborts,
   * or `attemptsMax` rounds (default unbounded) have failed (then a JoinError). `onAttempt` hears each
   * round's start, and the wait before the next. When every member reached in a round refused this peer
   * for settings that differ from its own, it fails at once with an IncompatiblePeerError (the first such
   * member's): retrying cannot help until one side is restarted with other settings.
   */
  async join (addrs: Multiaddr[], options: { signal?: AbortSignal; attemptsMax?: number; onAttempt?: (attempt: number, retryInMs: number) => void } = {}): Promise<void> {
    if (addrs.length === 0) return
    let delay = 500
    for (let attempt = 1; ; attempt++) {
      if (options.attemptsMax !== undefined && attempt > options.attemptsMax) throw new JoinError(`no member answered at ${addrs.length} address(es) in ${options.attemptsMax} attempts`, options.attemptsMax)
      options.signal?.throwIfAborted()
      let off = (): void => {}
      let offRefused = (): void => {}
      const reached: string[] = []
      let dialing = true
      // Every member reached so far refused this peer as incompatible: the join cannot succeed as configured.
      const allRefused = (): IncompatiblePeerError | null => {
        if (reached.length === 0 || !reached.every(id => this.swim.refusal(id) !== undefined)) return null
        return new IncompatiblePeerError(reached[0]!, this.swim.refusal(reached[0]!)!)
      }
      const joined = new Promise<IncompatiblePeerError | null>(resolve => {
        off = this.events.on('joined', () => { resolve(null) })
        offRefused = this.events.on('incompatible', () => { const refusal = dialing ? null : allRefused(); if (refusal !== null) resolve(refusal) })
      })
      for (const addr of addrs) {
        try {
          const connection = await this.node.dial(addr, { signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) })
          reached.push(connection.remotePeer.toString())
          this.perform(this.swim.join([connection.remotePeer.toString()]))
        } catch (error) {
          this.log.info(`join attempt ${attempt}: cannot reach ${addr.toString()}: ${errorMessage(error)}`)
        }
      }
      dialing = false
      const early = allRefused() // refusals that came in while later addresses were dialled
      if (early !== null) { off(); offRefused(); throw early }
      const wait = delay * (0.75 + 0.5 * this.init.rng.next())
      options.onAttempt?.(attempt, Math.round(wait))
      let timer: ReturnType<typeof setTimeout> | undefined
      const result = await Promise.race([
        joined,
        new Promise<'retry'>(resolve => { timer = setTimeout(() => { resolve('retry') }, wait) })
      ])
      clearTimeout(timer)
      off()
      offRefused()
      if (result === null) return
      if (result instanceof IncompatiblePeerError) throw result
      const refusal = allRefused()
      if (refusal !== null) throw refusal
      delay = Math.min(delay * 2, 30_000)
    }
  }

  /** Announces a graceful leave and waits (at most `timeoutMs`) for it to be disseminated. */
  async leave (timeoutMs = 3000): Promise<void> {
    this.perform(this.swim.leave(this.clock.nowMs()))
    const deadline = this.clock.nowMs() + timeoutMs
    while (!this.swim.leaveDisseminated() && this.clock.nowMs() < deadline && this.running) {
      await new Promise(resolve => setTimeout(resolve, this.init.config.gossipIntervalMs))
      this.perform(this.swim.tick(this.clock.nowMs()))
    }
    await this.flushAll(Math.max(0, deadline - this.clock.nowMs()))
  }

  private async flushAll (timeoutMs: number): Promise<void> {
    const deadline = this.clock.nowMs() + timeoutMs
    while ([...this.outbound.values()].some(o => o.queue.length > 0 || o.writing) && this.clock.nowMs() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  // ------------------------------------------------------------ sending

  private send (to: string, message: SwimMessage): void {
    if (to === this.swim.id) return
    let out = this.outbound.get(to)
    if (out === undefined) {
      out = { queue: [], writing: false, write: null, stream: null }
      this.outbound.set(to, out)
      void this.open(to, out)
    }
    if (out.queue.length >= OUTBOUND_QUEUE_MAX) { out.queue.shift(); this.stats.dropped++ }
    out.queue.push(encodeSwim(message))
    if (out.write !== null) void this.drain(to, out)
  }

  private async open (to: string, out: Outbound): Promise<void> {
    try {
      const peer = peerIdFromString(to)
      const stream = await this.node.dialProtocol(peer, SWIM_PROTOCOL, { signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) })
      out.stream = stream
      if (!this.running || this.outbound.get(to) !== out) throw new Error('swim stopped or member dropped while the stream opened')
      const lp = lpStream(stream, { maxDataLength: SWIM_MESSAGE_BYTES_MAX })
      await this.handshakeAsOpener(lp, peer)
      out.write = async bytes => { await lp.write(bytes) }
      // Replies to what we send arrive on the stream the peer opens to us; this one only carries our side.
      void this.drain(to, out)
    } catch (error) {
      if (error instanceof HandshakeError) {
        this.stats.refusedPeers++
        if (error.mismatch) this.events.emit('refused', { peer: to, reason: error.message, outbound: true })
      } else this.stats.streamErrors++
      this.log.debug(`swim: no stream to ${to}: ${errorMessage(error)}`)
      this.stats.dropped += out.queue.length
      out.stream?.abort(error instanceof Error ? error : new Error(String(error)))
      if (this.outbound.get(to) === out) this.outbound.delete(to)
    }
  }

  private async drain (to: string, out: Outbound): Promise<void> {
    if (out.writing || out.write === null) return
    out.writing = true
    try {
      while (out.queue.length > 0) {
        const bytes = out.queue.shift()!
        await out.write(bytes)
        this.stats.sent++
      }
      // A refused member gets only the answer that says why: release its stream once that is written, so
      // refused peers hold no streams (the machine sends them nothing else).
      if (this.swim.refusal(to) !== undefined && this.outbound.get(to) === out) this.dropOutbound(to)
    } catch (error) {
      this.stats.streamErrors++
      this.stats.dropped += out.queue.length
      out.stream?.abort(error instanceof Error ? error : new Error(String(error)))
      if (this.outbound.get(to) === out) this.outbound.delete(to) // the next send opens a fresh stream
    } finally {
      out.writing = false
    }
  }

  // ------------------------------------------------------------ receiving

  private async onInbound (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    const lp = lpStream(stream, { maxDataLength: SWIM_MESSAGE_BYTES_MAX })
    try {
      await this.handshakeAsResponder(lp, from)
    } catch (error) {
      this.stats.refusedPeers++
      this.log.info(`swim: refused ${from.toString()}: ${errorMessage(error)}`)
      if (error instanceof HandshakeError && error.mismatch) this.events.emit('refused', { peer: from.toString(), reason: error.message, outbound: false })
      stream.abort(error instanceof Error ? error : new Error(String(error)))
      return
    }
    this.inbound.add(stream)
    try {
      for (;;) {
        const frame = await lp.read()
        let message: SwimMessage
        try {
          message = decodeSwim(frame.subarray())
        } catch (error) {
          if (!(error instanceof DecodeError)) throw error
          this.stats.badMessages++
          this.log.info(`swim: malformed message from ${from.toString()} (${error.message}); resetting its stream`)
          stream.abort(error)
          return
        }
        this.stats.received++
        if (!this.running) { stream.abort(new Error('swim stopped')); return }
        this.perform(this.swim.receive(from.toString(), message, this.clock.nowMs()))
        // A refused member's answer (its own record, telling why) is no join.
        if (message.type === 'push-pull' && message.reply && this.swim.refusal(from.toString()) === undefined) this.events.emit('joined', { via: from.toString() })
        this.schedule()
      }
    } catch (error) {
      // The peer went away, closed its side, or sent an oversized frame: release the stream either way.
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    } finally {
      this.inbound.delete(stream)
    }
  }

  // ------------------------------------------------------------ handshake

  private async mac (label: string, opener: string, responder: string, nonceA: Uint8Array, nonceB: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign('HMAC', await this.hmacKey!, macInput(label, opener, responder, nonceA, nonceB)))
  }

  private async verify (label: string, opener: string, responder: string, nonceA: Uint8Array, nonceB: Uint8Array, mac: Uint8Array): Promise<boolean> {
    return crypto.subtle.verify('HMAC', await this.hmacKey!, mac.slice(), macInput(label, opener, responder, nonceA, nonceB))
  }

  /** The mesh-key handshake, as the side that opened the stream (also used by the KV streams). */
  async handshakeAsOpener (lp: ReturnType<typeof lpStream>, peer: PeerId): Promise<void> {
    const keyed = this.hmacKey !== null
    const nonceA = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
    await lp.write(concat(MAGIC_HELLO, Uint8Array.of(1, keyed ? 1 : 0), nonceA))
    const reply = (await lp.read({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) })).subarray()
    if (!startsWith(reply, MAGIC_REPLY) || reply.length < 5 + NONCE_BYTES) throw new HandshakeError('malformed handshake reply')
    if ((reply[4] === 1) !== keyed) throw new HandshakeError(keyed ? 'peer is not in a private mesh' : 'peer requires a mesh key', true)
    const nonceB = reply.subarray(5, 5 + NONCE_BYTES)
    if (!keyed) {
      await lp.write(MAGIC_PROOF)
      return
    }
    const me = this.swim.id
    if (!await this.verify('responder', me, peer.toString(), nonceA, nonceB, reply.subarray(5 + NONCE_BYTES))) throw new HandshakeError('peer does not know the mesh key', true)
    await lp.write(concat(MAGIC_PROOF, await this.mac('opener', me, peer.toString(), nonceA, nonceB)))
  }

  /** The mesh-key handshake, as the side that accepted the stream. */
  async handshakeAsResponder (lp: ReturnType<typeof lpStream>, peer: PeerId): Promise<void> {
    const keyed = this.hmacKey !== null
    const hello = (await lp.read({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) })).subarray()
    if (!startsWith(hello, MAGIC_HELLO) || hello.length !== 6 + NONCE_BYTES || hello[4] !== 1) throw new HandshakeError('malformed handshake')
    const theirsKeyed = hello[5] === 1
    const nonceA = hello.subarray(6)
    const nonceB = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
    const me = this.swim.id
    const mac = keyed && theirsKeyed ? await this.mac('responder', peer.toString(), me, nonceA, nonceB) : new Uint8Array(0)
    await lp.write(concat(MAGIC_REPLY, Uint8Array.of(keyed ? 1 : 0), nonceB, mac))
    if (theirsKeyed !== keyed) throw new HandshakeError(keyed ? 'peer has no mesh key' : 'peer is in a private mesh', true)
    const proof = (await lp.read({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) })).subarray()
    if (!startsWith(proof, MAGIC_PROOF)) throw new HandshakeError('malformed handshake proof')
    if (keyed && !await this.verify('opener', peer.toString(), me, nonceA, nonceB, proof.subarray(4))) throw new HandshakeError('peer does not know the mesh key', true)
  }
}
