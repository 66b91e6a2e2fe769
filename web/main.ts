/**
 * The browser page for now: this tab's own storage engine on IndexedDB (the same engine and WAL format a
 * mesh peer uses), so you can write keys, reload, and see them recovered from the log. Joining the mesh and
 * drawing the ring arrive with the mesh and dashboard issues.
 */
import { IndexedDbWal, StorageEngine, vvFrom } from '../src/index.js'

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T
const enc = new TextEncoder()
const dec = new TextDecoder()

const engine = await StorageEngine.open({
  replicaId: 'browser-local',
  clock: { nowMs: () => Date.now() },
  wal: new IndexedDbWal('meshkv-local')
})
const report = engine.recovery!
$('status').textContent = `recovered ${report.snapshotRecords} snapshot records and ${report.records} log records from IndexedDB` +
  (report.tornTails.length > 0 ? `; truncated ${report.tornTails.length} torn tail(s)` : '')
setInterval(() => { engine.sweep(); render() }, engine.config.sweepPeriodMs)

function render (): void {
  const rows = [...engine.keys()].sort().slice(0, 500).map(key => {
    const r = engine.get(key)!
    const values = r.deleted ? '(deleted)' : r.values.map(s => JSON.stringify(dec.decode(s.value!))).join(' | ')
    const vv = [];
    for (let i = 0; i < r.context.length; i += 2) vv.push(`${String(r.context[i])}:${String(r.context[i + 1])}`)
    return `<tr><td>${escape(key)}</td><td>${escape(values)}${r.ttlMs > 0 ? ` (ttl ${r.ttlMs} ms)` : ''}</td><td>${escape(vv.join(', '))}</td></tr>`
  })
  $('rows').innerHTML = rows.join('')
}

function escape (s: string): string {
  return s.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}

async function run (action: () => Promise<unknown>): Promise<void> {
  $('error').textContent = ''
  try {
    await action()
  } catch (error) {
    $('error').textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  }
  render()
}

$('put').addEventListener('submit', event => {
  event.preventDefault()
  const key = $<HTMLInputElement>('key').value
  const ttlText = $<HTMLInputElement>('ttl').value.trim()
  void run(() => engine.put(key, enc.encode($<HTMLInputElement>('value').value), {
    context: engine.get(key)?.context ?? vvFrom([]),
    ...(ttlText === '' ? {} : { ttlMs: Number(ttlText) })
  }))
})
$('del').addEventListener('click', () => {
  const key = $<HTMLInputElement>('key').value
  void run(() => engine.delete(key, { context: engine.get(key)?.context ?? vvFrom([]) }))
})
$('compact').addEventListener('click', () => { void run(() => engine.compact()) })
render()
