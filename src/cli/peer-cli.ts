/**
 * `node node/peer.js`: a Node peer. `--bootstrap` starts the first peer of a mesh; `--join <multiaddr>` joins
 * one. Every peer listens on TCP and WebSockets, runs a bounded circuit relay for browser tabs (unless
 * `--no-relay`) and serves the HTTP API and the dashboard.
 * The data directory keeps the peer's identity key, its last incarnation and the peers it knew, so a
 * restarted peer comes back as itself and rejoins on its own.
 */
/* eslint-disable no-console -- this is the command-line interface */
import '../polyfills.js'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { tcp } from '@libp2p/tcp'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { lockDirectory } from '../adapters/dir-lock.js'
import { loadOrCreateKey, nextIncarnation } from '../adapters/node-identity.js'
import { consoleLogger, heapLimitBytes, storeBudgetDefaultBytes, systemClock } from '../adapters/node-env.js'
import { cryptoRng } from '../adapters/random.js'
import { FileWal } from '../adapters/wal-file.js'
import { type Durability, type StorageConfig, defaultStorageConfig, validateStorageConfig } from '../core/config.js'
import { ConfigError, errorMessage, IncompatiblePeerError, MeshkvError } from '../core/errors.js'
import { type KvConfig, N_MAX, defaultKvConfig, validateKvConfig } from '../core/kv/config.js'
import { type SwimConfig, defaultSwimConfig, validateSwimConfig } from '../core/membership/config.js'
import { DEFAULT_VNODES, VNODES_MAX } from '../core/ring/ring.js'
import { RING_HASH_SCHEME } from '../core/ring/hash.js'
import { LOCATION_CHARS_MAX, PROTOCOL_VERSION, createMeshPeer } from '../peer.js'
import { DebugService } from '../services/debug.js'
import { debugRoute } from './debug-api.js'
import { clientErrorHandler, configureHttpServer, hasBody, httpHandler } from './http-api.js'
import { HTTP_NAMES_MAX, HttpExposureError, HttpGuard, checkHttpExposure, checkHttpToken, parseCorsOrigin, parseHttpName } from './http-guard.js'
import { PeerMetrics, counterFrom } from './metrics.js'
import { CONFIG_FILE_BYTES_MAX, SettingsError, type Value, cliSwimDefaults, describeSettings, flagOptions, kebab, renderToml, resolveSettings, settingsTable } from './settings.js'

/** Bytes in a MiB (declared before HELP, which shows the default memory budget). */
const MIB = 1024 * 1024

