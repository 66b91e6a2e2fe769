/**
 * Every setting of a Node peer in one table, and where each value comes from: a command-line flag, an
 * environment variable, a TOML file (`--config meshkv.toml`), or the default — in that order of precedence.
 *
 * A setting's file key is its name in its table (`n` in `[kv]` is `kv.n`); its environment variable is
 * MESHKV_ and the dotted key in upper snake case (`MESHKV_KV_N`, `MESHKV_HTTP_HOST`); its flag, where it
 * has one, is listed. Unknown file keys and bad values anywhere are errors that name the key and where the
 * value came from. Lists are TOML arrays in the file and comma-separated in the environment; a repeated
 * flag adds to the list.
 */
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml'
import { type StorageConfig, defaultStorageConfig } from '../core/config.js'
import { type KvConfig, defaultKvConfig } from '../core/kv/config.js'
import { type SwimConfig, defaultSwimConfig } from '../core/membership/config.js'
import { DEFAULT_VNODES, VNODES_MAX } from '../core/ring/ring.js'

export type SettingType = 'bool' | 'int' | 'number' | 'string' | 'list'

export interface Setting {
  /** Dotted key: `kv.n`, `storage.value-bytes-max`, `http-host`. */
  readonly key: string
  readonly type: SettingType
  /** The flag (without --) that sets it, if any. */
  readonly flag?: string
  /** For 'string': the values allowed. */
  readonly choices?: readonly string[]
  /** For 'int' and 'number': the range; bounds that depend on other settings are checked later. */
  readonly min?: number
  readonly max?: number
  /** The default as shown in --help and the README (the peer computes defaults that depend on others). */
  readonly shownDefault: string
  readonly help: string
  /** Redacted in --print-config. */
  readonly secret?: boolean
}

/** A configuration file larger than this is refused (it is a handful of lines). */
export const CONFIG_FILE_BYTES_MAX = 1024 * 1024

/** camelCase to kebab-case: a config field's name as a key (`valueBytesMax` -> `value-bytes-max`). */
export const kebab = (s: string): string => s.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)
const MAX = Number.MAX_SAFE_INTEGER

function top (key: string, type: SettingType, shownDefault: string, help: string, extra: Partial<Setting> = {}): Setting {
  return { key, type, flag: key, shownDefault, help, ...extra }
}

const KV_HELP: Record<keyof KvConfig, string> = {
  n: 'replicas per key; the same on every peer',
  r: 'replies a read waits for (1..n); default min(2, n)',
  w: 'acknowledgements a write waits for (1..n); default min(2, n)',
  strictQuorum: 'primaries only: no fallbacks, no hinted handoff',
  requestTimeoutMs: 'how long a coordinator waits for one replica',
  inFlightMax: 'requests outstanding to one peer before ERR_OVERLOADED',
  messageBytesMax: 'largest replication message (the largest key state that can be replicated)',
  handoffIntervalMs: 'period of the handoff loop (hints, rebalancing, tombstone reaping)',
  handoffBatchKeys: 'keys per handoff message',
  handoffKeysPerTurn: 'keys the handoff loop moves per turn (its rate limit)',
  syncIntervalMs: 'anti-entropy period',
  syncKeysPerRound: 'keys one anti-entropy round compares and repairs',
  indexRebuildKeysPerTurn: 'keys of the key index rebuilt per turn after a ring change (bounds how long it holds the event loop)',
  tombstoneGraceMs: 'age before a fully replicated tombstone is reaped',
  minDurable: 'durable members among each key\'s N replicas; the same on every peer',
  leaveGraceMs: 'a tab that left keeps its ring tokens this long (down; fallbacks hold its share), so a reload moves nothing; 0: leaves at once',
  durableAcks: 'durable replicas among a write\'s acknowledgements, besides W',
  notFoundOk: 'a not-found counts toward R at once (faster misses; a fresh replica can hide a value)',
  readAll: 'a read asks all N replicas at once (read repair reaches each); false: R of them, the rest when one fails, is slow or all say not found',
  hedgeMultiplier: 'a replica silent for this times its p99 round trip gets a stand-in (0: off)',
  hedgeMinMs: 'lower bound of that wait',
  hedgeMaxMs: 'upper bound of that wait',
  admitOpsMax: 'client operations in flight at this peer before new ones get 503 ERR_OVERLOADED',
  admitBeatsMax: 'heartbeats in flight at this peer before new ones get 503 ERR_OVERLOADED',
  refreshCoalesceMs: 'a heartbeat refresh waits this long for company in a frame to its replica (less CPU per beat; 0: none)'
}
const KV_FLAGS: Partial<Record<keyof KvConfig, string>> = { n: 'n', r: 'r', w: 'w', strictQuorum: 'strict-quorum', minDurable: 'min-durable', leaveGraceMs: 'leave-grace-ms', durableAcks: 'durable-acks', hedgeMultiplier: 'hedge-multiplier', syncIntervalMs: 'sync-interval-ms', tombstoneGraceMs: 'tombstone-grace-ms' }

