// Lint: mostly typescript-eslint's recommended rules, plus the architecture rule that keeps src/core pure.
// src/core may import only src/core, and may not touch platform APIs, wall-clock time, randomness or timers:
// those come in through the Clock, Rng, Logger and WalAdapter interfaces (see DESIGN.md §2).
import tseslint from 'typescript-eslint'
import globals from 'globals'

const PURE_MESSAGE = 'src/core is pure: inject it (Clock, Rng, Logger, WalAdapter) instead'

const restrictedGlobals = [
  'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'queueMicrotask',
  'Date', 'performance', 'process', 'Buffer', 'require', 'global',
  'window', 'self', 'document', 'navigator', 'location', 'localStorage', 'sessionStorage', 'indexedDB',
  'fetch', 'WebSocket', 'RTCPeerConnection', 'crypto', 'Worker', 'structuredClone'
].map(name => ({ name, message: PURE_MESSAGE }))

// One block per folder depth: a relative import with more "../" than the file is deep leaves src/core.
const coreDepths = [
  { files: ['src/core/*.ts'], up: 1 },
  { files: ['src/core/*/*.ts'], up: 2 },
  { files: ['src/core/*/*/*.ts'], up: 3 }
].map(({ files, up }) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [
        { regex: '^(?!\\.\\.?/)', message: `${PURE_MESSAGE}: src/core imports nothing outside src/core (no packages, no node:*)` },
        { regex: `^(\\.\\./){${up},}`, message: `${PURE_MESSAGE}: src/core imports nothing outside src/core` }
      ]
    }],
    'no-restricted-globals': ['error', ...restrictedGlobals],
    'no-restricted-properties': ['error',
      { object: 'Date', property: 'now', message: PURE_MESSAGE },
      { object: 'Math', property: 'random', message: PURE_MESSAGE },
      { object: 'globalThis', message: PURE_MESSAGE }
    ]
  }
}))

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-results/**', 'playwright-report/**', 'src/core/platform.d.ts'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off'
    }
  },
  {
    files: ['src/**/*.ts'],
    rules: { 'no-console': 'error' }
  },
  ...coreDepths
)