const HELP = `usage: node node/peer.js (--bootstrap | --join <multiaddr> ...) [options]

Starts a meshkv peer. The first peer of a mesh runs with --bootstrap; others --join it (or any member).
A peer restarted from its data directory rejoins the peers it knew without --join.

  --bootstrap                 start a mesh; default listen /ip4/127.0.0.1/tcp/4001 and
                              /ip4/127.0.0.1/tcp/4002/ws, default --http 7000 (every peer serves the
                              dashboard on its HTTP address and runs a relay for browser tabs)
  --join <multiaddr>          join through this member (repeatable); printed by the peer you join
  --listen <multiaddr>        listen address (repeatable); default /ip4/127.0.0.1/tcp/0 and
                              /ip4/127.0.0.1/tcp/0/ws (any free port)
  --http <port|off>           HTTP API and dashboard on 127.0.0.1:<port>; 0 picks a free port;
                              default 7000 with --bootstrap, else 0
  --http-host <address>       interface for HTTP (default 127.0.0.1; use 0.0.0.0 to expose it). A
                              non-loopback host (anything but 127.0.0.0/8, ::1, localhost) needs a
                              token and refuses --debug-api
  --http-token <token>        every API request must carry Authorization: Bearer <token> (16..4096
                              printable characters; default none on loopback, required elsewhere);
                              prefer MESHKV_HTTP_TOKEN or --http-token-file (a command-line value
                              shows in ps and shell history). The dashboard's files stay public; open
                              it as http://<host>:<port>/#token=<token>
  --http-token-file <path>    read the token from this file (a regular file of at most 8 KiB; trailing
                              newline ignored; default none); --http-token or this file win over
                              MESHKV_HTTP_TOKEN
  --http-name <host[:port]>   another name clients reach the HTTP API by, accepted in the Host header
                              (repeatable; default: only the bound address, plus localhost on a
                              loopback bind); a name without :port matches any port. Other Hosts
                              get 403 (DNS rebinding)
  --http-cors <origin>        let pages of this origin (scheme://host[:port]) call the API from a
                              browser (repeatable; default none: browser requests from any origin but
                              the peer's own dashboard get 403)
  --data-dir <dir>            identity key, incarnation, known peers and the write-ahead log
                              (default ./meshkv-data); one peer per directory
  --n <n>                     replicas per key (default ${defaultKvConfig().n}, 1..${N_MAX}); the same on every peer:
                              members refuse a peer with another N (both log both values), and a
                              joining peer that every member it reaches refuses exits with status 1
  --r <n>                     replies a read waits for (default ${defaultKvConfig().r})
  --w <n>                     acknowledgements a write waits for (default ${defaultKvConfig().w})
  --strict-quorum             count primaries only: no fallbacks, no hinted handoff (default sloppy)
  --location <zone/rack/host> where this peer lives, its failure domain (default: the host name, so
                              peers on one machine share one); each key's replicas go to distinct
                              locations first
  --min-durable <n>           durable members (Node peers, not tabs) among each key's N replicas
                              (default ${defaultKvConfig().minDurable}, capped by how many there are); the same on every
                              peer, refused like a different --n
  --leave-grace-ms <ms>       a tab that announced its leave is down at once but keeps its ring tokens
                              this long (fallbacks hold its share), so a reload or the page opened
                              again moves no range (default ${defaultKvConfig().leaveGraceMs}; 0: it leaves the ring at once)
  --durable-acks <n>          durable replicas that must have made a write durable before it is
                              acknowledged, besides W (default ${defaultKvConfig().durableAcks}; a request may raise it with ?dw=);
                              with none up, writes fail with 503 ERR_NO_DURABLE_REPLICA; the same on
                              every peer, refused like a different --n
  --hedge-multiplier <x>      a replica that has not answered after x times its p99 round trip (within
                              ${defaultKvConfig().hedgeMinMs}..${defaultKvConfig().hedgeMaxMs} ms) gets a stand-in: the next member by placement
                              (default ${defaultKvConfig().hedgeMultiplier}; 0 turns hedging off)
  --durability <sync|async>   when a replica acknowledges: sync = after fdatasync (default), async =
                              at once, may lose the last writes on a crash
  --sync-interval-ms <ms>     anti-entropy period (default ${defaultKvConfig().syncIntervalMs})
  --tombstone-grace-ms <ms>   age before a fully replicated tombstone is reaped (default ${defaultKvConfig().tombstoneGraceMs})
  --memory-max-mb <n>         memory budget of the store (keys, values and per-key overhead, estimated):
                              past it writes fail with 507 ERR_STORE_FULL while reads and deletes go
                              on, merges from replicas are taken up to 25% more, and a restart whose
                              log holds more stops with a clear message (default ${memoryMaxMbDefault()},
                              half of V8's heap limit; raise the heap with node --max-old-space-size)
  --sweep-period-ms <ms>      TTL sweep period: a key (a heartbeat) expires between its TTL and its TTL
                              plus two periods after its last write (default ${defaultStorageConfig().sweepPeriodMs})
  --mesh-key <secret>         make the mesh private: peers must prove they know this secret; prefer
                              MESHKV_MESH_KEY (a command-line value shows in ps and shell history);
                              without a key the mesh is open to anyone who can reach it
  --vnodes <n>                ring tokens this peer owns (default ${DEFAULT_VNODES}, 1..${VNODES_MAX})
  --relay-reservations <n>    browser tabs this peer's circuit relay serves at once (default 128,
                              1..10000); each tab holds reservations on two relays and signals WebRTC
                              to other tabs through them
  --no-relay                  run no circuit relay (tabs then use other peers' relays)
  --ice-server <url>          STUN/TURN server for WebRTC across NATs (repeatable; default none)
  --webrtc-bind <address>     gather WebRTC (ICE) candidates only on this interface, e.g. 127.0.0.1
                              (default: all interfaces)
  --probe-interval-ms <ms>    SWIM probe period (default ${defaultSwimConfig().probeIntervalMs})
  --probe-timeout-ms <ms>     SWIM direct-ack timeout (default ${defaultSwimConfig().probeTimeoutMs})
  --suspicion-mult <n>        SWIM suspicion timeout multiplier (default ${defaultSwimConfig().suspicionMult})
  --gossip-interval-ms <ms>   SWIM gossip period (default ${defaultSwimConfig().gossipIntervalMs})
  --push-pull-interval-ms <ms> SWIM full-state exchange period (default ${defaultSwimConfig().pushPullIntervalMs})
  --debug-api                 enable the chaos panel on the dashboard and its HTTP routes (POST
                              /debug/block?peer=<id>, /debug/unblock?peer=<id>, /debug/partition?peer=<id>,
                              /debug/heal, /debug/members/<id>/<block|unblock|heal|leave|kill>, /debug/stall?ms=<n>: block this
                              peer's event loop n ms, at most 60000, /debug/gc: full garbage collections, then this
                              process's memory figures), the
                              /meshkv/debug/1.0.0 protocol through which other debug peers act on this
                              one, and /meshkv/echo/1.0.0 (benchmark baseline); never in production;
                              refused (the peer does not start) with a non-loopback --http-host
  --config <file.toml>        read settings from this TOML file (or MESHKV_CONFIG; a regular file of at
                              most 1 MiB); every flag and every
                              storage, replication and SWIM option has a key (listed below); flags win
                              over the environment, which wins over the file
  --print-config              print the effective configuration as TOML (secrets redacted) and exit
  --help                      this text

HTTP: GET/PUT/DELETE /kv/<key> (context in the X-Meshkv-Context header; 300 with JSON siblings),
GET /kv/<key>/placement, GET /kv?prefix=<p>&limit=<1..1000, default 100>&cursor=<c>[&local=1] (a page of
keys, mesh-wide or this peer's; follow "cursor" until null), PUT /heartbeat/<service>?ttl=<ms>,
GET /services, GET /watch?prefix=<p> (SSE),
GET /ring, GET /members, GET /stats, GET /metrics (Prometheus text format), GET /health, GET /api/info,
GET / (dashboard). A query parameter a route does not take is refused (400 ERR_CONFIG). Writes are PUT and
DELETE; a POST (debug routes only) needs Content-Type application/json or application/octet-stream.
Refused: a foreign Host or Origin (403 ERR_FORBIDDEN_HOST / ERR_FORBIDDEN_ORIGIN), a form-type POST
(415 ERR_FORM_POST), a missing or wrong token (401 ERR_UNAUTHORIZED); counted in GET /stats "http"
and /metrics (meshkv_http_refusals_total).
Members must agree on --n, --min-durable, --durable-acks, the protocol version and the ring hash scheme; refusals are
logged once per member and counted in GET /stats (swim.incompatible).
SIGINT or SIGTERM leaves the mesh gracefully (others list this peer as "left", not "dead").`

