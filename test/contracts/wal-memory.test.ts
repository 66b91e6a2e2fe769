import { MemoryVolume, MemoryWal } from '../../src/adapters/wal-memory.js'
import { runWalContract } from './wal-contract.js'

runWalContract('memory', async () => {
  const volume = new MemoryVolume()
  return {
    make: () => new MemoryWal(volume),
    readRaw: async id => volume.read(id),
    writeRaw: async (id, bytes) => { volume.write(id, bytes) },
    dispose: async () => {}
  }
})
