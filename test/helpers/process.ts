/**
 * Child processes for integration tests: spawn, wait for a line that matches, collect lines, SIGKILL. Every
 * wait has a bound and fails with what the child printed, so a hang becomes a clear failure.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import * as readline from 'node:readline'

export interface Child {
  readonly proc: ChildProcess
  readonly lines: string[]
  readonly stderr: string[]
  /** Resolves with the first line (already seen or future) matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>
  /** Resolves when the process has exited and its output is fully read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal?: NodeJS.Signals): void
}

export function spawnTs (script: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const lines: string[] = []
  const stderr: string[] = []
  const waiters: Array<{ re: RegExp; resolve: (line: string) => void }> = []
  const out = readline.createInterface({ input: proc.stdout! })
  out.on('line', line => {
    lines.push(line)
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.re.test(line)) { waiters[i]!.resolve(line); waiters.splice(i, 1) }
    }
  })
  readline.createInterface({ input: proc.stderr! }).on('line', line => { stderr.push(line) })
  const outClosed = new Promise<void>(resolve => { out.on('close', resolve) })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => {
    proc.on('exit', (code, signal) => { outClosed.then(() => { resolve({ code, signal }) }) })
  })
  return {
    proc,
    lines,
    stderr,
    exited,
    kill: (signal = 'SIGKILL') => { proc.kill(signal) },
    waitFor: (re, timeoutMs = 30_000) => {
      const seen = lines.find(l => re.test(l))
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr:\n${stderr.slice(-20).join('\n')}`)) }, timeoutMs)
        const done = (line: string): void => { clearTimeout(timer); resolve(line) }
        waiters.push({ re, resolve: done })
        void exited.then(() => { clearTimeout(timer); reject(new Error(`process exited before printing ${re}; stderr:\n${stderr.slice(-20).join('\n')}`)) })
      })
    }
  }
}
