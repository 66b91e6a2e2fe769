/**
 * How a tab finds the mesh and proves it may join:
 * - Where to join: the serving peer's /api/info (its WebSocket addresses). When that peer is gone (the page
 *   then comes from the service worker's copy, sw.js), the relays this origin saw last, kept in
 *   localStorage (addresses only, never a key).
 * - The settings every member of the mesh must share (N, minDurable, durableAcks; src/core/agreement.ts): from /api/info
 *   too, remembered for the next visit; a tab with other settings would be refused by every member.
 * - The mesh key of a private mesh: from the URL fragment (`#key=...`, which browsers never send to a
 *   server), or typed into the page. It is kept in sessionStorage only (gone when the tab closes; never
 *   localStorage or IndexedDB), and the fragment is removed from the address bar at once.
 * - The serving peer's HTTP token, when it was started with one (`--http-token`; always so beyond loopback):
 *   the same way, from `#token=...` or the page's form, in sessionStorage only, and sent as
 *   `Authorization: Bearer` by apiFetch. The page's own files are public; /api/info and the debug routes
 *   answer 401 without the token, which is when the page asks for it.
 */
import { N_MAX } from '../src/core/kv/config.js'
import { $ } from './dom.js'

const RELAYS_KEY = 'meshkv-relays'
const PRIVATE_KEY = 'meshkv-private'
const SETTINGS_KEY = 'meshkv-mesh-settings'
const MESH_KEY_SESSION = 'meshkv-mesh-key'
const HTTP_TOKEN_SESSION = 'meshkv-http-token'
/** Most relay addresses kept for a reload. */
export const KNOWN_RELAYS_MAX = 16

export interface MeshEntry {
  /** Multiaddrs to join through. */
  addrs: string[]
  /** Whether the mesh wants a key (from the server, or remembered from the last visit). */
  private: boolean
  /** Where the addresses came from, for the page. */
  source: 'query' | 'server' | 'remembered'
  /** The serving peer runs the debug API (the chaos panel). */
  debugApi: boolean
  /** The mesh's N, minDurable and durableAcks (from the server, or remembered); null: the defaults. */
  settings: MeshSettings | null
}

export interface MeshSettings { n: number; minDurable: number; durableAcks: number }

/** The settings from an /api/info `mesh` object or a remembered copy, if they are sane. */
function settingsOf (value: unknown): MeshSettings | null {
  if (typeof value !== 'object' || value === null) return null
  const { n, minDurable, durableAcks } = value as { n?: unknown; minDurable?: unknown; durableAcks?: unknown }
  const within = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max
  if (!within(n, 1, N_MAX) || !within(minDurable, 0, n) || !within(durableAcks, 0, n)) return null
  return { n, minDurable, durableAcks }
}

function rememberedSettings (): MeshSettings | null {
  try { return settingsOf(JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? 'null')) } catch { return null }
}

export async function meshEntry (): Promise<MeshEntry> {
  const remembered = localStorage.getItem(PRIVATE_KEY) === '1'
  const fromQuery = new URLSearchParams(location.search).getAll('bootstrap')
  httpTokenFromPage()
  if (fromQuery.length > 0) return { addrs: fromQuery, private: remembered, source: 'query', debugApi: false, settings: rememberedSettings() }
  let problem: string
  try {
    let res = await apiFetch('/api/info', { signal: AbortSignal.timeout(10_000) })
    // A peer with an HTTP token: ask for it (again, if the one given was wrong) until it is accepted.
    while (res.status === 401) {
      const wrong = sessionStorage.getItem(HTTP_TOKEN_SESSION) !== null
      await askSecret(`${wrong ? 'The HTTP token is wrong. ' : ''}This peer's HTTP API needs its token (the one it was started with). It stays in this tab only (or open the page with #token=<token>).`, 'HTTP token', HTTP_TOKEN_SESSION)
      res = await apiFetch('/api/info', { signal: AbortSignal.timeout(10_000) })
    }
    if (res.ok) {
      const info = await res.json() as { browserBootstrap: string[]; meshPrivate?: boolean; debugApi?: boolean; mesh?: unknown }
      localStorage.setItem(PRIVATE_KEY, info.meshPrivate === true ? '1' : '0')
      const settings = settingsOf(info.mesh)
      if (settings !== null) localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings))
      return { addrs: info.browserBootstrap, private: info.meshPrivate === true, source: 'server', debugApi: info.debugApi === true, settings }
    }
    problem = `GET /api/info: ${res.status}`
  } catch (error) {
    problem = `GET /api/info: ${error instanceof Error ? error.message : String(error)}`
  }
  const known = knownRelays()
  if (known.length > 0) return { addrs: known, private: remembered, source: 'remembered', debugApi: false, settings: rememberedSettings() }
  throw new Error(`${problem}; open this page from a meshkv peer, or pass ?bootstrap=<multiaddr>`)
}

