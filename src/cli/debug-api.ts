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
 *
 * A partition or heal answers with the members that did it and those that could not be reached. The peer
 * serving the page cannot partition itself: it could not reach the others to heal them. A heal reaches a
 * partitioned debug peer because it never blocks the debug members (they block it, and unblock first).
 */
import type * as http from 'node:http'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { errorMessage } from '../core/errors.js'
import type { MeshPeer as Peer } from '../peer.js'
import { DebugError, type DebugReply, type DebugRequest, type DebugService, parseDebugRequest } from '../services/debug.js'

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

export async function debugRoute (peer: Peer, debug: DebugService, req: http.IncomingMessage, url: URL, send: Send): Promise<boolean> {
  if (!url.pathname.startsWith('/debug/')) return false
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