/** With --debug-api: echoes bytes back, the raw libp2p request/reply baseline of `npm run bench -- kv`. */
export const ECHO_PROTOCOL = '/meshkv/echo/1.0.0'

/** Longest a graceful shutdown (leave announcement, data handoff, stopping libp2p) may take before the process
 * exits; keys not handed off by then are restored on their new owners by anti-entropy from other replicas. */
const SHUTDOWN_TIMEOUT_MS = 60_000

/** The store's default budget in MiB (storeBudgetDefaultBytes: half of V8's heap limit). */
export function memoryMaxMbDefault (): number {
  return Math.floor(storeBudgetDefaultBytes() / MIB)
}

/** V8's heap limit in MiB: the most --memory-max-mb may be. */
function heapLimitMb (): number {
  return Math.floor(heapLimitBytes() / MIB)
}

/** Reservations (tabs) a Node peer's circuit relay holds at once unless --relay-reservations says otherwise. */
export const RELAY_RESERVATIONS_DEFAULT = 128

/**
 * Answers requests that arrive while the peer starts (the HTTP port is bound first, to publish its address,
 * and a large log can take a while to replay): 503 ERR_STARTING with Retry-After, the body of any upload
 * left unread (the connection closes after the answer).
 */
export function startingHandler (req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(503, { 'content-type': 'application/json', 'cache-control': 'no-store', 'retry-after': '1', ...(hasBody(req) ? { connection: 'close' } : {}) })
  res.end(JSON.stringify({ error: 'the peer is starting: try again in a moment', code: 'ERR_STARTING' }) + '\n')
}

class UsageError extends Error {
  override name = 'UsageError'
}

function readKnownPeers (file: string): Multiaddr[] {
  try {
    const list = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown
    if (!Array.isArray(list)) return []
    return list.filter((a): a is string => typeof a === 'string').slice(0, 64).flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
  } catch {
    return []
  }
}

