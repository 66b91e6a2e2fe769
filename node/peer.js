#!/usr/bin/env node
// The Node peer and its command line; see `node node/peer.js --help`. The implementation is TypeScript in
// src/cli/peer-cli.ts, built to dist/ by `npm install` (prepare).
import { main } from '../dist/src/cli/peer-cli.js'

await main(process.argv.slice(2))
