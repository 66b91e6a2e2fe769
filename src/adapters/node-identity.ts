/**
 * A Node peer's identity on disk: its private key (`peer.key`, created once, mode 0600) and the last SWIM
 * incarnation it announced (`incarnation`, raised and fsynced before each start), so a peer restarted on
 * the same data directory comes back as itself and refutes whatever the mesh last said about it.
 */
import * as fs from 'node:fs'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/** The key in `file`, or a new Ed25519 key written there (atomically, readable by the owner only). */
export async function loadOrCreateKey (file: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(fs.readFileSync(file))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const key = await generateKeyPair('Ed25519')
  const tmp = `${file}.tmp`
  fs.writeFileSync(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
  fs.renameSync(tmp, file)
  return key
}

/** Reads the last incarnation and durably records the next one before the peer announces it. */
export function nextIncarnation (file: string): number {
  let last = -1
  try { last = Number(fs.readFileSync(file, 'utf8').trim()) } catch { /* first start */ }
  const next = Number.isInteger(last) && last >= 0 ? last + 1 : 0
  const fd = fs.openSync(`${file}.tmp`, 'w')
  fs.writeSync(fd, String(next))
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  fs.renameSync(`${file}.tmp`, file)
  return next
}
