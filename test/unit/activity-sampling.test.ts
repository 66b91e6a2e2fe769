import { describe, expect, it } from 'vitest'
import { SampleSchedule } from '../../web/sampling.js'

const options = { periodMs: 2000, perPeriod: 3, idleGapMaxMs: 30_000 }

/** Runs `periods` sampling periods over `members`; `changes(id, t)` says whether a member's figures changed. */
function run (schedule: SampleSchedule, members: string[], periods: number, changes: (id: string, t: number) => boolean, startMs = 0): { asked: Map<string, number>; total: number } {
  const asked = new Map<string, number>()
  let total = 0
  for (let p = 0; p < periods; p++) {
    const t = startMs + p * options.periodMs
    for (const id of schedule.next(members, t)) {
      asked.set(id, (asked.get(id) ?? 0) + 1)
      total++
      schedule.answered(id, t, changes(id, t))
    }
  }
  return { asked, total }
}

describe('activity sampling schedule', () => {
  const members = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']

  it('asks at most perPeriod members a period, every member in turn', () => {
    const s = new SampleSchedule(options)
    const first = s.next(members, 0)
    expect(first).toEqual(['a', 'b', 'c'])
    for (const id of first) s.answered(id, 0, true)
    expect(s.next(members, 2000)).toEqual(['d', 'e', 'f'])
  })

  it('a busy mesh: every member is asked every ceil(n / perPeriod) periods, as before', () => {
    const s = new SampleSchedule(options)
    const { asked, total } = run(s, members, 30, () => true)
    expect(total).toBe(90)
    for (const id of members) expect(asked.get(id)).toBe(10)
  })

  it('an idle mesh: unchanged members back off to idleGapMaxMs, so requests fall several fold', () => {
    const s = new SampleSchedule(options)
    const { total } = run(s, members, 300, () => false) // 10 minutes
    // Busy: 3 a period = 900. Idle: each member about once per 30 s after a short ramp.
    expect(total).toBeLessThan(900 / 4)
    expect(total).toBeGreaterThanOrEqual(9 * Math.floor(600_000 / 30_000) - 9)
    for (const id of members) expect(s.gapMs(id)).toBe(30_000)
  })

  it('a member whose figures change is asked every period again', () => {
    const s = new SampleSchedule(options)
    run(s, members, 100, () => false)
    expect(s.gapMs('e')).toBe(30_000)
    // 'e' changes: once asked, it stays at the period while it keeps changing.
    let t = 100 * 2000
    let seen = 0
    for (let p = 0; p < 20; p++, t += 2000) for (const id of s.next(members, t)) { if (id === 'e') seen++; s.answered(id, t, id === 'e') }
    expect(s.gapMs('e')).toBe(2000)
    expect(seen).toBeGreaterThanOrEqual(10)
  })

  it('busy() (this tab\'s own figures changed) makes every member due at once', () => {
    const s = new SampleSchedule(options)
    run(s, members, 100, () => false)
    const t = 100 * 2000
    s.busy(t)
    expect(s.next(members, t)).toHaveLength(3)
    for (const id of members) expect(s.gapMs(id)).toBe(2000)
  })

  it('an unanswered member is asked again next period; members that leave are forgotten; new ones are due at once', () => {
    const s = new SampleSchedule(options)
    run(s, members, 100, () => false)
    s.unanswered('a', 200_000)
    expect(s.gapMs('a')).toBe(2000)
    const fewer = members.filter(id => id !== 'b')
    s.next([...fewer, 'z'], 200_000)
    expect(s.gapMs('b')).toBeUndefined()
    const s2 = new SampleSchedule(options)
    run(s2, members, 100, () => false)
    let asked = false
    for (let p = 0; p < 4 && !asked; p++) {
      const t = 200_000 + p * 2000
      for (const id of s2.next([...members, 'zz'], t)) { if (id === 'zz') asked = true; s2.answered(id, t, false) }
    }
    expect(asked).toBe(true)
  })

  it('no members: nothing to ask', () => {
    expect(new SampleSchedule(options).next([], 0)).toEqual([])
  })
})
