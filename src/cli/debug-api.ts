/**
 * The HTTP side of `--debug-api` (the dashboard's chaos panel). Every route is a POST and exists only on a
 * peer started with `--debug-api`; elsewhere they are 404s like any unknown path. The POST must carry
 * Content-Type application/json (or application/octet-stream): the guard (http-guard.ts) refuses any other
 * POST before it gets here, so a page elsewhere cannot fire these with a form. `--debug-api` runs only on a
 * loopback HTTP host.
 *
 *   /debug/block?peer=<id>, /debug/unblock?peer=<id>   cut or restore this peer's connections to a member
 *   /debug/members/<id>/<op>[?peer=<id>]               the same on member <id> (op: block, unblock, heal,
 *                                                      leave, kill), through the debug protocol; <id> must
 *                                                      run the debug API too
 *   /debug/partition?peer=<id>                         cut <id> off from the rest: every debug member but
 *                                                      <id> blocks it, and <id> (if it runs the debug API)
 *                                                      blocks every member that does not; a tab target
 *                                                      keeps its links to other tabs
 *   /debug/heal                                        every debug member unblocks everyone, this one first
 *   /debug/stall?ms=<n>                                blocks this peer's event loop for n ms (at most 60 s)
 *   /debug/gc                                          two full garbage collections, each followed by a
 *                                                      200 ms pause in which V8 returns freed pages, then
 *                                                      this process's memory (rss, heapTotal, heapUsed,
 *                                                      external, arrayBuffers; bytes): settledMemory, what
 *                                                      benchmarks measure memory by
 *   PUT and GET /debug/floor/<key>                     the HTTP benchmark's fan-out floor (floorRoute); the
 *                                                      only routes here that are not POSTs
 *
 * A partition or heal answers with the members that did it and those that could not be reached. The peer
 * serving the page cannot partition itself: it could not reach the others to heal them. A heal reaches a
 * partitioned debug peer because it never blocks the debug members (they block it, and unblock first).
 */
import type * as http from 'node:http'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { errorMessage } from '../core/errors.js'
import type { KvReply } from '../core/kv/messages.js'
import type { MeshPeer as Peer } from '../peer.js'
import { DebugError, type DebugReply, type DebugRequest, type DebugService, parseDebugRequest } from '../services/debug.js'
import { readBody } from './http-api.js'

type Send = (status: number, body: unknown) => void

/** Members (besides this peer) that publish a debug API and have not left. */
function debugMembers (peer: Peer): string[] {
  return peer.members().filter(m => m.id !== peer.id && m.meta.debug === 1 && m.state !== 'left').map(m => m.id)
}

async function onMember (peer: Peer, debug: DebugService, id: string, request: DebugRequest): Promise<DebugReply> {
  return id === peer.id ? await debug.perform(request) : await debug.call(id, request)
}

/** A request to run on member `id`, reported as `label` (the member, or what it was told to block). */
interface Job { id: string; request: DebugRequest; label: string }

/** Runs each job, collecting the labels of those done and of those that failed. */
async function fanOut (peer: Peer, debug: DebugService, jobs: Job[]): Promise<{ done: string[]; failed: Array<{ id: string; error: string }> }> {
  const done: string[] = []
  const failed: Array<{ id: string; error: string }> = []
  await Promise.all(jobs.map(async ({ id, request, label }) => {
    try {
      const reply = await onMember(peer, debug, id, request)
      if (reply.ok) done.push(label)
      else failed.push({ id: label, error: reply.error ?? 'refused' })
    } catch (error) {
      failed.push({ id: label, error: errorMessage(error) })
    }
  }))
  return { done, failed }
}

type GcFunction = () => void
let gcFunction: GcFunction | null = null

/**
 * A full, synchronous garbage collection, so that a memory figure taken after it holds live data only.
 * Uses `gc` if the process was started with --expose-gc; otherwise exposes it at run time (the V8 flag,
 * then a fresh context's global) once. (Node 20's V8 takes no options here that help: its "last-resort"
 * flavour left more of a loaded peer's heap in use, not less.)
 */
function fullGc (): void {
  if (gcFunction === null) {
    const exposed = (globalThis as { gc?: GcFunction }).gc
    if (typeof exposed === 'function') {
      gcFunction = exposed
    } else {
      v8.setFlagsFromString('--expose-gc')
      gcFunction = vm.runInNewContext('gc') as GcFunction
    }
  }
  gcFunction()
}

