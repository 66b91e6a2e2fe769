import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/core/errors.js'
import type { SwimMessage, Update } from '../../src/core/membership/swim.js'
import { decodeSwim, encodeSwim } from '../../src/core/protocol/swim-codec.js'

const id = fc.string({ minLength: 1, maxLength: 52 })
const update: fc.Arbitrary<Update> = fc.record({
  id,
  incarnation: fc.nat(),
  state: fc.constantFrom('alive', 'suspect', 'dead', 'left'),
  meta: fc.dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.string({ maxLength: 50 }), fc.double({ noNaN: true, noDefaultInfinity: true })), { maxKeys: 5 }),
  from: id
}, { requiredKeys: ['id', 'incarnation', 'state', 'meta'] })
const updates = fc.array(update, { maxLength: 12 })
const message: fc.Arbitrary<SwimMessage> = fc.oneof(
  fc.record({ type: fc.constantFrom('ping' as const, 'ack' as const, 'nack' as const), seq: fc.nat(), updates }),
  fc.record({ type: fc.constant('ping-req' as const), seq: fc.nat(), target: id, updates }),
  fc.record({ type: fc.constant('gossip' as const), updates }),
  fc.record({ type: fc.constant('push-pull' as const), join: fc.boolean(), reply: fc.boolean(), members: updates })
)

describe('swim codec', () => {
  it('round-trips every message', () => {
    fc.assert(fc.property(message, m => { expect(decodeSwim(encodeSwim(m))).toEqual(m) }))
  })

  it('rejects truncations and garbage with DecodeError only', () => {
    fc.assert(fc.property(message, m => {
      const bytes = encodeSwim(m)
      for (let cut = 0; cut < bytes.length; cut++) expect(() => decodeSwim(bytes.subarray(0, cut))).toThrow(DecodeError)
    }), { numRuns: 50 })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), junk => {
      try { decodeSwim(junk) } catch (e) { expect(e).toBeInstanceOf(DecodeError) }
    }))
  })
})

describe('swim codec against prototype pollution', () => {
  it('decodes a "__proto__" metadata key as plain data', () => {
    const m: SwimMessage = { type: 'gossip', updates: [{ id: 'x', incarnation: 1, state: 'alive', meta: JSON.parse('{"__proto__": "evil", "kind": "node"}') as Record<string, string> }] }
    const decoded = decodeSwim(encodeSwim(m))
    if (decoded.type !== 'gossip') throw new Error('unexpected type')
    const meta = decoded.updates[0]!.meta
    expect(Object.getPrototypeOf(meta)).toBeNull()
    expect(Object.keys(meta).sort()).toEqual(['__proto__', 'kind'])
    expect(({} as Record<string, unknown>).evil).toBeUndefined()
  })
})
