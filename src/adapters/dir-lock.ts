/**
 * One process per data directory: a LOCK file holding the owner's pid, created exclusively. A lock whose
 * process is gone (SIGKILLed, crashed) is taken over; a live owner, or a second open in this process, gets
 * LockedError naming the holder.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { LockedError } from '../core/errors.js'

const lockedHere = new Set<string>()

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Locks `dir` (which must exist); returns the function that releases it. */
export function lockDirectory (dir: string): () => void {
  const key = path.resolve(dir)
  const lockPath = path.join(dir, 'LOCK')
  if (lockedHere.has(key)) throw new LockedError(dir, 'this process')
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lockPath, String(process.pid), { flag: 'wx' })
      lockedHere.add(key)
      let released = false
      return () => {
        if (released) return
        released = true
        fs.rmSync(lockPath, { force: true })
        lockedHere.delete(key)
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    let holder = NaN
    try { holder = Number(fs.readFileSync(lockPath, 'utf8').trim()) } catch { /* vanished meanwhile: retry */ }
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new LockedError(dir, `process ${holder}`)
    }
    fs.rmSync(lockPath, { force: true }) // stale: its process is gone
  }
  throw new LockedError(dir, 'another process racing for its lock')
}
