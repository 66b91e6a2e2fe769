/**
 * The benchmark mesh: three Node peers on 127.0.0.1 — this process (created in-process with createPeer, as
 * `node node/peer.js` does, so a suite's client calls it directly) and two `node node/peer.js` children that
 * join it — with N=3, R=2, W=2 and sync durability unless a suite says otherwise. `withMesh` starts it, waits
 * until every peer lists the other two alive and the ring has three members, runs the suite's body, and then
 * always stops the in-process peer, kills the children and removes the temporary directory: after the body
 * returns or throws, and on SIGINT/SIGTERM (the body's `signal` aborts, the cleanup runs once, and the process
 * exits 130/143). The children run the built dist/ (`npm run build`).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import type { StorageConfig } from '../src/core/config.js'
import type { Logger } from '../src/core/env.js'
import type { KvConfig } from '../src/core/kv/config.js'
import type { MeshPeer as Peer } from '../src/peer.js'
import { built } from './built.js'
import { progress } from './report.js'

// The in-process peer runs the built code, as the children do (bench/built.ts).
const { consoleLogger, systemClock } = await built<typeof import('../src/adapters/node-env.js')>('src/adapters/node-env.js')
const { cryptoRng } = await built<typeof import('../src/adapters/random.js')>('src/adapters/random.js')
const { FileWal } = await built<typeof import('../src/adapters/wal-file.js')>('src/adapters/wal-file.js')
const { settledMemory } = await built<typeof import('../src/cli/debug-api.js')>('src/cli/debug-api.js')
const { defaultKvConfig } = await built<typeof import('../src/core/kv/config.js')>('src/core/kv/config.js')
const { defaultSwimConfig } = await built<typeof import('../src/core/membership/config.js')>('src/core/membership/config.js')
const { DEFAULT_VNODES } = await built<typeof import('../src/core/ring/ring.js')>('src/core/ring/ring.js')
const { createMeshPeer } = await built<typeof import('../src/peer.js')>('src/peer.js')

/** Bounds on waiting for the mesh: a child printing its addresses, and all three seeing each other alive. */
const CHILD_START_TIMEOUT_MS = 30_000
const MESH_TIMEOUT_MS = 30_000
/** The in-process peer's stop, bounded so a wedged stop cannot hang the cleanup. */
const STOP_TIMEOUT_MS = 10_000
/** Lines of a child's output kept for error messages. */
const CHILD_OUTPUT_LINES_MAX = 200
const MB = 1024 * 1024

const PEER_JS = fileURLToPath(new URL('../node/peer.js', import.meta.url))
const DIST_CLI = fileURLToPath(new URL('../dist/src/cli/peer-cli.js', import.meta.url))

export interface Child {
  readonly proc: ChildProcess
  readonly name: string
  readonly output: string[]
  id: string
  http: string
  readonly exited: Promise<void>
}

export interface MeshOptions {
  /** Names the temporary directory (`meshkv-bench-<name>-…`). */
  name: string
  /** The in-process peer's storage settings; durability defaults to 'sync' (the children's default). */
  storage?: Partial<StorageConfig>
  /** Replication settings of the in-process peer; default N=3, R=2, W=2 (the children's defaults). */
  kv?: Partial<KvConfig>
  /** Extra command-line arguments for both children (e.g. `--debug-api`, `--sweep-period-ms 500`). */
  childArgs?: string[]
}

export interface Mesh {
  /** The in-process peer (the benchmark's client talks to it directly). */
  readonly peer: Peer
  readonly children: readonly Child[]
  /** The three peer ids, the in-process one first. */
  readonly ids: readonly string[]
  /** Aborts on SIGINT/SIGTERM: loops in the body should stop on it. */
  readonly signal: AbortSignal
}