export function knownRelays (): string[] {
  try {
    const list = JSON.parse(localStorage.getItem(RELAYS_KEY) ?? '[]') as unknown
    return Array.isArray(list) ? list.filter((a): a is string => typeof a === 'string').slice(0, KNOWN_RELAYS_MAX) : []
  } catch {
    return []
  }
}

export function rememberRelays (addrs: string[]): void {
  if (addrs.length > 0) localStorage.setItem(RELAYS_KEY, JSON.stringify(addrs.slice(0, KNOWN_RELAYS_MAX)))
}

/** Moves `name` from the URL fragment into sessionStorage (removing it from the address bar); returns what is kept. */
function fromFragment (name: string, sessionKey: string): string | null {
  const fragment = new URLSearchParams(location.hash.slice(1))
  const given = fragment.get(name)
  if (given !== null) {
    if (given !== '') sessionStorage.setItem(sessionKey, given)
    fragment.delete(name)
    const rest = fragment.toString()
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest === '' ? '' : `#${rest}`}`)
  }
  return sessionStorage.getItem(sessionKey)
}

/** The key given in the fragment (moved to sessionStorage, and removed from the address bar), or the one kept. */
export function meshKeyFromPage (): string | null {
  return fromFragment('key', MESH_KEY_SESSION)
}

/** The HTTP token given in the fragment (`#token=`), or the one kept; like the mesh key. */
export function httpTokenFromPage (): string | null {
  return fromFragment('token', HTTP_TOKEN_SESSION)
}

/** fetch() on the serving peer's API, with its HTTP token (if this tab has one) as a bearer token. */
export async function apiFetch (path: string, init: RequestInit = {}): Promise<Response> {
  const token = httpTokenFromPage()
  const headers = new Headers(init.headers)
  if (token !== null) headers.set('authorization', `Bearer ${token}`)
  return await fetch(path, { ...init, headers })
}

export function forgetMeshKey (): void {
  sessionStorage.removeItem(MESH_KEY_SESSION)
}

/** Shows the key form with `message` and resolves with what the user enters (kept in sessionStorage). */
export async function askMeshKey (message: string): Promise<string> {
  return await askSecret(message, 'mesh key', MESH_KEY_SESSION)
}

/** The secret form (a password field), for the mesh key or the HTTP token; the answer goes to sessionStorage. */
async function askSecret (message: string, placeholder: string, sessionKey: string): Promise<string> {
  const form = $('mesh-key-form') as HTMLFormElement
  const input = $('mesh-key') as HTMLInputElement
  $('mesh-key-message').textContent = message
  input.placeholder = placeholder
  form.hidden = false
  input.focus()
  return await new Promise(resolve => {
    form.addEventListener('submit', function onSubmit (event) {
      event.preventDefault()
      if (input.value === '') return
      form.removeEventListener('submit', onSubmit)
      const key = input.value
      input.value = ''
      form.hidden = true
      sessionStorage.setItem(sessionKey, key)
      resolve(key)
    })
  })
}

/** Registers sw.js (where service workers exist: a secure context such as http://127.0.0.1). */
export function keepPageOffline (log: (message: string) => void): void {
  if (!('serviceWorker' in navigator)) return
  navigator.serviceWorker.register('/sw.js').catch((error: unknown) => { log(`no offline copy of the page: ${error instanceof Error ? error.message : String(error)}`) })
}
