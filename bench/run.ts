/**
 * `npm run bench -- <suite> [<suite> ...]` runs benchmark suites; `npm run bench -- --list` lists them.
 * Results are JSON lines on stdout (see report.ts); progress goes to stderr.
 */
import '../src/polyfills.js'
import { progress } from './report.js'

const suites: Record<string, { describe: string; run: (args: string[]) => Promise<void> }> = {
  storage: {
    describe: 'storage engine in memory, and the WAL with async and sync (group commit) durability, against the raw file-system floor',
    run: async args => { await (await import('./storage.js')).run(args) }
  },
  kv: {
    describe: '3 Node peers on 127.0.0.1 (N=3 R=2 W=2, sync): quorum put/get at 1 and 64 in flight vs raw echo on one libp2p stream; RSS idle and at 100,000 keys',
    run: async args => { await (await import('./kv.js')).run(args) }
  },
  http: {
    describe: '3 Node peers on 127.0.0.1 (N=3 R=2 W=2, sync) through their HTTP API: PUT and GET at 16 and 64 in flight vs a trivial node:http Map server with the same client; CPU-ms per request summed over the peers, messages per libp2p frame (--seconds=10 --rounds=1: K rounds on the same peers, each against its own floor, and their median ratios)',
    run: async args => { await (await import('./http.js')).run(args) }
  },
  heartbeat: {
    describe: '3 Node peers on 127.0.0.1 (N=3 W=2, sync): 10,000 services beating once a second for 60 s, 100 stopped at 2/3; beats/s, false expirations, detection delay, WAL bytes (--services= --seconds= --ttl-ms= --sweep-ms=); --find-capacity: the largest count a fresh mesh tracks for --probe-seconds=60 with 0 false expirations, stopped services detected within 2 sweeps and 99% of the beats due after the first 10 s acknowledged, then 2x that past admission control (--knee-rule=tracked|strict: strict also fails on 99% of the whole run or any skipped beat; --probe-max=10 --start-services=1000 --resolution=250; --overload=<services> alone)',
    run: async args => { await (await import('./heartbeat.js')).run(args) }
  },
  recovery: {
    describe: 'reopening 1,000,000 keys of 100 bytes from the log, with and without a snapshot: time, records/s and resident memory vs the same keys written live and vs reading the files (--keys=)',
    run: async args => { await (await import('./recovery.js')).run(args) }
  },
  churn: {
    describe: '2 Node peers and 4 replica tabs in one headless Chromium (N=3 W=2): 8 HTTP writers for 60 s without and with tab churn (a tab replaced or reloaded every 5 s); writes/s (ratio churn/steady), failures by code, p50/p99, then the browser vanishes: acknowledged keys lost (--seconds= --writers= --tabs= --period-ms= --rounds=: K pairs of phases and their median ratio)',
    run: async args => { await (await import('./churn.js')).run(args) }
  },
  tabs: {
    describe: '2 Node peers and 2, then 8 idle full-replica tabs in one headless Chromium: Chromium CPU per tab over 30 s (target <= 0.03 cores, 8 tabs within 1.5x of 2), Node peers\' CPU, and any member reported non-alive in 60 s idle (--tabs=2,8 --seconds=60)',
    run: async args => { await (await import('./tabs.js')).run(args) }
  },
  'tab-kv': {
    describe: '2 Node peers and 2 replica tabs in one headless Chromium: tab A\'s quorum puts and gets through its own peer at 16 in flight vs a raw RTCDataChannel echo between the same two tabs (--seconds=10 --in-flight=16)',
    run: async args => { await (await import('./tab-kv.js')).run(args) }
  },
  swim: {
    describe: 'SWIM on the deterministic simulator: detection times, false positives under loss, message load (10/100/1,000 members)',
    run: async args => { await (await import('./swim.js')).run(args) }
  }
}

const args = process.argv.slice(2)
const names = args.filter(a => !a.startsWith('--'))
if (args.includes('--help') || args.includes('--list') || names.length === 0) {
  process.stderr.write(`usage: npm run bench -- <suite> [<suite> ...] [--quick]\n\nsuites:\n${Object.entries(suites).map(([n, s]) => `  ${n.padEnd(10)} ${s.describe}`).join('\n')}\n\n  --quick    fewer rounds (a smoke run, noisier figures)\n`)
  process.exit(names.length === 0 && !args.includes('--help') && !args.includes('--list') ? 2 : 0)
}
for (const name of names) {
  const suite = suites[name]
  if (suite === undefined) {
    process.stderr.write(`unknown suite ${JSON.stringify(name)}; known: ${Object.keys(suites).join(', ')}\n`)
    process.exit(2)
  }
  progress(`suite ${name}`)
  await suite.run(args.filter(a => a.startsWith('--')))
}