/** Spawns a peer; the caller owns it (and kills it) from the moment this returns, before it is ready. */
function spawnChild (name: string, args: string[]): Child {
  const proc = spawn(process.execPath, [PEER_JS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const output: string[] = []
  const keep = (line: string): void => { output.push(line); if (output.length > CHILD_OUTPUT_LINES_MAX) output.shift() }
  readline.createInterface({ input: proc.stdout! }).on('line', keep)
  readline.createInterface({ input: proc.stderr! }).on('line', keep)
  const exited = new Promise<void>(resolve => { proc.once('exit', () => { resolve() }) })
  return { proc, name, output, id: '', http: '', exited }
}

/** Resolves once the child has printed its id, HTTP URL and data line (it is then serving). */
async function childReady (child: Child): Promise<void> {
  const started = performance.now()
  let exited = false
  void child.exited.then(() => { exited = true })
  for (;;) {
    for (const line of child.output) {
      const m = /^meshkv peer (\S+)/.exec(line)
      if (m !== null) child.id = m[1]!
      if (line.startsWith('http: ')) child.http = line.split(' ')[1]!
    }
    if (child.id !== '' && child.http !== '' && child.output.some(l => l.startsWith('data: '))) return
    if (exited) throw new Error(`${child.name} exited before it started:\n${child.output.join('\n')}`)
    if (performance.now() - started > CHILD_START_TIMEOUT_MS) throw new Error(`${child.name} did not start within ${CHILD_START_TIMEOUT_MS} ms:\n${child.output.join('\n')}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

export async function getJson<T> (url: string, timeoutMs = 5000): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`)
  return await res.json() as T
}

/** Polls `check` every 100 ms until it holds; throws with `what` after `timeoutMs`. */
export async function waitUntil (check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now()
  for (;;) {
    try {
      if (await check()) return performance.now() - start
    } catch { /* not ready yet */ }
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** Warnings and errors of the in-process peer on stderr; its info lines (member changes) are noise here. */
function quietLogger (): Logger {
  const log = consoleLogger('meshkv:bench-peer')
  return { debug: log.debug, info: () => {}, warn: log.warn, error: log.error }
}

export interface RssRow { peer: string; id: string; rssMb: number; heapUsedMb: number; externalMb?: number }

/**
 * Each peer's resident memory and heap once full garbage collections released what they freed: this
 * process's own, the children's from `POST /debug/gc` (the children must run with `--debug-api`).
 */
export async function settledRssOf (mesh: Mesh): Promise<RssRow[]> {
  const own = await settledMemory()
  const out: RssRow[] = [{ peer: 'bench', id: mesh.peer.id, rssMb: own.rss / MB, heapUsedMb: own.heapUsed / MB, externalMb: own.external / MB }]
  for (const c of mesh.children) {
    const res = await fetch(`${c.http}/debug/gc`, { method: 'POST', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(30_000) })
    if (!res.ok) throw new Error(`POST ${c.http}/debug/gc: ${res.status} (does the child run with --debug-api?)`)
    const m = await res.json() as { rss: number; heapUsed: number; external: number }
    out.push({ peer: c.name, id: c.id, rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB, externalMb: m.external / MB })
  }
  return out
}

/** Each peer's resident memory and heap: this process's own, the children's from `GET /api/info`. */
export async function rssOf (mesh: Mesh): Promise<RssRow[]> {
  const own = process.memoryUsage()
  const out: RssRow[] = [{ peer: 'bench', id: mesh.peer.id, rssMb: own.rss / MB, heapUsedMb: own.heapUsed / MB }]
  for (const c of mesh.children) {
    const info = await getJson<{ memory: { rss: number; heapUsed: number } }>(`${c.http}/api/info`)
    out.push({ peer: c.name, id: c.id, rssMb: info.memory.rss / MB, heapUsedMb: info.memory.heapUsed / MB })
  }
  return out
}

/** Starts the mesh, runs `body` on it, and cleans up whatever happens (see the module comment). */
export async function withMesh<T> (options: MeshOptions, body: (mesh: Mesh) => Promise<T>): Promise<T> {
  if (!fs.existsSync(DIST_CLI)) throw new Error('the child peers run the built dist/: run `npm run build` first')
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `meshkv-bench-${options.name}-`))
  const children: Child[] = []
  const controller = new AbortController()
  let peer: Peer | null = null
  // If this process dies without reaching the cleanup (an uncaught error elsewhere, process.exit), the
  // children must not outlive it.
  const killChildren = (): void => { for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL') }
  process.on('exit', killChildren)
  let cleaning: Promise<void> | null = null
  const cleanup = async (): Promise<void> => {
    cleaning ??= (async () => {
      progress('stopping the peers')
      if (peer !== null) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([
          peer.stop().catch(error => { progress(`in-process peer stop failed: ${error instanceof Error ? error.message : String(error)}`) }),
          new Promise(resolve => { timer = setTimeout(resolve, STOP_TIMEOUT_MS) })
        ])
        clearTimeout(timer)
      }
      killChildren()
      await Promise.all(children.map(c => c.exited))
      process.off('exit', killChildren)
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      fs.rmSync(root, { recursive: true, force: true })
    })()
    await cleaning
  }
  // Interrupted (Ctrl-C, a timeout's SIGTERM): the body may be anywhere, so abort it, clean up here and exit.
  // The children go first: they are killed at once, the in-process peer's stop may take a moment.
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: cleaning up`)
    controller.abort(new Error(`interrupted by ${signal}`))
    killChildren()
    const code = signal === 'SIGINT' ? 130 : 143
    cleanup().finally(() => { process.exit(code) })
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    progress('starting the in-process peer')
    fs.mkdirSync(path.join(root, 'bench'))
    const swim = { ...defaultSwimConfig(), metaBytesMax: 2048 }
    peer = await createMeshPeer({
      kind: 'node',
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      extraTransports: [tcp()],
      webrtcBindAddress: '127.0.0.1',
      swim,
      incarnation: 0,
      vnodes: DEFAULT_VNODES,
      location: os.hostname(),
      durable: true,
      clock: systemClock,
      rng: cryptoRng,
      log: quietLogger(),
      wal: new FileWal(path.join(root, 'bench', 'wal')),
      storage: { durability: 'sync', ...options.storage },
      kv: { ...defaultKvConfig(), n: 3, r: 2, w: 2, ...options.kv }
    })
    const self = peer
    const joinAddr = self.libp2p.getMultiaddrs().map(String).find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//.test(a))
    if (joinAddr === undefined) throw new Error(`the in-process peer has no TCP address: ${self.libp2p.getMultiaddrs().map(String).join(', ')}`)

    progress(`starting 2 child peers joining ${joinAddr}`)
    for (const name of ['child-1', 'child-2']) {
      const dataDir = path.join(root, name)
      children.push(spawnChild(name, ['--join', joinAddr, '--data-dir', dataDir, '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', ...(options.childArgs ?? [])]))
    }
    await Promise.all(children.map(childReady))
    const ids = [self.id, ...children.map(c => c.id)]
    const formedMs = await waitUntil(async () => {
      const aliveHere = new Set(self.members().filter(m => m.state === 'alive').map(m => m.id))
      if (!ids.every(id => aliveHere.has(id)) || self.ring().size !== 3) return false
      for (const c of children) {
        const alive = new Set((await getJson<Array<{ id: string; state: string }>>(`${c.http}/members`)).filter(m => m.state === 'alive').map(m => m.id))
        if (!ids.every(id => alive.has(id))) return false
      }
      return true
    }, MESH_TIMEOUT_MS, 'three peers alive in every member list and a ring of 3')
    progress(`mesh formed in ${Math.round(formedMs)} ms: ${ids.join(', ')}`)
    return await body({ peer: self, children, ids, signal: controller.signal })
  } finally {
    await cleanup()
  }
}
