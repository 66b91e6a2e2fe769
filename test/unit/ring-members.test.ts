/**
 * Which members own ring tokens (KvService's ringMembersOf): a member that left is out of the ring at once
 * if it is durable, and keeps its tokens for the leave grace if it is volatile (a tab), so a reload moves
 * nothing; a dead member keeps them; client-only members (0 vnodes) never have any.
 */
import { describe, expect, it } from 'vitest'
import type { MemberState, MemberView } from '../../src/core/membership/swim.js'
import { leaveGraceEndsMs, ringMembersOf } from '../../src/services/kv-service.js'

const GRACE = 30_000

function member (id: string, state: MemberState, sinceMs: number, durability: 'durable' | 'volatile', vnodes = 64): MemberView {
  return { id, state, incarnation: 1, sinceMs, meta: { vnodes, durability, location: durability === 'durable' ? 'host' : 'browser' } }
}

const ids = (now: number, members: MemberView[], grace = GRACE): string[] => ringMembersOf(members, now, grace).map(m => m.id)

describe('ring members', () => {
  const members = [
    member('node-a', 'alive', 0, 'durable', 256),
    member('node-left', 'left', 1000, 'durable', 256),
    member('tab-alive', 'alive', 0, 'volatile'),
    member('tab-left', 'left', 1000, 'volatile'),
    member('tab-dead', 'dead', 1000, 'volatile'),
    member('tab-client', 'alive', 0, 'volatile', 0)
  ]

  it('keeps a tab that left for the grace, and no durable member that left', () => {
    expect(ids(1000, members)).toEqual(['node-a', 'tab-alive', 'tab-dead', 'tab-left'])
    expect(ids(1000 + GRACE - 1, members)).toEqual(['node-a', 'tab-alive', 'tab-dead', 'tab-left'])
    // The grace is over: the tab is out; the dead one stays until membership forgets it.
    expect(ids(1000 + GRACE, members)).toEqual(['node-a', 'tab-alive', 'tab-dead'])
    // No grace: a tab that left is out at once, like a Node peer.
    expect(ids(1000, members, 0)).toEqual(['node-a', 'tab-alive', 'tab-dead'])
  })

  it('says when the first grace still running ends', () => {
    expect(leaveGraceEndsMs(members, 1000, GRACE)).toBe(1000 + GRACE)
    const two = [...members, member('tab-left-2', 'left', 500, 'volatile')]
    expect(leaveGraceEndsMs(two, 1000, GRACE)).toBe(500 + GRACE)
    expect(leaveGraceEndsMs(two, 500 + GRACE, GRACE)).toBe(1000 + GRACE)
    expect(leaveGraceEndsMs(two, 1000 + GRACE, GRACE)).toBeNull()
    expect(leaveGraceEndsMs(members, 1000, 0)).toBeNull()
  })

  it('lists the same members whatever order they come in', () => {
    expect(ringMembersOf([...members].reverse(), 1000, GRACE)).toEqual(ringMembersOf(members, 1000, GRACE))
  })
})
