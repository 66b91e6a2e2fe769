#!/usr/bin/env node
// A small client for scripts: talks to a peer's HTTP API (see `node node/kv.js --help`).
import * as fs from 'node:fs'
import { parseArgs } from 'node:util'

const HELP = `usage: node node/kv.js <get|put|del|placement> KEY [VALUE] [options]

  get KEY            print the value to stdout (exit 1 if missing; exit 3 and JSON if there are siblings)
  put KEY [VALUE]    write VALUE (or --file PATH, or stdin when neither is given)
  del KEY            delete (write a tombstone); without --context it reads the key first and deletes
                     with that read's context, so every value the read saw is replaced
  placement KEY      print the key's preference list and each replica's version (JSON)

  --peer <url>       the peer's HTTP address (default $MESHKV_PEER or http://127.0.0.1:7000)
  --context <c>      causal context from an earlier get: the write replaces what that read saw
  --show-context     print the context of the result to stderr as "context: <c>"
  --file <path>      read the value of put from a file
  --r <n>, --w <n>   quorum sizes for this request (default: the mesh's)
  --dw <n>           durable replicas (Node peers) among the write's acks (default and minimum: the
                     mesh's --durable-acks)
  --strict           primaries only (no fallbacks)
  --lww              last writer wins instead of keeping concurrent values as siblings
  --ttl <ms>         the key expires this long after its last write (put)
  --timeout-ms <ms>  give up after this long (default 30000)
  --help             this text

A peer started with an HTTP token (--http-token, --http-token-file or MESHKV_HTTP_TOKEN; required when it
listens beyond loopback) needs it on every request: set MESHKV_HTTP_TOKEN and it is sent as
"Authorization: Bearer <token>" (never on the command line, where ps and shell history would show it).

Exit codes: 0 ok, 1 not found, 2 usage, 3 siblings (get), 4 the peer refused or failed (message on stderr),
5 the peer could not be reached.`

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
if (!['get', 'put', 'del', 'delete', 'placement'].includes(command)) usage(`unknown command ${JSON.stringify(command)}`)
if (key === undefined || key === '') usage('missing KEY')
if (rest.length > 0 || (value !== undefined && command !== 'put')) usage(`unexpected argument ${JSON.stringify(rest[0] ?? value)}`)
if (value !== undefined && opts.file !== undefined) usage('give VALUE or --file, not both')

const base = (opts.peer ?? process.env.MESHKV_PEER ?? 'http://127.0.0.1:7000').replace(/\/+$/, '')
const query = new URLSearchParams()
for (const name of ['r', 'w', 'dw', 'ttl']) if (opts[name] !== undefined) query.set(name, opts[name])
if (opts.strict) query.set('strict', '1')
if (opts.lww) query.set('lww', '1')
const qs = query.size > 0 ? `?${query}` : ''
const url = `${base}/kv/${encodeURIComponent(key)}${command === 'placement' ? '/placement' : ''}${qs}`
const headers = opts.context === undefined ? {} : { 'x-meshkv-context': opts.context }
const isDelete = command === 'del' || command === 'delete'
const token = process.env.MESHKV_HTTP_TOKEN
const auth = token !== undefined && token !== '' ? { authorization: `Bearer ${token}` } : {}
Object.assign(headers, auth)
const timeoutMs = Number(opts['timeout-ms'] ?? 30000)
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) usage('--timeout-ms must be a positive integer')

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks)
}

let body
if (command === 'put') body = value !== undefined ? Buffer.from(value, 'utf8') : opts.file !== undefined ? fs.readFileSync(opts.file) : await readStdin()
const method = { get: 'GET', placement: 'GET', put: 'PUT', del: 'DELETE', delete: 'DELETE' }[command]

async function send (method, headers, body) {
  try {
    return await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) })
  } catch (error) {
    console.error(`cannot reach ${base}: ${error.cause?.message ?? error.message}`)
    process.exit(5)
  }
}

// A delete without a context would add a tombstone next to the values instead of replacing them (a
// concurrent write): read the context first.
if (isDelete && opts.context === undefined) {
  const read = await send('GET', auth)
  await read.arrayBuffer()
  const context = read.headers.get('x-meshkv-context')
  if (context !== null) headers['x-meshkv-context'] = context
}
const res = await send(method, headers, body)
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
