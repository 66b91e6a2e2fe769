/**
 * The chaos panel, shown only when the peer serving this page runs with `--debug-api` (its /api/info says
 * so; without it the routes do not exist either). It breaks the mesh and heals it through the serving
 * peer's debug routes (src/cli/debug-api.ts): partition a member from the rest, heal everything, make a
 * Node peer leave, or SIGKILL it. Every action and its answer goes into the membership timeline, and
 * "follow the key" re-reads the placement of the key in the Key panel every 2 s, so a key's replicas can be
 * watched converging (fallbacks taking writes, hints delivered, siblings meeting) while the Activity charts
 * show hints and anti-entropy repairs.
 */
import type { MeshPeer as Peer } from '../src/peer.js'
import { apiFetch } from './connect.js'
import { $, el, shortId } from './dom.js'

export const FOLLOW_PERIOD_MS = 2000

export class ChaosView {
  private followTimer: ReturnType<typeof setTimeout> | null = null

  constructor (private readonly peer: Peer, private readonly refreshKey: () => Promise<void>, private readonly timeline: (kind: string, text: string) => void) {
    $('chaos-panel').hidden = false
    $('chaos-partition').addEventListener('click', () => { void this.act('partition', `/debug/partition?peer=${encodeURIComponent(this.target())}`) })
    $('chaos-heal').addEventListener('click', () => { void this.act('heal', '/debug/heal') })
    $('chaos-leave').addEventListener('click', () => { void this.act('leave', `/debug/members/${encodeURIComponent(this.target())}/leave`) })
    $('chaos-kill').addEventListener('click', () => { void this.act('kill', `/debug/members/${encodeURIComponent(this.target())}/kill`) })
    const follow = $('chaos-follow') as HTMLInputElement
    follow.addEventListener('change', () => { if (follow.checked) this.follow(); else this.unfollow() })
    this.render()
  }

  /** Refreshes the member list (call on membership changes); keeps the selection. */
  render (): void {
    const select = $('chaos-member') as HTMLSelectElement
    const chosen = select.value
    const options = this.peer.members().filter(m => m.id !== this.peer.id && m.state !== 'left').map(m =>
      el('option', { value: m.id }, `${shortId(m.id)} · ${String(m.meta.kind ?? '?')}${m.meta.debug === 1 ? ' · debug API' : ''} · ${m.state}`))
    select.replaceChildren(...options)
    if (options.some(o => o.value === chosen)) select.value = chosen
  }

  private target (): string {
    return ($('chaos-member') as HTMLSelectElement).value
  }

  private async act (what: string, path: string): Promise<void> {
    const who = what === 'heal' ? 'every debug member' : shortId(this.target())
    if (what !== 'heal' && this.target() === '') { this.timeline('chaos', `chaos: ${what}: choose a member first`); return }
    this.timeline('chaos', `chaos: ${what} ${who}…`)
    try {
      // A JSON content type: the peer refuses POSTs of the types a form can send (ERR_FORM_POST).
      const res = await apiFetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(30_000) })
      const body = await res.json() as Record<string, unknown>
      const failed = Array.isArray(body.failed) ? body.failed as Array<{ id: string; error: string }> : []
      const text = res.ok
        ? `chaos: ${what} ${who}: done${Array.isArray(body.blockedBy) ? ` (blocked by ${(body.blockedBy as string[]).map(shortId).join(', ')})` : ''}${failed.length > 0 ? `; not reached: ${failed.map(f => `${shortId(f.id)} (${f.error})`).join(', ')}` : ''}`
        : `chaos: ${what} ${who} refused: ${String(body.error ?? res.status)}`
      this.timeline(res.ok ? 'chaos' : 'dead', text)
    } catch (error) {
      this.timeline('dead', `chaos: ${what} ${who} failed: ${error instanceof Error ? error.message : String(error)}`)
    }
  }

  private follow (): void {
    this.unfollow()
    const step = (): void => {
      void this.refreshKey().finally(() => { if (($('chaos-follow') as HTMLInputElement).checked) this.followTimer = setTimeout(step, FOLLOW_PERIOD_MS) })
    }
    step()
  }

  private unfollow (): void {
    if (this.followTimer !== null) clearTimeout(this.followTimer)
    this.followTimer = null
  }
}
