import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { FileWal } from '../../src/adapters/wal-file.js'
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
