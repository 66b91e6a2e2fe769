#!/usr/bin/env node
// A small client for scripts: talks to a peer's HTTP API (see `node node/kv.js --help`).
import * as fs from 'node:fs'
import { parseArgs } from 'node:util'

const HELP = `usage: node node/kv.js <get|put|del|placement> KEY [VALUE] [options]
       node node/kv.js ls [PREFIX] [--limit <n>] [--cursor <c>] [--one-page] [--local] [--json]

  get KEY            print the value to stdout (exit 1 if missing; exit 3 and JSON if there are siblings)
  put KEY [VALUE]    write VALUE (or --file PATH, or stdin when neither is given)
  del KEY            delete (write a tombstone); without --context it reads the key first and deletes
                     with that read's context, so every value the read saw is replaced
  placement KEY      print the key's preference list and each replica's version (JSON)
  ls [PREFIX]        print the keys under PREFIX (all keys without it), one per line, in order, merged
                     across the mesh (GET /kv?prefix=): follows the listing's cursor page after page to
                     the end, with progress on stderr past the first 10 pages; exit 6 if some member did
                     not answer (its name on stderr: keys only it holds may be missing)

  --limit <n>        ls: keys per page, 1 to 1000 (default 1000; the peer's default is 100)
  --cursor <c>       ls: start after this cursor (printed by --one-page)
  --one-page         ls: print one page only, then "cursor: <c>" on stderr if more follow
  --local            ls: only the keys the peer itself holds
  --json             ls: print each key as a JSON string (for keys with newlines or other odd bytes)

  --peer <url>       the peer's HTTP address (default $MESHKV_PEER or http://127.0.0.1:7000)
  --context <c>      causal context from an earlier get: the write replaces what that read saw
  --show-context     print the context of the result to stderr as "context: <c>"
  --file <path>      read the value of put from a file
  --r <n>            get: replicas that must answer (default: the mesh's R)
  --w <n>            put, del: replicas that must acknowledge (default: the mesh's W)
  --dw <n>           put, del: durable replicas (Node peers) among the write's acks (default and minimum:
                     the mesh's --durable-acks)
  --strict           get, put, del: primaries only (no fallbacks)
  --lww              put, del: last writer wins instead of keeping concurrent values as siblings
  --ttl <ms>         put: the key expires this long after its last write
                     (an option a command does not take is refused)
  --timeout-ms <ms>  give up after this long (default 30000)
  --help             this text

A peer started with an HTTP token (--http-token, --http-token-file or MESHKV_HTTP_TOKEN; required when it
listens beyond loopback) needs it on every request: set MESHKV_HTTP_TOKEN and it is sent as
"Authorization: Bearer <token>" (never on the command line, where ps and shell history would show it).

Exit codes: 0 ok, 1 not found, 2 usage, 3 siblings (get), 4 the peer refused or failed (message on stderr),
5 the peer could not be reached, 6 a listing may be incomplete (ls: a member did not answer).`

function usage (message) {
  console.error(`${message}\n\n${HELP}`)
  process.exit(2)
}

let parsed
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      peer: { type: 'string' },
      context: { type: 'string' },
      'show-context': { type: 'boolean' },
      file: { type: 'string' },
      r: { type: 'string' },
      w: { type: 'string' },
      dw: { type: 'string' },
      strict: { type: 'boolean' },
      lww: { type: 'boolean' },
      ttl: { type: 'string' },
      'timeout-ms': { type: 'string' },
      limit: { type: 'string' },
      cursor: { type: 'string' },
      'one-page': { type: 'boolean' },
      local: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean' }
    }
  })
} catch (error) {
  usage(error.message)
}
const { values: opts, positionals } = parsed
if (opts.help) {
  console.log(HELP)
  process.exit(0)
}
const [command, key, value, ...rest] = positionals
if (command === undefined) usage('missing command')
const base = (opts.peer ?? process.env.MESHKV_PEER ?? 'http://127.0.0.1:7000').replace(/\/+$/, '')
const timeoutMs = Number(opts['timeout-ms'] ?? 30000)
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) usage('--timeout-ms must be a positive integer')
const token = process.env.MESHKV_HTTP_TOKEN
const auth = token !== undefined && token !== '' ? { authorization: `Bearer ${token}` } : {}
if (command === 'ls') await list(key ?? '')