/** Storage options, as in StorageConfig, except the memory budget in MiB (memory-max-mb). */
const STORAGE_HELP: Record<Exclude<keyof StorageConfig, 'memoryBytesMax'>, string> = {
  durability: 'sync: acknowledge after fdatasync; async: at once, may lose the last writes on a crash',
  keyBytesMax: 'longest key, UTF-8 bytes',
  valueBytesMax: 'largest value, bytes',
  siblingsWarn: 'more siblings than this log a warning',
  siblingsMax: 'a local write beyond this many siblings is refused (409)',
  sweepPeriodMs: 'TTL sweep period: a key expires between its TTL and its TTL plus two periods',
  ttlMsMax: 'longest TTL',
  walRecordBytesMax: 'largest encoded key state in the log',
  walSegmentBytesMax: 'log segment size',
  walCompactAfterBytes: 'compact once this much log (and at least the last snapshot\'s size) was written',
  onCorruption: 'fail or skip a damaged log record before the tail at recovery'
}
const STORAGE_FLAGS: Partial<Record<keyof StorageConfig, string>> = { durability: 'durability', sweepPeriodMs: 'sweep-period-ms' }

const SWIM_HELP: Record<keyof SwimConfig, string> = {
  probeIntervalMs: 'SWIM probe period',
  probeTimeoutMs: 'SWIM direct-ack timeout; default min(500, probe-interval-ms)',
  indirectChecks: 'members asked to probe indirectly',
  suspicionMult: 'suspicion timeout multiplier',
  suspicionMaxTimeoutMult: 'longest suspicion timeout, in multiples of the shortest',
  retransmitMult: 'each update is gossiped this times log10(n + 1) times',
  gossipIntervalMs: 'SWIM gossip period',
  gossipNodes: 'members each gossip round goes to',
  piggybackMax: 'updates piggybacked on one message',
  pushPullIntervalMs: 'SWIM full-state exchange period',
  awarenessMax: 'Lifeguard: how far a slow member stretches its own timeouts',
  deadReconnectMs: 'how long dead members are still offered full-state exchanges (partition healing)',
  deadForgetMs: 'dead and left members are forgotten after this long',
  membersMax: 'largest membership table',
  metaBytesMax: 'largest member metadata, bytes'
}
const SWIM_FLAGS: Partial<Record<keyof SwimConfig, string>> = { probeIntervalMs: 'probe-interval-ms', probeTimeoutMs: 'probe-timeout-ms', suspicionMult: 'suspicion-mult', gossipIntervalMs: 'gossip-interval-ms', pushPullIntervalMs: 'push-pull-interval-ms' }

/** The CLI's SWIM defaults: the library's, with room for a Node peer's addresses in its metadata. */
export function cliSwimDefaults (): SwimConfig {
  return { ...defaultSwimConfig(), metaBytesMax: 2048 }
}

function fromDefaults<T extends object> (table: string, defaults: T, help: Record<string, string>, flags: Partial<Record<string, string>>, choices: Partial<Record<string, readonly string[]>> = {}, numbers: readonly string[] = []): Setting[] {
  return Object.entries(help).map(([field, text]) => {
    const value = (defaults as Record<string, unknown>)[field]
    const type: SettingType = typeof value === 'boolean' ? 'bool' : typeof value === 'string' ? 'string' : numbers.includes(field) ? 'number' : 'int'
    const flag = flags[field]
    const fieldChoices = choices[field]
    return {
      key: `${table}.${kebab(field)}`,
      type,
      shownDefault: String(value),
      help: text,
      ...(flag === undefined ? {} : { flag }),
      ...(fieldChoices === undefined ? {} : { choices: fieldChoices }),
      ...(type === 'int' ? { min: 0, max: MAX } : {})
    }
  })
}

