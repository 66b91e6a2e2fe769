import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { FileWal } from '../../src/adapters/wal-file.js'
import { ConfigError } from '../../src/core/errors.js'
import { type WalHarness, runLargeLogContract, runWalContract } from './wal-contract.js'

function fileHarness (): WalHarness {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshkv-wal-'))
  const file = (id: number): string => path.join(dir, `${String(id).padStart(10, '0')}.wal`)
  return {
    make: () => new FileWal(dir, { backgroundSyncMs: 0 }),
    readRaw: async id => new Uint8Array(fs.readFileSync(file(id))),
    writeRaw: async (id, bytes) => { fs.writeFileSync(file(id), bytes) },
    dispose: async () => { fs.rmSync(dir, { recursive: true, force: true }) }
  }
}

runWalContract('file', async () => fileHarness())
runLargeLogContract('file', async () => fileHarness())

describe('FileWal options', () => {
  it('refuses invalid options with ConfigError naming the field', () => {
    for (const [field, value] of [['bufferBytesMax', 0], ['backgroundSyncMs', -1], ['preallocateBytes', 1.5], ['readChunkBytes', 16]] as const) {
      const error = (() => { try { new FileWal('/nonexistent', { [field]: value }); return null } catch (e) { return e } })()
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe(field)
    }
  })
})
