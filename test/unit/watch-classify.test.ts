import { describe, expect, it } from 'vitest'
import { utf8Encode } from '../../src/core/codec.js'
import { beatRecord } from '../../src/core/kv/heartbeat.js'
import type { KeyState } from '../../src/core/version/dvv.js'
import type { VersionVector } from '../../src/core/version/vv.js'
import { classify } from '../../src/services/watch.js'

const at = (n: number, value: Uint8Array | null): KeyState => ({ vv: ['a', n] as VersionVector, siblings: [{ id: 'a', n, value, wall: 1_700_000_000_000 + n, logical: 0, lww: true }], lwwFloor: { id: 'a', n, wall: 1_700_000_000_000 + n, logical: 0 } })
const change = (key: string, prior: KeyState | undefined, state: KeyState): Parameters<typeof classify>[0] => ({ type: 'put', key, replica: 'a', wall: state.siblings[0]!.wall, prior, state })

describe('watch events of heartbeat writes', () => {
  const alive = beatRecord(3000, null, 60_000)
  const expired = utf8Encode(JSON.stringify({ state: 'expired', ttlMs: 3000, meta: null, lastBeat: 1_700_000_000_001, replica: 'a' }))

  it('is silent for a beat that refreshes an alive record, shared bytes or a copy of them', () => {
    expect(classify(change('heartbeat/s', at(1, alive), at(2, alive)))).toBeNull()
    expect(classify(change('heartbeat/s', at(1, alive.slice()), at(2, alive)))).toBeNull()
    // With metadata: a fresh array each beat, same answer.
    expect(classify(change('heartbeat/s', at(1, beatRecord(3000, { z: 1 }, 60_000)), at(2, beatRecord(3000, { z: 1 }, 60_000))))).toBeNull()
  })

  it('tells a first beat and a revival apart from a refresh', () => {
    expect(classify(change('heartbeat/s', undefined, at(1, alive)))?.type).toBe('put')
    expect(classify(change('heartbeat/s', at(1, null), at(2, alive)))?.type).toBe('put')
    expect(classify(change('heartbeat/s', at(1, expired), at(2, alive)))?.type).toBe('revived')
    // Every write to another key is an event, the same bytes or not.
    expect(classify(change('user/k', at(1, alive), at(2, alive)))?.type).toBe('put')
  })
})