/** Every setting of a Node peer; `shown` only shapes the defaults --help and --print-config show. */
export function settingsTable (shown: { memoryMaxMb: number; relayReservations: number }): Setting[] {
  return [
    top('bootstrap', 'bool', 'false', 'start a mesh (default listen 127.0.0.1 tcp/4001 and tcp/4002/ws, --http 7000)'),
    top('join', 'list', '[]', 'multiaddrs of members to join through'),
    top('listen', 'list', '127.0.0.1, free TCP and WebSocket ports', 'listen multiaddrs'),
    top('http', 'string', '7000 with --bootstrap, else 0', 'HTTP API and dashboard port (0: a free one; off: none)'),
    top('http-host', 'string', '127.0.0.1', 'interface for HTTP (0.0.0.0 exposes it; then a token is required)'),
    top('http-token', 'string', 'none', 'bearer token every API request must carry (16..4096 printable characters)', { secret: true }),
    top('http-token-file', 'string', 'none', 'read the token from this file (wins over MESHKV_HTTP_TOKEN)'),
    top('http-name', 'list', '[]', 'extra names the Host header may carry (host or host:port)'),
    top('http-cors', 'list', '[]', 'origins allowed to call the API from a browser (CORS)'),
    top('data-dir', 'string', './meshkv-data', 'identity key, incarnation, known peers and the log'),
    top('mesh-key', 'string', 'none (open mesh)', 'secret that makes the mesh private', { secret: true }),
    top('location', 'string', 'the host name', 'this peer\'s failure domain, zone/rack/host'),
    top('vnodes', 'int', String(DEFAULT_VNODES), 'ring tokens this peer owns', { min: 1, max: VNODES_MAX }),
    top('relay-reservations', 'int', String(shown.relayReservations), 'browser tabs this peer\'s circuit relay serves at once', { min: 1, max: 10_000 }),
    top('no-relay', 'bool', 'false', 'run no circuit relay'),
    top('ice-server', 'list', '[]', 'STUN/TURN servers for WebRTC across NATs'),
    top('webrtc-bind', 'string', 'all interfaces', 'gather WebRTC candidates only on this interface'),
    top('debug-api', 'bool', 'false', 'the chaos panel and /debug routes; never in production'),
    ...fromDefaults('kv', defaultKvConfig(), KV_HELP, KV_FLAGS, {}, ['hedgeMultiplier']),
    ...fromDefaults('storage', defaultStorageConfig(), STORAGE_HELP, STORAGE_FLAGS, { durability: ['sync', 'async'], onCorruption: ['fail', 'skip'] }),
    { key: 'storage.memory-max-mb', type: 'int', flag: 'memory-max-mb', min: 1, max: MAX, shownDefault: `${shown.memoryMaxMb} (half the heap limit)`, help: 'memory budget of the store; past it writes fail with 507' },
    ...fromDefaults('swim', cliSwimDefaults(), SWIM_HELP, SWIM_FLAGS)
  ]
}

export type Source = 'flag' | 'env' | 'file' | 'default'
export interface Value { readonly value: unknown; readonly source: Source; readonly where: string }

export class SettingsError extends Error {
  override name = 'SettingsError'
}

/** The environment variable of a setting. */
export function envName (key: string): string {
  return `MESHKV_${key.replace(/[.-]/g, '_').toUpperCase()}`
}

function check (setting: Setting, raw: unknown, where: string): unknown {
  // A secret's value is never repeated in a message (it would land in a terminal or a log).
  const fail = (what: string): never => { throw new SettingsError(`${where}: ${what}, got ${setting.secret === true ? '<redacted>' : JSON.stringify(raw)}`) }
  switch (setting.type) {
    case 'bool':
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1') return true
      if (raw === 'false' || raw === '0') return false
      return fail('must be true or false')
    case 'int':
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'bigint' ? Number(raw) : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN
      if (!Number.isFinite(n) || (setting.type === 'int' && !Number.isInteger(n))) fail(setting.type === 'int' ? 'must be an integer' : 'must be a number')
      if ((setting.min !== undefined && n < setting.min) || (setting.max !== undefined && n > setting.max)) fail(setting.max === undefined || setting.max === MAX ? `must be at least ${setting.min ?? 0}` : `must be in [${setting.min ?? 0}, ${setting.max}]`)
      return n
    }
    case 'string':
      // A port or a name that is a number, written without quotes in the file.
      if (typeof raw === 'number' && Number.isInteger(raw)) raw = String(raw)
      if (typeof raw !== 'string') return fail('must be a string')
      if (setting.choices !== undefined && !setting.choices.includes(raw)) fail(`must be one of ${setting.choices.join(', ')}`)
      return raw
    case 'list':
      if (typeof raw === 'string') return raw.split(',').map(s => s.trim()).filter(s => s !== '')
      if (Array.isArray(raw) && raw.every(x => typeof x === 'string')) return raw
      return fail('must be a list of strings')
  }
}