/** How long V8 gets after a collection to hand the pages it freed back to the OS (it does so in a task). */
const RELEASE_WAIT_MS = 200

/**
 * This process's memory with as little garbage as it can: a full collection, a pause in which V8 usually
 * returns the pages it freed to the OS (it does so in a task, so resident memory falls only then; nothing
 * checks that it did), and the same again. Takes about half a second.
 */
export async function settledMemory (): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 2; i++) {
    fullGc()
    await new Promise(resolve => setTimeout(resolve, RELEASE_WAIT_MS))
  }
  return process.memoryUsage()
}

/** Longest event-loop stall `POST /debug/stall?ms=` makes. */
export const STALL_MS_MAX = 60_000

/** What `GET /debug/floor/<key>` answers with: as many bytes as the HTTP benchmark's values. */
export const FLOOR_VALUE_BYTES = 100
/** The largest body `PUT /debug/floor/<key>` takes: it travels as the key of a read, so within the key limit. */
export const FLOOR_BODY_BYTES_MAX = 1024
const FLOOR_VALUE = new Uint8Array(FLOOR_VALUE_BYTES).fill(0x66)
/** Replicas of a key (N), and the others' answers a put (W - 1) and a get (R - 1) wait for: the defaults. */
const FLOOR_N = 3
const FLOOR_PUT_ACKS = 1
const FLOOR_GET_ACKS = 1

/**
 * The HTTP benchmark's fan-out floor: a quorum operation (N=3, R=2, W=2) with nothing stored, so what is left
 * is the path every meshkv request takes — this HTTP server and its guard, the key's primaries on the ring,
 * and the KV RPC layer over libp2p to them and back. `PUT /debug/floor/<key>` sends its body (at most
 * FLOOR_BODY_BYTES_MAX bytes), as the key of a KV read, to the key's other two primaries and answers 204 once
 * one has answered (W=2 counts this peer); `GET /debug/floor/<key>` sends a read of <key> to one other primary
 * (R=2) and answers 200 with FLOOR_VALUE_BYTES bytes. Those replicas look the key up and answer; no log,
 * version vector or coordinator is involved. A replica that cannot be reached gives 503.
 */
async function floorRoute (peer: Peer, req: http.IncomingMessage, res: http.ServerResponse, send: Send, key: string): Promise<void> {
  if (req.method !== 'PUT' && req.method !== 'GET') { send(405, { error: 'the floor takes PUT and GET', code: 'ERR_METHOD' }); return }
  const put = req.method === 'PUT'
  // A body that is not Latin-1 text would still fit: each byte becomes one character of at most 2 UTF-8 bytes.
  const payload = put ? Buffer.from(await readBody(req, FLOOR_BODY_BYTES_MAX / 2)).toString('latin1') : key
  const ring = peer.store.kv.ring
  const others = ring.primaries(ring.position(key), FLOOR_N).filter(id => id !== peer.id)
  const acks = put ? FLOOR_PUT_ACKS : FLOOR_GET_ACKS
  const targets = put ? others : others.slice(0, acks)
  const failed = (reason: string): void => { send(503, { error: `floor: ${reason}`, code: 'ERR_UNREACHABLE' }) }
  if (payload.length === 0) { send(400, { error: 'the floor needs a body of 1 byte or more', code: 'ERR_DECODE' }); return }
  if (targets.length < acks) { failed(`${targets.length} other primaries of the key, ${acks} needed`); return }
  await new Promise<void>(resolve => {
    let answered = 0
    let pending = targets.length
    const reasons: string[] = []
    const settle = (ok: boolean, reason?: string): void => {
      pending--
      if (ok) answered++
      else reasons.push(reason!)
      if (answered === acks) {
        if (put) { res.writeHead(204); res.end() } else { res.writeHead(200, { 'content-type': 'application/octet-stream' }); res.end(FLOOR_VALUE) }
        resolve()
      } else if (pending === 0 && answered < acks) {
        failed(reasons.join('; '))
        resolve()
      }
    }
    for (const id of targets) {
      peer.store.kvRpc.request(id, { type: 'read', key: payload }).then(
        (reply: KvReply) => { settle(reply.type === 'state', reply.type === 'state' ? undefined : `${id} answered ${reply.type}`) },
        (error: unknown) => { settle(false, `${id}: ${errorMessage(error)}`) })
    }
  })
}

