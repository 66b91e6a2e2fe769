/**
 * The package as a user gets it: `npm pack` of this repository, installed into an empty folder, and every
 * `js` code block of the README run there as written against a 3-peer mesh of `node node/peer.js`. A
 * TypeScript consumer is type-checked against the installed declarations too: the three entry points
 * resolve, and the public Peer is the narrow interface (no libp2p inside).
 * Needs the build (`npm run build`, which `npm test` runs first) and the npm registry or its cache.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PeerProcess, members, peerGroup, waitUntil } from '../helpers/peers.js'

const run = promisify(execFile)
const repo = path.resolve(import.meta.dirname, '../..')
const group = peerGroup('meshkv-package-', [])
const app = path.join(group.root, 'app')
let peers: PeerProcess[] = []

/** The README's `js` blocks, in order. */
function readmeBlocks (): string[] {
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8')
  return [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map(m => m[1]!)
}

async function npm (args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' } })
  return stdout
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(repo, 'dist/src/index.js'))) throw new Error('no dist/: run `npm run build` first (npm test does)')
  const install = (async () => {
    // --ignore-scripts: pack the build that is there (prepare would rebuild it).
    const tarball = (await npm(['pack', '--ignore-scripts', '--pack-destination', group.root], repo)).trim().split('\n').pop()!
    fs.mkdirSync(app)
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'meshkv-consumer', private: true, type: 'module' }))
    await npm(['install', '--prefer-offline', '--no-package-lock', path.join(group.root, tarball)], app)
  })()
  const boot = await group.start('boot', ['--bootstrap'])
  peers = [boot, ...await Promise.all(['two', 'three'].map(name => group.start(name, ['--join', boot.tcp])))]
  await waitUntil(async () => (await members(boot)).filter(m => m.state === 'alive').length === 3, 60_000, 'three members alive')
  await install
}, 420_000)
afterAll(async () => { await group.stopAll() })

describe('the npm package', () => {
  it('ships what the README promises and nothing of the work tree', () => {
    const installed = path.join(app, 'node_modules/meshkv')
    for (const file of ['dist/src/index.js', 'dist/src/node.d.ts', 'dist/src/client.js', 'dist/web/index.html', 'node/peer.js', 'node/kv.js', 'README.md']) {
      expect(fs.existsSync(path.join(installed, file)), file).toBe(true)
    }
    for (const dir of ['src', 'test', 'bench', 'patches', 'node_modules']) expect(fs.existsSync(path.join(installed, dir)), dir).toBe(false)
  })

  it('runs every js block of the README as written', async () => {
    const blocks = readmeBlocks()
    // The storage engine, the library peer, the HTTP client.
    expect(blocks.length).toBeGreaterThanOrEqual(3)
    const expected: Record<string, RegExp> = { engine: /^ada l\.$/m, peer: /^ada$\n^\[ 'user:1' \]$/m, client: /^hello$[\s\S]*^3 true$[\s\S]*^true$[\s\S]*^true true$/m }
    const seen = new Set<string>()
    for (const [i, block] of blocks.entries()) {
      const file = path.join(app, `readme-${i}.mjs`)
      fs.writeFileSync(file, block)
      let stdout: string
      try {
        ({ stdout } = await run(process.execPath, [file], { cwd: app, timeout: 120_000, env: { ...process.env, MESHKV_PEER: peers[i % peers.length]!.http } }))
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string; message: string }
        throw new Error(`README js block ${i} failed: ${e.message}\n--- block ---\n${block}\n--- stdout ---\n${e.stdout ?? ''}\n--- stderr ---\n${e.stderr ?? ''}`)
      }
      const kind = block.includes("from 'meshkv/client'") ? 'client' : block.includes('StorageEngine') ? 'engine' : 'peer'
      seen.add(kind)
      expect(stdout, `block ${i} (${kind})`).toMatch(expected[kind]!)
    }
    expect([...seen].sort()).toEqual(['client', 'engine', 'peer'])
    // The library peer left gracefully: the mesh lists it as left, not dead, and no longer alive. Its leave
    // spreads by gossip, which may reach peers[0] last (a graceful leave that the others have heard of
    // replaces a death peers[0] declared meanwhile), so this waits for it instead of asking once.
    let states = ''
    await waitUntil(async () => {
      const listed = await members(peers[0]!)
      states = listed.map(m => m.state).join(', ')
      return listed.filter(m => m.state === 'alive').length === 3 && listed.some(m => m.state === 'left')
    }, 60_000, 'peers[0] listing the three CLI peers alive and the library peer left').catch((error: unknown) => {
      throw new Error(`${String(error)}; states seen last: ${states}`)
    })
  }, 400_000)

  it('type-checks a TypeScript consumer against the installed declarations', async () => {
    fs.writeFileSync(path.join(app, 'consumer.ts'), `
import { createPeer, type Peer, type CreatePeerOptions, QuorumError, MeshkvError, StorageEngine } from 'meshkv'
import { createPeer as createNodePeer, FileWal, nodeTransports, type NodePeerOptions } from 'meshkv/node'
import { MeshkvClient, HttpResponseError, type ClientGetResult } from 'meshkv/client'

const options: CreatePeerOptions = { kv: { n: 3 } }
const nodeOptions: NodePeerOptions = { dataDir: './data', extraTransports: nodeTransports() }
export async function use (): Promise<void> {
  const peer: Peer = await createPeer(options)
  const other: Peer = await createNodePeer(nodeOptions)
  const read = await peer.get('k', { r: 2 })
  const put: { context: string; acks: number } = await other.put('k', 'v', { context: read.context })
  // @ts-expect-error the libp2p node is not part of the public Peer
  void peer.libp2p
  const result: ClientGetResult = await new MeshkvClient({ url: 'http://127.0.0.1:7000' }).get('k')
  const error: MeshkvError = new QuorumError('get', 1, 2, 3)
  void [put, result, error, FileWal, StorageEngine, HttpResponseError]
}
`)
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [path.join(repo, 'node_modules/@types')] },
      files: ['consumer.ts']
    }))
    try {
      await run(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app, timeout: 120_000 })
    } catch (error) {
      const e = error as { stdout?: string; message: string }
      throw new Error(`the consumer does not type-check: ${e.message}\n${e.stdout ?? ''}`)
    }
  }, 180_000)
})