export async function main (argv: string[]): Promise<void> {
  let config: CliConfig
  try {
    config = configure(argv, process.env)
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(`${HELP}\n\n${settingsHelp()}`)
      return
    }
    const usage = error instanceof UsageError || error instanceof SettingsError || error instanceof TypeError
    console.error(`${errorMessage(error)}\n\n${usage ? 'run with --help for usage' : ''}`.trimEnd())
    process.exit(2)
  }
  if (config.printConfig) {
    process.stdout.write(renderToml(settingsTable(shownDefaults()), effectiveSettings(config)))
    return
  }
  try {
    await run(config)
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\nrun with --help for usage`)
      process.exit(2)
    }
    // Anything else that stops a start (a port in use, an address that cannot be bound) gets one clear
    // line too; the stack only with MESHKV_DEBUG.
    const code = (error as NodeJS.ErrnoException).code
    console.error(`error: ${errorMessage(error)}${code === 'EADDRINUSE' ? ' (another process is using that port: pick another with --http / --listen)' : ''}`)
    if (process.env.MESHKV_DEBUG !== undefined && process.env.MESHKV_DEBUG !== '' && !(error instanceof MeshkvError)) console.error(error)
    process.exit(1)
  }
}

class HelpRequested extends Error {}

function shownDefaults (): { memoryMaxMb: number; relayReservations: number } {
  return { memoryMaxMb: memoryMaxMbDefault(), relayReservations: RELAY_RESERVATIONS_DEFAULT }
}

/** The --help section generated from the settings table: every key, its default and its meaning. */
function settingsHelp (): string {
  return `Configuration: every setting below can also come from a TOML file (--config <file>, keys as listed;
kv.*, storage.* and swim.* in tables [kv], [storage], [swim]) or from the environment (MESHKV_ and the key
in upper snake case: MESHKV_HTTP_HOST, MESHKV_KV_N, MESHKV_STORAGE_VALUE_BYTES_MAX; lists comma-separated).
Precedence: flags, then the environment, then the file, then the defaults. --print-config prints the
effective configuration as TOML (secrets redacted) and exits.

${describeSettings(settingsTable(shownDefaults()))}`
}

/** Everything a Node peer is started with, resolved from flags, environment, file and defaults. */
export interface CliConfig {
  printConfig: boolean
  /** Where each explicitly set value came from (--n, MESHKV_KV_N, meshkv.toml kv.n). */
  where: ReadonlyMap<string, string>
  bootstrap: boolean
  dataDir: string
  vnodes: number
  relay: boolean
  reservations: number
  httpPort: number | null
  httpHost: string
  httpSecurity: { token: string | undefined; tokenFile: string | undefined; names: string[]; cors: string[] }
  meshKey: string | undefined
  listen: string[]
  join: Multiaddr[]
  iceServers: string[]
  webrtcBind: string | undefined
  location: string
  debugApi: boolean
  swim: SwimConfig
  kv: KvConfig
  storage: StorageConfig
  memoryMaxMb: number
}

/**
 * Resolves the command line, the environment and the config file (settings.ts) into a CliConfig, checking
 * every value and naming the key and where it came from when one is wrong. Reads nothing but the config
 * and token files; starts nothing.
 */
export function configure (argv: string[], env: Record<string, string | undefined>): CliConfig {
  const table = settingsTable(shownDefaults())
  let flags: Record<string, unknown>
  try {
    ({ values: flags } = parseArgs({ args: argv, options: flagOptions(table), strict: true, allowPositionals: false }))
  } catch (error) {
    throw new UsageError(errorMessage(error))
  }
  if (flags.help === true) throw new HelpRequested()
  const configFile = (flags.config as string | undefined) ?? (env.MESHKV_CONFIG === '' ? undefined : env.MESHKV_CONFIG)
  let file: { name: string; text: string } | undefined
  if (configFile !== undefined) {
    try {
      file = { name: configFile, text: readBoundedFile(configFile, CONFIG_FILE_BYTES_MAX).text }
    } catch (error) {
      throw new UsageError(`--config ${configFile}: ${errorMessage(error)}`)
    }
  }
  const values = resolveSettings({ table, flags, env, ...(file === undefined ? {} : { file }) })
  const where = new Map([...values].map(([key, v]) => [key, v.where]))
  const get = <T>(key: string): T | undefined => values.get(key)?.value as T | undefined
  const named = (key: string): string => where.get(key) ?? key
  const fail = (key: string, message: string): never => { throw new UsageError(`${named(key)}: ${message}`) }

  const bootstrap = get<boolean>('bootstrap') ?? false
  const relay = !(get<boolean>('no-relay') ?? false)
  if (!relay && values.has('relay-reservations')) throw new UsageError(`${named('relay-reservations')} and ${named('no-relay')} contradict each other`)
  const httpRaw = get<string>('http')
  let httpPort: number | null
  if (httpRaw === 'off') httpPort = null
  else if (httpRaw === undefined) httpPort = bootstrap ? 7000 : 0
  else {
    httpPort = Number(httpRaw)
    if (!/^\d+$/.test(httpRaw) || httpPort > 65535) fail('http', `must be a port in [0, 65535] or off, got ${JSON.stringify(httpRaw)}`)
  }
  const httpHost = get<string>('http-host') ?? '127.0.0.1'
  if (httpHost === '') fail('http-host', 'must not be empty (127.0.0.1 for this machine only, 0.0.0.0 for every interface)')
  const meshKey = get<string>('mesh-key')
  if (meshKey === '') fail('mesh-key', 'must not be empty (omit it for an open mesh)')
  const join = (get<string[]>('join') ?? []).map(a => {
    try { return multiaddr(a) } catch { return fail('join', `${JSON.stringify(a)} is not a multiaddr (expected e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...)`) }
  })
  const location = get<string>('location') ?? os.hostname()
  if (location === '' || location.length > LOCATION_CHARS_MAX) fail('location', `must be 1 to ${LOCATION_CHARS_MAX} characters, got ${JSON.stringify(location)}`)
  const debugApi = get<boolean>('debug-api') ?? false

  // The configs of the core: defaults, then every key set; the core's validation names the field, which is
  // mapped back to its key and where its value came from.
  const section = <T extends object>(name: string, defaults: T): T => {
    const out: Record<string, unknown> = { ...defaults as Record<string, unknown> }
    for (const field of Object.keys(defaults)) {
      const v = get(`${name}.${kebab(field)}`)
      if (v !== undefined) out[field] = v
    }
    return out as T
  }
  const validated = <T>(name: string, check: () => T): T => {
    try {
      return check()
    } catch (error) {
      if (error instanceof ConfigError) throw new UsageError(`${named(`${name}.${kebab(error.field)}`)}: ${error.reason}`)
      throw error
    }
  }
  const swim = section('swim', cliSwimDefaults())
  if (!values.has('swim.probe-timeout-ms')) swim.probeTimeoutMs = Math.min(swim.probeTimeoutMs, swim.probeIntervalMs)
  validated('swim', () => validateSwimConfig(swim))
  const kv = section('kv', defaultKvConfig())
  if (!values.has('kv.r')) kv.r = Math.min(kv.r, kv.n)
  if (!values.has('kv.w')) kv.w = Math.min(kv.w, kv.n)
  validated('kv', () => validateKvConfig(kv))
  const heapMb = heapLimitMb()
  const memoryMaxMb = get<number>('storage.memory-max-mb') ?? memoryMaxMbDefault()
  if (memoryMaxMb > heapMb) fail('storage.memory-max-mb', `must be at most the heap limit, ${heapMb} MB (raise it with node --max-old-space-size), got ${memoryMaxMb}`)
  const storage = section('storage', { ...defaultStorageConfig(), memoryBytesMax: memoryMaxMb * MIB })
  validated('storage', () => validateStorageConfig(storage))

  const config: CliConfig = {
    printConfig: flags['print-config'] === true,
    where,
    bootstrap,
    dataDir: path.resolve(get<string>('data-dir') ?? 'meshkv-data'),
    vnodes: get<number>('vnodes') ?? DEFAULT_VNODES,
    relay,
    reservations: get<number>('relay-reservations') ?? RELAY_RESERVATIONS_DEFAULT,
    httpPort,
    httpHost,
    httpSecurity: { token: undefined, tokenFile: get<string>('http-token-file'), names: [], cors: [] },
    meshKey,
    listen: get<string[]>('listen') ?? (bootstrap ? ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/4002/ws'] : ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']),
    join,
    iceServers: get<string[]>('ice-server') ?? [],
    webrtcBind: get<string>('webrtc-bind'),
    location,
    debugApi,
    swim,
    kv,
    storage,
    memoryMaxMb
  }
  config.httpSecurity = httpOptions(values, config)
  return config
}

/** Every setting's effective value, by key, for --print-config (the token file's contents are not read into it). */
function effectiveSettings (c: CliConfig): Map<string, unknown> {
  const out = new Map<string, unknown>([
    ['bootstrap', c.bootstrap],
    ['join', c.join.map(String)],
    ['listen', c.listen],
    ['http', c.httpPort === null ? 'off' : String(c.httpPort)],
    ['http-host', c.httpHost],
    ['http-token', c.httpSecurity.token],
    ['http-token-file', c.httpSecurity.tokenFile],
    ['http-name', c.httpSecurity.names],
    ['http-cors', c.httpSecurity.cors],
    ['data-dir', c.dataDir],
    ['mesh-key', c.meshKey],
    ['location', c.location],
    ['vnodes', c.vnodes],
    ['relay-reservations', c.reservations],
    ['no-relay', !c.relay],
    ['ice-server', c.iceServers],
    ['webrtc-bind', c.webrtcBind],
    ['debug-api', c.debugApi]
  ])
  for (const [name, config] of [['kv', c.kv], ['storage', c.storage], ['swim', c.swim]] as const) {
    for (const [field, value] of Object.entries(config)) if (field !== 'memoryBytesMax') out.set(`${name}.${kebab(field)}`, value)
  }
  out.set('storage.memory-max-mb', c.memoryMaxMb)
  return out
}

/**
 * The HTTP API's security settings, checked before anything is bound or written: a token (flag, file or
 * MESHKV_HTTP_TOKEN), the extra Host names and the CORS origins; a non-loopback host without a token, or
 * with --debug-api, stops the start (http-guard.ts, checkHttpExposure).
 */
function httpOptions (values: ReadonlyMap<string, Value>, c: CliConfig): CliConfig['httpSecurity'] {
  try {
    const tokenValue = values.get('http-token')
    const tokenFile = values.get('http-token-file')
    // The token file wins over a token from the environment; a token and a file given both otherwise clash.
    if (tokenValue !== undefined && tokenFile !== undefined && tokenValue.source !== 'env') throw new UsageError(`give ${tokenValue.where} or ${tokenFile.where}, not both`)
    let token: string | undefined
    if (tokenFile !== undefined) token = checkHttpToken(readTokenFile(tokenFile.value as string, tokenFile.where), `${tokenFile.where} ${tokenFile.value as string}`)
    else if (tokenValue !== undefined) token = checkHttpToken(tokenValue.value as string, tokenValue.where)
    const names = ((values.get('http-name')?.value as string[] | undefined) ?? []).map(parseHttpName)
    const cors = [...new Set(((values.get('http-cors')?.value as string[] | undefined) ?? []).map(parseCorsOrigin))]
    if (names.length > HTTP_NAMES_MAX || cors.length > HTTP_NAMES_MAX) throw new UsageError(`at most ${HTTP_NAMES_MAX} --http-name and ${HTTP_NAMES_MAX} --http-cors values`)
    if (c.httpPort !== null) checkHttpExposure({ host: c.httpHost, token, debugApi: c.debugApi })
    return { token, tokenFile: tokenFile?.value as string | undefined, names, cors }
  } catch (error) {
    if (error instanceof HttpExposureError) throw new UsageError(error.message)
    throw error
  }
}

/** The most a --http-token-file may hold: a token is at most 4096 characters, plus a line ending. */
const TOKEN_FILE_BYTES_MAX = 8192

/**
 * A regular file's text and mode bits, refused past `maxBytes`: size and mode are read from the open file,
 * and a FIFO or device (whose size reads 0, and which could be read for ever) is refused outright.
 */
function readBoundedFile (file: string, maxBytes: number): { text: string; mode: number } {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const stat = fs.fstatSync(fd)
    if (!stat.isFile()) throw new Error('not a regular file')
    if (stat.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`)
    const buffer = Buffer.alloc(maxBytes + 1)
    let length = 0
    for (let n = -1; n !== 0 && length <= maxBytes;) { n = fs.readSync(fd, buffer, length, buffer.length - length, null); length += n }
    if (length > maxBytes) throw new Error(`larger than ${maxBytes} bytes`)
    return { text: buffer.toString('utf8', 0, length), mode: stat.mode }
  } finally {
    fs.closeSync(fd)
  }
}

