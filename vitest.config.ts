import { defineConfig } from 'vitest/config'

// Generous bounds: the suite must pass on a loaded 2-core machine. Tests wait for conditions, never for
// fixed delays; these timeouts only catch a hang.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    sequence: { hooks: 'list' }
  }
})
