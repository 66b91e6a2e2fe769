/**
 * The debug protocol (`/meshkv/debug/1.0.0`), run only by Node peers started with `--debug-api`, which
 * publish `debug: 1` in their member metadata. It lets the dashboard of one such peer break and heal the
 * mesh through the others (the chaos panel): cut this peer's connections to a member or restore them, leave
 * gracefully, or die at once (SIGKILL to itself, as a crash); `heal` restores every connection it cut. Never for production: anyone who is a member
 * can ask. A request is one length-prefixed JSON message of at most DEBUG_MESSAGE_BYTES_MAX bytes, answered
 * by one; a request from a peer that is not a member, or that does not parse, is refused with an error
 * reply and counted.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Logger } from '../core/env.js'
import { errorMessage } from '../core/errors.js'
import type { MeshLibp2p } from './mesh-node.js'

export const DEBUG_PROTOCOL = '/meshkv/debug/1.0.0'
export const DEBUG_MESSAGE_BYTES_MAX = 1024
/** Bound on one request, from dial to reply. */
export const DEBUG_TIMEOUT_MS = 10_000

export type DebugOp = 'block' | 'unblock' | 'heal' | 'leave' | 'kill'
const OPS: readonly DebugOp[] = ['block', 'unblock', 'heal', 'leave', 'kill']

export interface DebugRequest { op: DebugOp; peer?: string }
export interface DebugReply { ok: boolean; error?: string; blocked?: string[] }

/** What a request does on this peer (the CLI's: its connection gater's block list, its leave, its exit). */
export interface DebugActions {
  block: (peer: string) => Promise<string[]>
  unblock: (peer: string) => Promise<string[]>
  /** Unblocks every peer. */
  heal: () => Promise<string[]>
  leave: () => void
  kill: () => void
}

export class DebugError extends Error {
  override name = 'DebugError'
}

/** Checks a request from the network or a user; throws DebugError with what is wrong. */
export function parseDebugRequest (value: unknown, self: string): DebugRequest {
  if (typeof value !== 'object' || value === null) throw new DebugError('a debug request is a JSON object')
  const { op, peer } = value as { op?: unknown; peer?: unknown }
  if (typeof op !== 'string' || !OPS.includes(op as DebugOp)) throw new DebugError(`op must be one of ${OPS.join(', ')}`)
  if (op === 'block' || op === 'unblock') {
    if (typeof peer !== 'string' || peer === '' || peer.length > 128) throw new DebugError(`${op} needs peer=<member id>`)
    if (peer === self) throw new DebugError(`a peer cannot ${op} itself`)
    try { peerIdFromString(peer) } catch { throw new DebugError(`${JSON.stringify(peer)} is not a peer id`) }
    return { op, peer }
  }
  return { op: op as DebugOp }
}

export class DebugService {
  readonly stats = { served: 0, refused: 0 }

  constructor (private readonly node: MeshLibp2p, private readonly isMember: (id: string) => boolean, private readonly actions: DebugActions, private readonly log: Logger) {}

  async start (): Promise<void> {
    await this.node.handle(DEBUG_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, { maxInboundStreams: 4 })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(DEBUG_PROTOCOL)
  }

  /** Performs a request here (a call from this peer's own HTTP API). */
  async perform (request: DebugRequest): Promise<DebugReply> {
    switch (request.op) {
      case 'block': return { ok: true, blocked: await this.actions.block(request.peer!) }
      case 'unblock': return { ok: true, blocked: await this.actions.unblock(request.peer!) }
      case 'heal': return { ok: true, blocked: await this.actions.heal() }
      case 'leave': this.actions.leave(); return { ok: true }
      case 'kill': this.actions.kill(); return { ok: true }
    }
  }

  /** Sends a request to member `target` and returns its reply. */
  async call (target: string, request: DebugRequest): Promise<DebugReply> {
    const signal = AbortSignal.timeout(DEBUG_TIMEOUT_MS)
    const stream = await this.node.dialProtocol(peerIdFromString(target), DEBUG_PROTOCOL, { signal })
    try {
      const lp = lpStream(stream, { maxDataLength: DEBUG_MESSAGE_BYTES_MAX })
      await lp.write(new TextEncoder().encode(JSON.stringify(request)), { signal })
      const reply = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as DebugReply
      await stream.close().catch(() => {})
      return reply
    } catch (error) {
      stream.abort(error instanceof Error ? error : new Error(String(error)))
      // A peer told to die may go before it answers.
      if (request.op === 'kill') return { ok: true }
      throw error
    }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: DEBUG_MESSAGE_BYTES_MAX })
    const signal = AbortSignal.timeout(DEBUG_TIMEOUT_MS)
    try {
      let reply: DebugReply = { ok: true }
      // A kill or leave is answered first, so that the caller hears it.
      let after: DebugRequest | null = null
      try {
        if (!this.isMember(from)) throw new DebugError('not a member')
        const request = parseDebugRequest(JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())), this.node.peerId.toString())
        this.log.info(`debug: ${from} asks ${request.op}${request.peer === undefined ? '' : ` ${request.peer}`}`)
        this.stats.served++
        if (request.op === 'kill' || request.op === 'leave') after = request
        else reply = await this.perform(request)
      } catch (error) {
        if (!(error instanceof DebugError) && !(error instanceof SyntaxError)) throw error
        this.stats.refused++
        reply = { ok: false, error: errorMessage(error) }
      }
      await lp.write(new TextEncoder().encode(JSON.stringify(reply)), { signal })
      await stream.close().catch(() => {})
      if (after !== null) await this.perform(after)
    } catch (error) {
      this.log.debug(`debug: request from ${from} failed: ${errorMessage(error)}`)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    }
  }
}