function readTokenFile (file: string, where: string): string {
  let text: string
  try {
    const read = readBoundedFile(file, TOKEN_FILE_BYTES_MAX)
    text = read.text
    // Like ssh with its keys: a token others on this machine can read is not a secret.
    if ((read.mode & 0o077) !== 0) console.error(`warning: ${where} ${file} is readable by other users (chmod 600 it)`)
  } catch (error) {
    throw new UsageError(`${where} ${file}: ${errorMessage(error)}`)
  }
  return text.replace(/\r?\n$/, '')
}

async function run (config: CliConfig): Promise<void> {
  const log = consoleLogger('meshkv')
  const { bootstrap, dataDir, vnodes, relay, reservations, httpPort, httpHost, httpSecurity, meshKey, listen, swim, kv, location, memoryMaxMb } = config
  const joinAddrs = config.join
  const durability: Durability = config.storage.durability
  const blocked = new Set<string>()

  fs.mkdirSync(dataDir, { recursive: true })
  const unlock = lockDirectory(dataDir)
  const knownFile = path.join(dataDir, 'known-peers.json')
  const known = readKnownPeers(knownFile)
  if (!bootstrap && joinAddrs.length === 0 && known.length === 0) {
    unlock()
    throw new UsageError('nothing to join: pass --bootstrap to start a mesh, or --join <multiaddr> of a member')
  }
  const privateKey = await loadOrCreateKey(path.join(dataDir, 'peer.key'))
  const incarnation = nextIncarnation(path.join(dataDir, 'incarnation'))

  const webRoot = fileURLToPath(new URL('../../web/', import.meta.url))
  let httpUrl: string | undefined
  let server: http.Server | null = null
  let guard: HttpGuard | null = null
  if (httpPort !== null) {
    // The server starts before the peer so its address can be published in the peer's metadata.
    const pending = http.createServer()
    configureHttpServer(pending)
    // Until the peer is up (its log replayed, libp2p started) every request gets a 503 to retry, not silence.
    pending.on('request', startingHandler)
    await new Promise<void>((resolve, reject) => { pending.once('error', reject); pending.listen(httpPort, httpHost, resolve) })
    const address = pending.address() as { port: number }
    httpUrl = `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${address.port}`
    server = pending
    const g = guard = new HttpGuard({ bindHost: httpHost, port: address.port, names: httpSecurity.names, corsOrigins: httpSecurity.cors, ...(httpSecurity.token === undefined ? {} : { token: httpSecurity.token }) })
    pending.on('clientError', clientErrorHandler(code => { g.noteError(code) }))
  }

  // Made before the peer: the WAL and the KV service report into it from their first operation.
  const metrics = new PeerMetrics()
  const peer = await createMeshPeer({
    kind: 'node',
    privateKey,
    listen,
    extraTransports: [tcp()],
    ...(relay ? { relayServer: { maxReservations: reservations } } : {}),
    ...(config.iceServers.length === 0 ? {} : { iceServers: config.iceServers.map(urls => ({ urls })) }),
    ...(config.webrtcBind === undefined ? {} : { webrtcBindAddress: config.webrtcBind }),
    swim,
    incarnation,
    vnodes,
    location,
    durable: true,
    ...(meshKey === undefined ? {} : { meshKey }),
    ...(httpUrl === undefined ? {} : { http: httpUrl }),
    clock: systemClock,
    rng: cryptoRng,
    log,
    wal: new FileWal(path.join(dataDir, 'wal'), { observeSyncMs: metrics.observeSyncMs }),
    observeOp: metrics.observeOp,
    storage: config.storage,
    kv,
    ...(config.debugApi ? { blocked } : {})
  })

  metrics.attach(peer, relay ? { relayReservationsMax: reservations } : {})
  if (guard !== null) {
    const g = guard
    counterFrom(metrics.registry, 'meshkv_http_refusals_total', 'HTTP requests refused before any route (foreign Host or Origin, form-type POST, missing token), by code', () => g.stats().refusals, 'code')
    counterFrom(metrics.registry, 'meshkv_http_errors_total', 'HTTP requests a route answered with a 4xx (bad input: key, value, query, context, method), by code', () => g.stats().errors, 'code')
  }

  let debug: DebugService | null = null
  if (config.debugApi) {
    const hangUp = async (target: string): Promise<void> => { try { await peer.libp2p.hangUp(peerIdFromString(target)) } catch { /* not connected */ } }
    debug = new DebugService(peer.libp2p, id => peer.membership.isUp(id) || peer.members().some(m => m.id === id && m.state !== 'left'), {
      block: async target => { blocked.add(target); await hangUp(target); return [...blocked] },
      unblock: async target => { blocked.delete(target); return [...blocked] },
      heal: async () => { blocked.clear(); return [] },
      leave: () => { shutdown('debug API leave') },
      kill: () => { console.log('debug API kill: SIGKILL to myself'); process.kill(process.pid, 'SIGKILL') }
    }, log)
    await debug.start()
    // A raw request/reply baseline for benchmarks: echoes every byte back on the same stream.
    await peer.libp2p.handle(ECHO_PROTOCOL, stream => {
      stream.addEventListener('message', event => { if (!stream.send(event.data)) stream.pause(); else stream.resume() })
      stream.addEventListener('drain', () => { stream.resume() })
    }, { maxInboundStreams: 4 })
  }

  const info = (): unknown => ({
    id: peer.id,
    kind: 'node',
    bootstrap,
    incarnation: peer.membership.swim.incarnation,
    multiaddrs: peer.libp2p.getMultiaddrs().map(String),
    // What a browser tab dials to join: this peer's WebSocket addresses.
    browserBootstrap: peer.libp2p.getMultiaddrs().map(String).filter(a => a.includes('/ws')),
    meshPrivate: meshKey !== undefined,
    // What every member must share (src/core/agreement.ts).
    mesh: { n: kv.n, minDurable: kv.minDurable, durableAcks: kv.durableAcks, proto: PROTOCOL_VERSION, ring: RING_HASH_SCHEME },
    debugApi: debug !== null,
    swim: peer.membership.stats,
    discovery: { received: peer.discovery.received, dropped: peer.discovery.dropped },
    memory: process.memoryUsage()
  })
  if (server !== null && guard !== null) {
    server.off('request', startingHandler)
    server.on('request', httpHandler({
      peer,
      webRoot,
      info,
      metrics,
      guard,
      ...(config.debugApi
        ? {
            extra: async (req, url, send, res) => await debugRoute(peer, debug!, req, url, send, res)
          }
        : {})
    }))
  }

  // Remember where to rejoin: the addresses given now at once, then live members' addresses as they change.
  const saveKnown = (addrs: string[]): void => {
    try {
      fs.writeFileSync(`${knownFile}.tmp`, JSON.stringify(addrs, null, 2))
      fs.renameSync(`${knownFile}.tmp`, knownFile)
    } catch (error) {
      log.warn(`cannot save known peers to ${knownFile}: ${errorMessage(error)}`)
    }
  }
  if (joinAddrs.length > 0) saveKnown([...new Set([...joinAddrs, ...known].map(String))].slice(0, 64))
  // Too many siblings, a failed compaction: the operator should see these.
  peer.on('warning', w => { log.warn(w.message) })
  let saveTimer: ReturnType<typeof setTimeout> | null = null
  peer.events.on('change', ({ member, previous }) => {
    log.info(`member ${member.id} ${previous ?? 'new'} -> ${member.state} (incarnation ${member.incarnation}, ${String(member.meta.kind ?? '?')})`)
    saveTimer ??= setTimeout(() => {
      saveTimer = null
      const addrs = peer.members().filter(m => m.id !== peer.id && m.state === 'alive').flatMap(m => String(m.meta.addrs ?? '').split(' ').filter(a => a !== '' && !a.includes('/p2p-circuit')).slice(0, 1)).slice(0, 64)
      if (addrs.length > 0) saveKnown(addrs)
    }, 1000)
  })

  console.log(`meshkv peer ${peer.id} (node${bootstrap ? ', bootstrap' : ''}${relay ? `, relay for ${reservations} tabs` : ', no relay'}, incarnation ${incarnation})`)
  for (const ma of peer.libp2p.getMultiaddrs()) console.log(`listening: ${ma.toString()}`)
  if (httpUrl !== undefined) {
    console.log(`http: ${httpUrl}  (dashboard: ${httpUrl}/${httpSecurity.token === undefined ? '' : '#token=<token>'})`)
    console.log(`http security: ${httpSecurity.token === undefined ? 'no token (loopback only)' : 'bearer token required'}; browser requests only from this peer's own origin${httpSecurity.cors.length === 0 ? '' : ` and ${httpSecurity.cors.join(', ')}`}`)
  }
  console.log(meshKey === undefined
    ? 'mesh: open — no --mesh-key, so any peer that can reach this one may join'
    : 'mesh: private — peers must prove knowledge of the mesh key')
  console.log(`memory: store budget ${memoryMaxMb} MB (${Math.round(peer.engine.memoryBytes / MIB)} MB held), heap limit ${heapLimitMb()} MB`)
  console.log(`replication: N=${kv.n} R=${kv.r} W=${kv.w}${kv.strictQuorum ? ' strict' : ' sloppy'} quorum, ${durability} durability`)
  // Last of the start-up lines: scripts and tests take it as "started".
  console.log(`data: ${dataDir} (${peer.engine.size} keys recovered${peer.engine.recovery === null ? '' : `, ${peer.engine.recovery.records} log records replayed, ${peer.engine.recovery.superseded} superseded`})`)

  let leaving = false
  const shutdown = (signal: string): void => {
    if (leaving) {
      console.log(`${signal} again: exiting now`)
      process.exit(1)
    }
    leaving = true
    console.log(`${signal}: leaving the mesh`)
    void (async () => {
      // Bounded: if stopping libp2p hangs (a transport that will not let go), exit anyway.
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        peer.leave({
          progress: (done, total) => { if (done === total || done % 10_000 < 256) console.log(`handing off: ${done}/${total} keys`) }
        }).then(r => { console.log(`handed off ${r.delivered} key copies${r.failed > 0 ? `, ${r.failed} failed` : ''}`) }, error => { log.error('leave failed', error) }),
        new Promise(resolve => {
          timer = setTimeout(() => {
            console.log(`leave did not finish within ${SHUTDOWN_TIMEOUT_MS / 1000} s: exiting; other replicas' anti-entropy restores what was not handed off`)
            resolve(undefined)
          }, SHUTDOWN_TIMEOUT_MS)
        })
      ])
      clearTimeout(timer)
      server?.close()
      unlock()
      console.log('left')
      process.exit(0)
    })()
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })

  const seeds = [...joinAddrs, ...known.filter(k => !joinAddrs.some(j => j.equals(k)))]
  if (seeds.length > 0) {
    console.log(`joining through ${seeds.length} address(es)…`)
    peer.join(seeds).then(
      () => { console.log(`joined: ${peer.members().filter(m => m.state === 'alive').length} members alive`) },
      error => {
        if (!(error instanceof IncompatiblePeerError)) { log.error('join failed', error); return }
        // A peer the mesh refuses would only serve a ring of its own: stop rather than retry, so the operator
        // (or a supervisor's restart loop, or a rolling deploy's health check) sees it at once.
        console.error(`error: join refused: ${error.message}. Restart this peer with the mesh's settings; exiting`)
        let timer: ReturnType<typeof setTimeout> | undefined
        void Promise.race([peer.stop().catch(() => {}), new Promise(resolve => { timer = setTimeout(resolve, 10_000) })]).finally(() => {
          clearTimeout(timer)
          server?.close()
          unlock()
          process.exit(1)
        })
      }
    )
  }
}
