/**
 * `node node/peer.js --config meshkv.toml` for real: the file's settings reach the running peer (limits a
 * client meets, the replication line it prints), flags and the environment override it, --print-config
 * shows what would run without starting anything, and a bad file stops the start with the key named.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { parse as parseToml } from 'smol-toml'
import { afterAll, describe, expect, it } from 'vitest'
import { peerGroup } from '../helpers/peers.js'

const run = promisify(execFile)
const group = peerGroup('meshkv-config-', [])
afterAll(async () => { await group.stopAll() })

function write (name: string, text: string): string {
  const file = path.join(group.root, name)
  fs.writeFileSync(file, text)
  return file
}

describe('--config', () => {
  it('runs a peer with the file\'s settings, flags over environment over file', async () => {
    const file = write('meshkv.toml', '[kv]\nn = 2\nr = 2\nw = 2\n\n[storage]\nvalue-bytes-max = 4096\n\n[swim]\nprobe-interval-ms = 700\n')
    const peer = await group.start('a', ['--bootstrap', '--config', file, '--w', '1'])
    const replication = peer.output.find(l => l.startsWith('replication:'))
    expect(replication).toMatch(/N=2 R=2 W=1/)
    const put = async (bytes: number): Promise<number> => (await fetch(`${peer.http}/kv/k${bytes}`, { method: 'PUT', body: new Uint8Array(bytes), signal: AbortSignal.timeout(20_000) })).status
    expect(await put(4096)).toBe(204)
    expect(await put(4097)).toBe(413)
  })

  it('prints the effective configuration without starting, secrets redacted', async () => {
    const file = write('print.toml', 'bootstrap = true\nmesh-key = "from-the-file-secret"\n[kv]\nn = 5\n')
    const { stdout } = await run(process.execPath, ['node/peer.js', '--config', file, '--print-config', '--data-dir', path.join(group.root, 'never')], { env: { ...process.env, MESHKV_KV_W: '4' }, timeout: 30_000 })
    expect(stdout).not.toMatch(/from-the-file-secret/)
    const printed = parseToml(stdout) as { 'mesh-key': string; kv: { n: number; r: number; w: number }; storage: Record<string, unknown>; swim: Record<string, unknown> }
    expect(printed['mesh-key']).toBe('<redacted>')
    expect(printed.kv).toMatchObject({ n: 5, r: 2, w: 4 })
    expect(printed.storage['value-bytes-max']).toBe(1024 * 1024)
    expect(Object.keys(printed.swim)).toContain('probe-interval-ms')
    // Nothing was started or created.
    expect(fs.existsSync(path.join(group.root, 'never'))).toBe(false)
  })

  it('stops a start on a bad file with the key and the file named', async () => {
    const file = write('bad.toml', '[storage]\nvalue-bytes-maxx = 10\n')
    const failed = await run(process.execPath, ['node/peer.js', '--bootstrap', '--config', file], { timeout: 30_000 }).then(() => null, (e: { code: number; stderr: string }) => e)
    expect(failed).toMatchObject({ code: 2, stderr: expect.stringMatching(/bad\.toml: unknown key storage\.value-bytes-maxx \(did you mean storage\.value-bytes-max\?\)/) })
  })
})
