/**
 * The settings table and its resolution (src/cli/settings.ts) and the CLI's configure() on top of it:
 * precedence (flags, environment, file, defaults), every key reachable from the file, errors that name the
 * key and where the value came from, and --print-config's redaction.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { describe, expect, it } from 'vitest'
import { configure } from '../../src/cli/peer-cli.js'
import { envName, kebab, renderToml, resolveSettings, settingsTable } from '../../src/cli/settings.js'
import { defaultStorageConfig } from '../../src/core/config.js'
import { defaultKvConfig } from '../../src/core/kv/config.js'
import { defaultSwimConfig } from '../../src/core/membership/config.js'

const table = settingsTable({ memoryMaxMb: 100, relayReservations: 128 })
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-settings-'))
let files = 0
function file (text: string): string {
  const name = path.join(dir, `c${files++}.toml`)
  fs.writeFileSync(name, text)
  return name
}

describe('settings', () => {
  it('has a key for every replication, storage and SWIM option, and a flag for every key that had one', () => {
    const keys = new Set(table.map(s => s.key))
    for (const field of Object.keys(defaultKvConfig())) expect(keys, field).toContain(`kv.${kebab(field)}`)
    for (const field of Object.keys(defaultSwimConfig())) expect(keys, field).toContain(`swim.${kebab(field)}`)
    for (const field of Object.keys(defaultStorageConfig())) if (field !== 'memoryBytesMax') expect(keys, field).toContain(`storage.${kebab(field)}`)
    expect(keys).toContain('storage.memory-max-mb')
    const flags = table.flatMap(s => s.flag === undefined ? [] : [s.flag])
    for (const flag of ['bootstrap', 'join', 'listen', 'http', 'http-host', 'http-token', 'http-token-file', 'http-name', 'http-cors', 'data-dir', 'mesh-key', 'vnodes', 'relay-reservations', 'no-relay', 'ice-server', 'webrtc-bind', 'n', 'r', 'w', 'strict-quorum', 'location', 'min-durable', 'durable-acks', 'hedge-multiplier', 'durability', 'sync-interval-ms', 'tombstone-grace-ms', 'sweep-period-ms', 'memory-max-mb', 'probe-interval-ms', 'probe-timeout-ms', 'suspicion-mult', 'gossip-interval-ms', 'push-pull-interval-ms', 'debug-api']) expect(flags, flag).toContain(flag)
    expect(new Set(flags).size).toBe(flags.length)
  })

  it('takes flags over the environment over the file over the defaults', () => {
    const name = file('[kv]\nn = 5\nr = 3\nw = 3\nrequest-timeout-ms = 1234\n')
    const values = resolveSettings({ table, flags: { n: '4' }, env: { [envName('kv.r')]: '1' }, file: { name, text: fs.readFileSync(name, 'utf8') } })
    expect(values.get('kv.n')).toMatchObject({ value: 4, source: 'flag', where: '--n' })
    expect(values.get('kv.r')).toMatchObject({ value: 1, source: 'env', where: 'MESHKV_KV_R' })
    expect(values.get('kv.w')).toMatchObject({ value: 3, source: 'file', where: `${name} kv.w` })
    expect(values.get('kv.request-timeout-ms')?.value).toBe(1234)
    expect(values.has('kv.sync-interval-ms')).toBe(false)
    const config = configure(['--config', name, '--n', '4', '--bootstrap'], { MESHKV_KV_R: '1' })
    expect(config.kv).toMatchObject({ n: 4, r: 1, w: 3, requestTimeoutMs: 1234, syncIntervalMs: defaultKvConfig().syncIntervalMs })
  })

  it('sets every kind of value from the file and passes storage options through', () => {
    const name = file([
      'bootstrap = true', 'http = 0', 'join = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGRUVh9pGT6XzX8qNrJ9PsKkAZWNmcEeF8Ck5NfQCV3Z8"]',
      'location = "zone-a/rack-1"', 'no-relay = true',
      '[kv]', 'n = 1', 'hedge-multiplier = 2.5', 'strict-quorum = true',
      '[storage]', 'value-bytes-max = 4096', 'durability = "async"', 'memory-max-mb = 64', 'on-corruption = "skip"',
      '[swim]', 'probe-interval-ms = 2000', 'members-max = 100'
    ].join('\n'))
    const c = configure(['--config', name], {})
    expect(c).toMatchObject({ bootstrap: true, httpPort: 0, location: 'zone-a/rack-1', relay: false, memoryMaxMb: 64 })
    expect(c.join.map(String)).toEqual(['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGRUVh9pGT6XzX8qNrJ9PsKkAZWNmcEeF8Ck5NfQCV3Z8'])
    expect(c.kv).toMatchObject({ n: 1, r: 1, w: 1, hedgeMultiplier: 2.5, strictQuorum: true })
    expect(c.storage).toMatchObject({ valueBytesMax: 4096, durability: 'async', memoryBytesMax: 64 * 1024 * 1024, onCorruption: 'skip' })
    expect(c.swim).toMatchObject({ probeIntervalMs: 2000, probeTimeoutMs: 500, membersMax: 100, metaBytesMax: 2048 })
  })

  it('refuses unknown keys and bad values, naming the key and where the value came from', () => {
    const bad = (argv: string[], env: Record<string, string>, message: RegExp): void => {
      expect(() => configure(argv, env)).toThrow(message)
    }
    bad(['--config', file('[kv]\nreplicas = 3\n')], {}, /c\d+\.toml: unknown key kv\.replicas/)
    bad(['--config', file('nn = 3\n')], {}, /unknown key nn/)
    bad(['--config', file('n = 3\n')], {}, /unknown key n \(did you mean kv\.n\?\)/)
    bad(['--config', file('[kv]\nrequestTimeoutMs = 3\n')], {}, /unknown key kv\.requestTimeoutMs \(did you mean kv\.request-timeout-ms\?\)/)
    bad(['--config', file('[kv]\nn = "three"\n')], {}, /kv\.n: must be an integer, got "three"/)
    bad(['--config', file('[kv]\nn = 2\nr = 3\n')], {}, /c\d+\.toml kv\.r: must be an integer in \[1, 2\], got 3/)
    bad(['--config', file('[storage]\ndurability = "eventually"\n')], {}, /storage\.durability: must be one of sync, async/)
    bad(['--config', file('[kv\nn = 1\n')], {}, /not valid TOML/)
    bad(['--config', path.join(dir, 'missing.toml')], {}, /--config .*missing\.toml: ENOENT/)
    bad(['--bootstrap'], { MESHKV_KV_N: '0' }, /MESHKV_KV_N: must be an integer in \[1, 16\], got 0/)
    bad(['--bootstrap', '--http', 'seven'], {}, /--http: must be a port in \[0, 65535\] or off/)
    bad(['--bootstrap', '--vnodes', '0'], {}, /--vnodes: must be in \[1, 4096\], got "0"/)
    bad(['--bootstrap', '--no-relay', '--relay-reservations', '4'], {}, /--relay-reservations and --no-relay contradict each other/)
    bad(['--bootstrap', '--memory-max-mb', '99999999'], {}, /--memory-max-mb: must be at most the heap limit/)
    bad(['--bootstrap', '--frobnicate'], {}, /Unknown option '--frobnicate'/)
    bad(['--bootstrap', '--http-host', ''], {}, /--http-host: must not be empty/)
    // Files are read bounded: a FIFO or device (size 0, endless) and anything past the limit are refused.
    bad(['--config', '/dev/zero'], {}, /--config \/dev\/zero: not a regular file/)
    bad(['--config', file('# ' + 'x'.repeat(1024 * 1024) + '\n')], {}, /--config .*: larger than 1048576 bytes/)
    bad(['--bootstrap', '--http-token-file', '/dev/zero'], {}, /--http-token-file \/dev\/zero: not a regular file/)
    bad(['--bootstrap', '--http-token-file', file('t'.repeat(9000))], {}, /--http-token-file .*: larger than 8192 bytes/)
    // A secret of the wrong type is refused without repeating it.
    expect(() => configure(['--config', file('mesh-key = ["s3cret-value"]\n')], {})).toThrow(/mesh-key: must be a string, got <redacted>$/)
  })

  it('prints the effective configuration as TOML with secrets redacted, and parses back', () => {
    const c = configure(['--bootstrap', '--mesh-key', 'a-very-secret-mesh-key', '--http-token', 'a-very-secret-http-token'], {})
    const effective = new Map<string, unknown>([['mesh-key', c.meshKey], ['http-token', c.httpSecurity.token], ['kv.n', c.kv.n], ['bootstrap', true]])
    const text = renderToml(table, effective)
    expect(text).not.toMatch(/a-very-secret/)
    expect(parseToml(text)).toEqual({ 'mesh-key': '<redacted>', 'http-token': '<redacted>', bootstrap: true, kv: { n: 3 } })
  })
})

describe('settings documentation', () => {
  it('lists every key in the README\'s configuration reference', () => {
    const readme = fs.readFileSync(path.join(import.meta.dirname, '../../README.md'), 'utf8')
    const reference = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('## Configuration (storage)'))
    for (const s of table) expect(reference, s.key).toContain(`| \`${s.key}\` |`)
  })
})
