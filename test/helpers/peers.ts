/**
 * Real `node node/peer.js` processes for integration tests: start one, read the addresses it prints, query
 * its HTTP API, and wait for conditions with a bound (never for a fixed delay).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import * as http from 'node:http'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'

export interface PeerProcess {
  readonly proc: ChildProcess
  readonly id: string
  readonly http: string
  readonly tcp: string
  readonly output: string[]
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface MemberJson { id: string; state: string; incarnation: number; kind: string }

/** Starts a peer and resolves once it has printed its id, addresses and HTTP URL. */
export async function startPeer (args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<PeerProcess> {
  const proc = spawn(process.execPath, ['node/peer.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const output: string[] = []
  let id = ''
  let http = ''
  let tcp = ''
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => { proc.on('exit', (code, signal) => { resolve({ code, signal }) }) })
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`peer did not start within ${timeoutMs} ms:\n${output.join('\n')}`)) }, timeoutMs)
    const onLine = (line: string): void => {
      output.push(line)
      const m = /^meshkv peer (\S+)/.exec(line)
      if (m !== null) id = m[1]!
      if (line.startsWith('http: ')) http = line.split(' ')[1]!
      if (tcp === '' && /^listening: \/ip4\/[^ ]+\/tcp\/\d+\/p2p\//.test(line)) tcp = line.slice('listening: '.length)
      if (line.startsWith('data: ') && id !== '') { clearTimeout(timer); resolve() }
    }
    readline.createInterface({ input: proc.stdout! }).on('line', onLine)
    readline.createInterface({ input: proc.stderr! }).on('line', line => { output.push(line) })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`peer exited before it started:\n${output.join('\n')}`)) })
  })
  await ready
  return { proc, id, http, tcp, output, exited }
}

export async function members (peer: PeerProcess): Promise<MemberJson[]> {
  const res = await fetch(`${peer.http}/members`, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`GET /members: ${res.status}`)
  return await res.json() as MemberJson[]
}

/** Polls `check` every 100 ms until it returns true; throws with `what` after `timeoutMs`. */
export async function waitUntil (check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now()
  for (;;) {
    try {
      if (await check()) return performance.now() - start
    } catch { /* not ready yet (e.g. a peer restarting) */ }
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

export async function stateIn (peer: PeerProcess, id: string): Promise<MemberJson | undefined> {
  return (await members(peer)).find(m => m.id === id)
}

/**
 * Peers of one test file, each in its own data directory under a fresh temporary root, on 127.0.0.1 with
 * WebRTC bound there too. `stopAll()` (for afterAll) SIGKILLs what is still running and removes the root.
 */
export function peerGroup (prefix: string, flags: string[]): { root: string; start: (name: string, extra: string[], timeoutMs?: number) => Promise<PeerProcess>; stopAll: () => Promise<void> } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const started: PeerProcess[] = []
  return {
    root,
    start: async (name, extra, timeoutMs) => {
      const p = await startPeer(['--data-dir', path.join(root, name), '--http', '0', '--webrtc-bind', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0', ...flags, ...extra], {}, timeoutMs)
      started.push(p)
      return p
    },
    stopAll: async () => {
      for (const p of started) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL')
      await Promise.all(started.map(p => p.exited))
      fs.rmSync(root, { recursive: true, force: true })
    }
  }
}

/** A change event as GET /watch streams it (Server-Sent Events). */
export interface WatchedEvent { type: string; key: string; replica: string; wall: number }

/** Collects the Server-Sent Events of GET /watch?prefix= on `p` until closed. */
export function watchEvents (p: PeerProcess, prefix: string): { events: WatchedEvent[]; close: () => void } {
  const events: WatchedEvent[] = []
  const req = http.get(`${p.http}/watch?prefix=${encodeURIComponent(prefix)}`, res => {
    let buffer = ''
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      buffer += chunk
      let end: number
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = block.split('\n').find(line => line.startsWith('data: '))
        if (data !== undefined) events.push(JSON.parse(data.slice(6)) as WatchedEvent)
      }
    })
  })
  req.on('error', () => {})
  return { events, close: () => { req.destroy() } }
}
