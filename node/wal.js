#!/usr/bin/env node
// Inspect and maintain a peer's storage directory: recover it, report what recovery found, compact it.
// Runs the same recovery a peer runs at start (so it truncates a torn tail, as a peer would).
//
//   node node/wal.js stats <dir> [--skip-corrupt]
//   node node/wal.js compact <dir> [--skip-corrupt]
import { parseArgs } from 'node:util'
import { FileWal, StorageEngine, MeshkvError, consoleLogger, cryptoRng, systemClock } from '../dist/src/node.js'

const HELP = `usage: node node/wal.js <stats|compact> <dir> [--skip-corrupt]

  stats     recover <dir> and print what recovery found and what the store holds (JSON)
  compact   recover <dir>, write a snapshot and drop the log segments it replaces

  --skip-corrupt   drop damaged records found before the log's tail (and report them) instead of
                   stopping with an error naming the file and offset; the default is to stop
  --help           this text

<dir> is a log directory: a Node peer keeps its log in <data-dir>/wal (e.g. meshkv-data/wal).
<dir> must not be in use by a running peer (it is locked while open).`

let parsed
try {
  parsed = parseArgs({ allowPositionals: true, options: { 'skip-corrupt': { type: 'boolean' }, help: { type: 'boolean' } } })
} catch (error) {
  console.error(`${error.message}\n\n${HELP}`)
  process.exit(2)
}
const { values, positionals } = parsed
if (values.help) {
  console.log(HELP)
  process.exit(0)
}
const [command, dir] = positionals
if (!['stats', 'compact'].includes(command) || dir === undefined || positionals.length > 2) {
  console.error(HELP)
  process.exit(2)
}

try {
  const started = performance.now()
  const engine = await StorageEngine.open({
    replicaId: 'meshkv-wal-tool',
    clock: systemClock,
    rng: cryptoRng,
    wal: new FileWal(dir, { backgroundSyncMs: 0 }),
    onCorruption: values['skip-corrupt'] ? 'skip' : 'fail',
    log: consoleLogger('wal')
  })
  const recoveredMs = Math.round(performance.now() - started)
  if (command === 'compact') {
    console.error(`compacting ${engine.size} keys…`)
    await engine.compact()
  }
  const stats = engine.stats()
  await engine.close()
  console.log(JSON.stringify({ dir, recoveredMs, recovery: engine.recovery, stats }, null, 2))
} catch (error) {
  if (error instanceof MeshkvError) {
    console.error(`error: ${error.message}`)
    process.exit(1)
  }
  throw error
}