export async function debugRoute (peer: Peer, debug: DebugService, req: http.IncomingMessage, url: URL, send: Send, res: http.ServerResponse): Promise<boolean> {
  if (!url.pathname.startsWith('/debug/')) return false
  if (url.pathname.startsWith('/debug/floor/')) {
    const raw = url.pathname.slice('/debug/floor/'.length)
    let key: string
    try {
      key = decodeURIComponent(raw)
    } catch {
      send(400, { error: 'the key is not valid percent-encoding', code: 'ERR_DECODE' })
      return true
    }
    if (key.length === 0 || key.includes('/') || key.length > FLOOR_BODY_BYTES_MAX / 2) { send(400, { error: `the key must be one path segment of 1..${FLOOR_BODY_BYTES_MAX / 2} characters`, code: 'ERR_INVALID_KEY' }); return true }
    await floorRoute(peer, req, res, send, key)
    return true
  }
  if (req.method !== 'POST') { send(405, { error: 'debug routes take POST', code: 'ERR_METHOD' }); return true }
  const target = url.searchParams.get('peer') ?? undefined
  try {
    if (url.pathname === '/debug/block' || url.pathname === '/debug/unblock') {
      const op = url.pathname === '/debug/block' ? 'block' : 'unblock'
      send(200, await debug.perform(parseDebugRequest({ op, peer: target }, peer.id)))
      return true
    }
    const m = /^\/debug\/members\/([^/]+)\/([a-z]+)$/.exec(url.pathname)
    if (m !== null) {
      const id = decodeURIComponent(m[1]!)
      if (id !== peer.id && !debugMembers(peer).includes(id)) throw new DebugError(`${id} is not a member that runs the debug API`)
      const request = parseDebugRequest({ op: m[2], ...(target === undefined ? {} : { peer: target }) }, id)
      send(200, { member: id, ...await onMember(peer, debug, id, request) })
      return true
    }
    if (url.pathname === '/debug/partition') {
      if (target === undefined || !peer.members().some(x => x.id === target)) throw new DebugError('peer=<member id> required')
      if (target === peer.id) throw new DebugError('the peer serving this page cannot partition itself (it could not reach the others to heal them): open the dashboard of another peer')
      // Every debug member blocks the target; the target, if it runs the debug API, blocks every member
      // that does not (tabs, other Node peers), which would otherwise relay its probes and requests. It
      // keeps its links to the debug members' ids, all blocked at their end, so that a heal can reach it.
      // The target first, while it can still be reached.
      const debuggers = debugMembers(peer)
      const rest = debuggers.includes(target)
        ? peer.members().filter(x => x.id !== target && x.id !== peer.id && x.state !== 'left' && x.meta.debug !== 1).map(x => x.id)
        : []
      const cut = await fanOut(peer, debug, rest.map(id => ({ id: target, request: { op: 'block', peer: id }, label: id })))
      const result = await fanOut(peer, debug, [peer.id, ...debuggers.filter(id => id !== target)].map(id => ({ id, request: { op: 'block', peer: target }, label: id })))
      send(200, { partitioned: target, blockedBy: result.done, targetBlocked: cut.done, failed: [...result.failed, ...cut.failed] })
      return true
    }
    if (url.pathname === '/debug/stall') {
      // Blocks this peer's event loop, as an overloaded or paused process would (tests of the failure
      // detector's own health): nothing else runs here until it ends. At most STALL_MS_MAX.
      const raw = url.searchParams.get('ms') ?? ''
      const ms = Number(raw)
      if (!/^\d+$/.test(raw) || ms < 1 || ms > STALL_MS_MAX) throw new DebugError(`ms=<1..${STALL_MS_MAX}> required, got ${JSON.stringify(raw)}`)
      const until = performance.now() + ms
      while (performance.now() < until) { /* busy: the stall is the point */ }
      send(200, { stalledMs: ms })
      return true
    }
    if (url.pathname === '/debug/gc') {
      const { rss, heapTotal, heapUsed, external, arrayBuffers } = await settledMemory()
      send(200, { rss, heapTotal, heapUsed, external, arrayBuffers })
      return true
    }
    if (url.pathname === '/debug/heal') {
      await debug.perform({ op: 'heal' })
      const result = await fanOut(peer, debug, debugMembers(peer).map(id => ({ id, request: { op: 'heal' }, label: id })))
      send(200, { healed: [peer.id, ...result.done], failed: result.failed })
      return true
    }
    send(404, { error: `no debug route ${url.pathname}`, code: 'ERR_NOT_FOUND' })
  } catch (error) {
    if (!(error instanceof DebugError)) throw error
    send(400, { error: error.message, code: 'ERR_BAD_REQUEST' })
  }
  return true
}