/** `ls`: pages of GET /kv?prefix= until the cursor is null (or one page with --one-page). */
async function list (prefix) {
  if (value !== undefined || rest.length > 0) usage(`unexpected argument ${JSON.stringify(value ?? rest[0])}`)
  const limit = opts.limit ?? '1000'
  if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) usage('--limit must be an integer from 1 to 1000')
  let cursor = opts.cursor ?? null
  const failed = new Set()
  let pages = 0
  let keys = 0
  for (;;) {
    const query = new URLSearchParams({ prefix, limit })
    if (cursor !== null) query.set('cursor', cursor)
    if (opts.local) query.set('local', '1')
    const res = await send(`${base}/kv?${query}`, 'GET', auth)
    const text = await res.text()
    let page
    try { page = JSON.parse(text) } catch { page = null }
    if (res.status !== 200 || page === null) {
      console.error(`${res.status}: ${page?.error ?? text}`.trimEnd())
      process.exit(4)
    }
    const out = page.keys.map(k => (opts.json ? JSON.stringify(k) : k) + '\n').join('')
    // Wait for stdout to drain: a long listing piped into a slow reader must not pile up in memory.
    if (out !== '' && !process.stdout.write(out)) await new Promise(resolve => process.stdout.once('drain', resolve))
    for (const id of page.membersFailed) failed.add(id)
    pages++
    keys += page.keys.length
    cursor = page.cursor
    if (cursor === null || opts['one-page']) break
    if (pages % 10 === 0) console.error(`listed ${keys} keys in ${pages} pages...`)
  }
  if (opts['one-page'] && cursor !== null) console.error(`cursor: ${cursor}`)
  if (pages > 10) console.error(`listed ${keys} keys in ${pages} pages`)
  if (failed.size > 0) console.error(`incomplete: ${failed.size} member(s) did not answer, keys only they hold may be missing: ${[...failed].join(', ')}`)
  // Everything written reaches the reader before the exit.
  await new Promise(resolve => process.stdout.write('', resolve))
  process.exit(failed.size > 0 ? 6 : 0)
}

if (!['get', 'put', 'del', 'delete', 'placement', 'ls'].includes(command)) usage(`unknown command ${JSON.stringify(command)}`)
if (key === undefined || key === '') usage('missing KEY')
if (key === '.' || key === '..') usage(`the key ${JSON.stringify(key)} cannot be addressed over HTTP (URL parsing resolves it away); use the library`)
if (rest.length > 0 || (value !== undefined && command !== 'put')) usage(`unexpected argument ${JSON.stringify(rest[0] ?? value)}`)
if (value !== undefined && opts.file !== undefined) usage('give VALUE or --file, not both')

const isDelete = command === 'del' || command === 'delete'
// The options each command takes, as the peer's routes take their query parameters: any other is refused
// here, before anything is sent (the peer would refuse it too).
const TAKES = { get: ['r', 'strict'], put: ['w', 'dw', 'lww', 'strict', 'ttl'], del: ['w', 'dw', 'lww', 'strict'], placement: [] }
const REQUEST_OPTIONS = ['r', 'w', 'dw', 'ttl', 'strict', 'lww']
const takes = TAKES[isDelete ? 'del' : command]
const flags = names => names.map(n => `--${n}`).join(', ')
for (const name of REQUEST_OPTIONS) {
  if (opts[name] === undefined || opts[name] === false || takes.includes(name)) continue
  usage(`--${name} does not apply to ${command}: it takes ${takes.length === 0 ? `none of ${flags(REQUEST_OPTIONS)}` : flags(takes)}`)
}
function queryOf (names) {
  const query = new URLSearchParams()
  for (const name of names) {
    if (opts[name] === undefined || opts[name] === false) continue
    query.set(name, opts[name] === true ? '1' : opts[name])
  }
  return query.size > 0 ? `?${query}` : ''
}
const path = `${base}/kv/${encodeURIComponent(key)}${command === 'placement' ? '/placement' : ''}`
const url = `${path}${queryOf(takes)}`
const headers = opts.context === undefined ? {} : { 'x-meshkv-context': opts.context }
Object.assign(headers, auth)

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks)
}

let body
if (command === 'put') body = value !== undefined ? Buffer.from(value, 'utf8') : opts.file !== undefined ? fs.readFileSync(opts.file) : await readStdin()
const method = { get: 'GET', placement: 'GET', put: 'PUT', del: 'DELETE', delete: 'DELETE' }[command]

/** One request to the peer; exits 5 if it cannot be reached. */
async function send (target, method, headers, body) {
  try {
    return await fetch(target, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) })
  } catch (error) {
    console.error(`cannot reach ${base}: ${error.cause?.message ?? error.message}`)
    process.exit(5)
  }
}

// A delete without a context would add a tombstone next to the values instead of replacing them (a
// concurrent write): read the context first.
if (isDelete && opts.context === undefined) {
  // The read takes the delete's --strict (its own quorum, R, is the mesh's).
  const read = await send(`${path}${queryOf(['strict'])}`, 'GET', auth)
  await read.arrayBuffer()
  if (![200, 300, 404].includes(read.status)) {
    console.error(`${read.status}: could not read the key's context before deleting it; nothing deleted`)
    process.exit(4)
  }
  const context = read.headers.get('x-meshkv-context')
  if (context !== null) headers['x-meshkv-context'] = context
}
const res = await send(url, method, headers, body)
const context = res.headers.get('x-meshkv-context')
if (opts['show-context'] && context !== null) console.error(`context: ${context}`)
const bytes = Buffer.from(await res.arrayBuffer())
if (res.status === 200 || res.status === 204) {
  if (bytes.length > 0) process.stdout.write(bytes)
  process.exit(0)
}
if (res.status === 300) {
  process.stdout.write(bytes)
  process.exit(3)
}
let message = bytes.toString('utf8')
try { message = JSON.parse(message).error ?? message } catch { /* not JSON */ }
console.error(`${res.status}: ${message}`.trimEnd())
process.exit(res.status === 404 ? 1 : 4)
