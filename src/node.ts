/** Node-only exports: everything in the main entry plus the file-backed WAL. */
export * from './index.js'
export { FileWal, type FileWalOptions } from './adapters/wal-file.js'
export { consoleLogger, systemClock } from './adapters/node-env.js'