/** Flattens a parsed TOML document to dotted keys, refusing keys the table does not have. */
function flatten (doc: Record<string, unknown>, known: Map<string, Setting>, file: string): Map<string, unknown> {
  const out = new Map<string, unknown>()
  const tables = new Set([...known.keys()].filter(k => k.includes('.')).map(k => k.split('.')[0]!))
  for (const [name, value] of Object.entries(doc)) {
    if (tables.has(name) && typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)) {
      for (const [sub, v] of Object.entries(value as Record<string, unknown>)) {
        const key = `${name}.${sub}`
        if (!known.has(key)) throw new SettingsError(`${file}: unknown key ${key}${suggest(key, known)}`)
        out.set(key, v)
      }
    } else {
      if (!known.has(name) || name.includes('.')) throw new SettingsError(`${file}: unknown key ${name}${tables.has(name) ? ` (${name} is a table: [${name}])` : suggest(name, known)}`)
      out.set(name, value)
    }
  }
  return out
}

/** Keys a mistyped one was probably meant as: the same name in another table, or its camelCase spelling, or
 * within two edits in the same table. */
function suggest (key: string, known: Map<string, Setting>): string {
  const last = key.split('.').pop()!
  const table = key.includes('.') ? key.split('.')[0] : undefined
  const near = [...known.keys()].filter(k => {
    const [kTable, kLast] = k.includes('.') ? k.split('.') as [string, string] : [undefined, k]
    if (kLast === last || kLast === kebab(last)) return true
    return kTable === table && editDistance(kLast, last) <= 2
  })
  return near.length > 0 ? ` (did you mean ${near.slice(0, 3).join(' or ')}?)` : ''
}

function editDistance (a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}

export interface ResolveInput {
  table: readonly Setting[]
  /** Flag values as node:util parseArgs gives them (strings, booleans, string arrays), by flag name. */
  flags: Record<string, unknown>
  env: Record<string, string | undefined>
  /** The config file's name and text, if one was given. */
  file?: { name: string; text: string }
}

/** Every setting that has a value from a flag, the environment or the file (defaults are the caller's). */
export function resolveSettings (input: ResolveInput): Map<string, Value> {
  const known = new Map(input.table.map(s => [s.key, s]))
  const out = new Map<string, Value>()
  if (input.file !== undefined) {
    const { name, text } = input.file
    if (text.length > CONFIG_FILE_BYTES_MAX) throw new SettingsError(`${name}: larger than ${CONFIG_FILE_BYTES_MAX} bytes`)
    let doc: Record<string, unknown>
    try {
      doc = parseToml(text) as Record<string, unknown>
    } catch (error) {
      throw new SettingsError(`${name}: not valid TOML: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`)
    }
    for (const [key, raw] of flatten(doc, known, name)) out.set(key, { value: check(known.get(key)!, raw, `${name}: ${key}`), source: 'file', where: `${name} ${key}` })
  }
  for (const setting of input.table) {
    const name = envName(setting.key)
    const raw = input.env[name]
    if (raw === undefined || raw === '') continue
    out.set(setting.key, { value: check(setting, raw, `environment ${name}`), source: 'env', where: name })
  }
  for (const setting of input.table) {
    if (setting.flag === undefined) continue
    const raw = input.flags[setting.flag]
    if (raw === undefined) continue
    const value = Array.isArray(raw) && setting.type !== 'list' ? raw[raw.length - 1] : raw
    out.set(setting.key, { value: check(setting, value, `--${setting.flag}`), source: 'flag', where: `--${setting.flag}` })
  }
  return out
}

/** node:util parseArgs options for every flag in the table, plus the ones that are not settings. */
export function flagOptions (table: readonly Setting[]): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {
    help: { type: 'boolean' },
    config: { type: 'string' },
    'print-config': { type: 'boolean' }
  }
  for (const s of table) {
    if (s.flag === undefined) continue
    options[s.flag] = s.type === 'bool' ? { type: 'boolean' } : s.type === 'list' ? { type: 'string', multiple: true } : { type: 'string' }
  }
  return options
}

/** The effective configuration as a TOML document (secrets redacted), for --print-config. */
export function renderToml (table: readonly Setting[], effective: ReadonlyMap<string, unknown>): string {
  const doc: Record<string, unknown> = {}
  for (const s of table) {
    const value = effective.get(s.key)
    if (value === undefined || value === null) continue
    const shown = s.secret === true ? '<redacted>' : value
    const parts = s.key.split('.')
    if (parts.length === 1) doc[s.key] = shown
    else ((doc[parts[0]!] ??= {}) as Record<string, unknown>)[parts[1]!] = shown
  }
  return stringifyToml(doc) + '\n'
}

/** One line per setting, for --help: file key (and its flag where the names differ), meaning, default. */
export function describeSettings (table: readonly Setting[]): string {
  return table.map(s => {
    const name = s.flag === undefined || s.flag === s.key ? s.key : `${s.key} (--${s.flag})`
    return `  ${name.padEnd(36)} ${s.help} (default ${s.shownDefault})`
  }).join('\n')
}
