// The dependency rule is only worth something if it fires: lint sample files as if they sat in src/core and
// in an adapter, and check what is reported.
import { ESLint } from 'eslint'
import { describe, expect, it } from 'vitest'

const eslint = new ESLint({ cwd: process.cwd() })

async function ruleIds (filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath })
  return result!.messages.map(m => m.ruleId ?? m.message)
}

describe('lint: src/core stays pure', () => {
  it.each([
    ['a package', "import { createLibp2p } from 'libp2p'\nexport const x = createLibp2p", 'no-restricted-imports'],
    ['node:*', "import * as fs from 'node:fs'\nexport const x = fs", 'no-restricted-imports'],
    ['a module outside core', "import { FileWal } from '../../adapters/wal-file.js'\nexport const x = FileWal", 'no-restricted-imports'],
    ['Date.now', 'export const now = Date.now()', 'no-restricted-globals'],
    ['Math.random', 'export const r = Math.random()', 'no-restricted-properties'],
    ['setTimeout', 'setTimeout(() => {}, 1)', 'no-restricted-globals'],
    ['the DOM', 'export const d = document.title', 'no-restricted-globals'],
    ['IndexedDB', "export const db = indexedDB.open('x')", 'no-restricted-globals']
  ])('rejects %s in src/core', async (_what, code, rule) => {
    expect(await ruleIds('src/core/ring/sample.ts', code)).toContain(rule)
  })

  it('accepts imports within core, and the same code outside core', async () => {
    expect(await ruleIds('src/core/ring/sample.ts', "import { ConfigError } from '../errors.js'\nexport const x = ConfigError")).toEqual([])
    expect(await ruleIds('src/adapters/sample.ts', "import * as fs from 'node:fs'\nexport const x = [fs, Date.now(), setTimeout]")).toEqual([])
  })
})
