// The debug protocol's request check (src/services/debug.ts): what a member or the HTTP API may ask of a
// peer run with --debug-api, and the typed error for anything else.
import { describe, expect, it } from 'vitest'
import { DebugError, parseDebugRequest } from '../../src/services/debug.js'

const SELF = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const OTHER = '12D3KooWNvSZnPi3RrhrTwEY4LuuBeB6K6facKUnJ5R3sTMmyLdc'

describe('parseDebugRequest', () => {
  it('takes the five operations, with a peer for block and unblock', () => {
    expect(parseDebugRequest({ op: 'block', peer: OTHER }, SELF)).toEqual({ op: 'block', peer: OTHER })
    expect(parseDebugRequest({ op: 'unblock', peer: OTHER }, SELF)).toEqual({ op: 'unblock', peer: OTHER })
    for (const op of ['heal', 'leave', 'kill']) expect(parseDebugRequest({ op, peer: OTHER }, SELF)).toEqual({ op })
  })

  it('refuses anything else with a DebugError that says what is wrong', () => {
    const cases: Array<[unknown, RegExp]> = [
      [null, /JSON object/],
      ['block', /JSON object/],
      [{}, /op must be one of/],
      [{ op: 'reboot' }, /op must be one of/],
      [{ op: 'block' }, /needs peer/],
      [{ op: 'block', peer: '' }, /needs peer/],
      [{ op: 'block', peer: 'x'.repeat(200) }, /needs peer/],
      [{ op: 'unblock', peer: 'not-a-peer-id' }, /not a peer id/],
      [{ op: 'block', peer: SELF }, /cannot block itself/]
    ]
    for (const [value, message] of cases) {
      expect(() => parseDebugRequest(value, SELF)).toThrow(DebugError)
      expect(() => parseDebugRequest(value, SELF)).toThrow(message)
    }
  })
})
