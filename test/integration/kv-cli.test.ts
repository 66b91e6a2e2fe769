/**
 * `node node/kv.js`, the scripts' client, against a real peer: each command, the value from an argument, a
 * file or stdin, the context round trip that resolves siblings, and every documented exit code.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PeerProcess, peerGroup } from '../helpers/peers.js'

const group = peerGroup('meshkv-kv-cli-', ['--n', '1', '--r', '1', '--w', '1'])
let peer: PeerProcess
beforeAll(async () => { peer = await group.start('one', ['--bootstrap']) }, 60_000)
afterAll(async () => { await group.stopAll() })

interface Result { code: number | null; stdout: string; stderr: string }

/** Runs kv.js with `args` against the peer (MESHKV_PEER), feeding `stdin`; bounded to 60 s. */
function kv (args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['node/kv.js', ...args], { env: { ...process.env, MESHKV_PEER: peer.http, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`kv.js ${args.join(' ')} did not finish within 60 s`)) }, 60_000)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }) })
    child.stdin.end(options.stdin ?? '')
  })
}

describe('node node/kv.js', () => {
  it('puts from an argument, a file and stdin, gets, and deletes', async () => {
    expect((await kv(['put', 'cli:arg', 'from an argument'])).code).toBe(0)
    const file = path.join(group.root, 'value.bin')
    fs.writeFileSync(file, Buffer.from([0, 1, 2, 255]))
    expect((await kv(['put', 'cli:file', '--file', file])).code).toBe(0)
    expect((await kv(['put', 'cli:stdin'], { stdin: 'from stdin' })).code).toBe(0)
    expect(await kv(['get', 'cli:arg'])).toMatchObject({ code: 0, stdout: 'from an argument' })
    expect(await kv(['get', 'cli:stdin'])).toMatchObject({ code: 0, stdout: 'from stdin' })
    const binary = await new Promise<Buffer>((resolve, reject) => {
      const child = spawn(process.execPath, ['node/kv.js', 'get', 'cli:file'], { env: { ...process.env, MESHKV_PEER: peer.http } })
      const out: Buffer[] = []
      child.stdout.on('data', (c: Buffer) => out.push(c))
      child.on('error', reject)
      child.on('close', () => { resolve(Buffer.concat(out)) })
    })
    expect([...binary]).toEqual([0, 1, 2, 255])
    // Each command sends only the options it takes: a delete's --w is not on its read of the context.
    expect((await kv(['del', 'cli:arg', '--w', '1', '--dw', '1', '--lww', '--strict'])).code).toBe(0)
    expect(await kv(['get', 'cli:arg'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^404: deleted/) })
    expect(await kv(['get', 'cli:never-written'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^404: not found/) })
  })

  it('shows siblings with exit 3 and resolves them with the context of a read', async () => {
    expect((await kv(['put', 'cli:sib', 'one'])).code).toBe(0)
    expect((await kv(['put', 'cli:sib', 'two'])).code).toBe(0)
    const both = await kv(['get', 'cli:sib', '--show-context'])
    expect(both.code).toBe(3)
    const siblings = (JSON.parse(both.stdout) as { siblings: Array<{ value: string }> }).siblings.map(s => s.value).sort()
    expect(siblings).toEqual(['one', 'two'])
    const context = /^context: (\S+)$/m.exec(both.stderr)?.[1]
    expect(context).toBeDefined()
    expect((await kv(['put', 'cli:sib', 'resolved', '--context', context!])).code).toBe(0)
    expect(await kv(['get', 'cli:sib'])).toMatchObject({ code: 0, stdout: 'resolved' })
  })

  it('prints a key\'s placement as JSON', async () => {
    const result = await kv(['placement', 'cli:stdin'])
    expect(result.code).toBe(0)
    const placement = JSON.parse(result.stdout) as { key: string; primaries: string[] }
    expect(placement.key).toBe('cli:stdin')
    expect(placement.primaries).toEqual([peer.id])
  })

  it('exits 2 on bad usage, 4 when the peer refuses, 5 when it cannot be reached', async () => {
    for (const args of [[], ['frobnicate', 'k'], ['get'], ['get', 'k', 'extra'], ['put', 'k', 'v', '--file', 'x'], ['get', 'k', '--timeout-ms', '-1'], ['get', 'k', '--no-such-flag']]) {
      const result = await kv(args)
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(/usage: node node\/kv\.js/)
    }
    // An option the command does not take is refused before anything is sent.
    for (const args of [['get', 'k', '--w', '1'], ['put', 'k', 'v', '--r', '1'], ['del', 'k', '--ttl', '5000'], ['placement', 'k', '--strict']]) {
      const result = await kv(args)
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(/^--\w+ does not apply to \w+: it takes /)
    }
    expect(await kv(['get', 'k', '--w', '1'])).toMatchObject({ stderr: expect.stringMatching(/^--w does not apply to get: it takes --r, --strict\n/) })
    const help = await kv(['--help'])
    expect(help).toMatchObject({ code: 0, stdout: expect.stringMatching(/^usage: node node\/kv\.js/) })
    // A bad option value: the peer answers 400 with a message, which kv.js prints.
    expect(await kv(['get', 'k', '--r', '99'])).toMatchObject({ code: 4, stderr: expect.stringMatching(/^400: query parameter r must be an integer/) })
    // A port nobody listens on: reserve one and close it.
    const port = await new Promise<number>(resolve => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => { resolve(port) })
      })
    })
    const down = await kv(['get', 'k', '--peer', `http://127.0.0.1:${port}`])
    expect(down.code).toBe(5)
    expect(down.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+/)
  })
})
