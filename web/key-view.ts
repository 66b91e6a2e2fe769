/**
 * Key lookup: a key's hash position and segment, its preference list (primaries and fallbacks, who is up)
 * with each replica's version vector and values, and get / put / delete through this tab's peer. Siblings
 * are shown side by side; "keep this" writes that value with the read's context, which resolves them.
 */
import { segmentOf } from '../src/core/ring/ring.js'
import type { KeyState } from '../src/core/version/dvv.js'
import type { GetResult } from '../src/core/kv/node.js'
import type { MeshPeer as Peer } from '../src/peer.js'
import { $, el, shortId, valueText } from './dom.js'

function vvText (state: KeyState): string {
  const parts: string[] = []
  for (let i = 0; i < state.vv.length; i += 2) parts.push(`${shortId(state.vv[i] as string)}:${String(state.vv[i + 1])}`)
  return `{${parts.join(', ')}}`
}

function errorText (error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

export class KeyView {
  /** The context of the last get of the current key. */
  private context = ''
  private key = ''

  constructor (private readonly peer: Peer, private readonly onKey: (position: number | null) => void) {
    $('key-form').addEventListener('submit', event => { event.preventDefault(); void this.get() })
    $('put').addEventListener('click', () => { void this.put(($('value') as HTMLTextAreaElement).value, ($('use-context') as HTMLInputElement).checked) })
    $('delete').addEventListener('click', () => { void this.remove() })
  }

  private currentKey (): string | null {
    const key = ($('key') as HTMLInputElement).value
    if (key === '') {
      this.status('type a key first', true)
      return null
    }
    if (key !== this.key) { this.key = key; this.context = '' }
    return key
  }

  private status (text: string, error = false): void {
    const node = $('key-status')
    node.textContent = text
    node.className = error ? 'error' : ''
  }

  /** Reads the key; `done` says what an operation before it did (shown in front of the read's result). */
  async get (done = ''): Promise<void> {
    const key = this.currentKey()
    if (key === null) return
    this.status(`${done}reading…`)
    try {
      const result = await this.peer.get(key)
      this.context = result.context
      this.showResult(result)
      this.status(done + (result.values.length === 0 ? (result.deleted ? 'deleted' : 'not found') : result.values.length === 1 ? `one value (${result.replies} replies)` : `${result.values.length} siblings: keep one to resolve them`))
    } catch (error) {
      this.status(errorText(error), true)
    }
    await this.placement(key)
  }

  async put (value: string | Uint8Array, withContext: boolean): Promise<void> {
    const key = this.currentKey()
    if (key === null) return
    this.status('writing…')
    let done: string
    try {
      const result = await this.peer.put(key, value, withContext && this.context !== '' ? { context: this.context } : {})
      done = `written (${result.acks} acks)${withContext && this.context !== '' ? ' with the context' : ''}; now: `
    } catch (error) {
      this.status(errorText(error), true)
      return
    }
    await this.get(done)
  }

  async remove (): Promise<void> {
    const key = this.currentKey()
    if (key === null) return
    this.status('deleting…')
    let done: string
    try {
      const result = await this.peer.delete(key, this.context === '' ? {} : { context: this.context })
      done = `deleted (${result.acks} acks); now: `
    } catch (error) {
      this.status(errorText(error), true)
      return
    }
    await this.get(done)
  }

  private showResult (result: GetResult): void {
    $('context').textContent = result.context === '' ? '(none)' : result.context.length > 80 ? `${result.context.slice(0, 80)}…` : result.context
    const cards = result.siblings.map((s, i) => {
      const keep = el('button', { type: 'button', class: 'keep' }, 'keep this')
      // The sibling's own bytes (a value that is not UTF-8 text stays as it is).
      keep.addEventListener('click', () => { void this.put(s.value, true) })
      return el('div', { class: 'sibling', 'data-index': String(i) },
        el('pre', { class: 'value' }, valueText(s.value)),
        el('div', { class: 'meta' }, `by ${shortId(s.replica)} #${s.counter} at ${new Date(s.wall).toLocaleTimeString()}`),
        result.siblings.length > 1 ? keep : null)
    })
    $('siblings').replaceChildren(...cards)
  }

  /** Re-reads the placement of the key in the box (each replica's version and values), without a get. */
  async refresh (): Promise<void> {
    const key = ($('key') as HTMLInputElement).value
    if (key !== '') await this.placement(key)
  }

  private async placement (key: string): Promise<void> {
    try {
      const p = await this.peer.placement(key)
      this.onKey(p.position)
      $('position').textContent = `position ${p.position} · segment ${segmentOf(p.position)} of 1024`
      const rows = p.replicas.map(r => el('tr', { 'data-id': r.id, 'data-role': r.role, 'data-up': String(r.up) },
        el('td', { class: 'id', title: r.id }, `${shortId(r.id)}${r.id === this.peer.id ? ' (this tab)' : ''}`),
        el('td', {}, r.role + (r.hintFor === undefined ? '' : ` for ${shortId(r.hintFor)}`)),
        el('td', { class: r.up ? 'alive' : 'dead' }, r.up ? 'up' : 'down'),
        el('td', { title: r.reason === 'fallback' ? 'stands in for a down primary' : r.reason === 'new-location' ? 'first member clockwise at a new location' : 'location repeated: fewer locations than N, or a durable place to fill' },
          `${r.durable ? 'durable' : 'volatile'} · ${r.location.startsWith('browser/') ? `browser ${r.location.slice(8, 16)}` : r.location}${r.reason === 'repeated-location' ? ' (again)' : ''}`),
        el('td', { class: 'vv' }, r.error !== undefined ? r.error : r.state === null || r.state === undefined ? '—' : vvText(r.state)),
        el('td', { class: 'values' }, r.state === null || r.state === undefined
          ? ''
          : r.state.siblings.map(s => s.value === null ? '(tombstone)' : valueText(s.value)).join(' | '))
      ))
      $('placement').replaceChildren(...rows)
    } catch (error) {
      this.onKey(null)
      $('placement').replaceChildren(el('tr', {}, el('td', { colspan: '6', class: 'error' }, errorText(error))))
    }
  }
}
