/**
 * What the benchmarks share about their child processes: CPU time from /proc, a `node -e` child that
 * listens on a port it prints, and cleanup on SIGINT/SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { progress } from './report.js'

/** CPU seconds (user + system) a process has used, from /proc (Linux); null elsewhere or once it is gone. */
export function cpuSecondsOf (pid: number | undefined): number | null {
  if (pid === undefined) return null
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15 (clock ticks).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return null
  }
}

/**
 * Runs `script` in a child `node -e` that prints `listening <port>` once it listens on 127.0.0.1, and
 * resolves with the child and its port (at most 10 s; the child is killed if it does not get there).
 */
export async function startListeningChild (script: string, what: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${what} did not start within 10 s`)) }, 10_000)
      proc.stdout!.setEncoding('utf8')
      proc.stdout!.on('data', (text: string) => {
        const m = /listening (\d+)/.exec(text)
        if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
      })
      proc.once('exit', code => { clearTimeout(timer); reject(new Error(`${what} exited with ${String(code)}`)) })
    })
    return { proc, port }
  } catch (error) {
    proc.kill('SIGKILL')
    throw error
  }
}

/**
 * On SIGINT or SIGTERM: `interrupted(signal)` (stop the work), then `cleanup()`, then exit 130 or 143.
 * Returns the function that removes the handlers (call it in a finally once cleanup is done otherwise).
 */
export function onInterrupt (cleanup: () => Promise<void>, interrupted: (signal: NodeJS.Signals) => void = () => {}): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: cleaning up`)
    interrupted(signal)
    void cleanup().finally(() => { process.exit(signal === 'SIGINT' ? 130 : 143) })
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
