/**
 * Which members the dashboard's activity view asks for their figures, and when (pure: no DOM, no timers; the
 * caller passes the time). Each period it asks at most `perPeriod` members, in turn, so a tab's cost does not
 * grow with the mesh. A member whose figures did not change since it was last asked is asked half as often
 * each time, down to once every `idleGapMaxMs`: an idle mesh costs each tab a few requests a minute instead
 * of `perPeriod` every period, and every request is also work for the member that answers it. Any change,
 * in that member's figures or in this tab's own, puts it (for this tab's own: every member) back to every
 * period, so activity shows within a period on the members that take part in it, and on every other member
 * once it is next asked.
 */

export interface SamplingOptions {
  /** The sampling period, ms: a changing member is asked about this often. */
  periodMs: number
  /** Members asked per period at most. */
  perPeriod: number
  /** Longest gap between two requests to a member whose figures stay the same, ms. */
  idleGapMaxMs: number
}

interface Due { atMs: number; gapMs: number }

export class SampleSchedule {
  private readonly due = new Map<string, Due>()
  private cursor = 0

  constructor (private readonly o: SamplingOptions) {}

  /**
   * The members to ask now (at most `perPeriod`, taken in turn from those due), out of `up` (members other
   * than this tab). Members no longer in `up` are forgotten; new ones are due at once.
   */
  next (up: readonly string[], nowMs: number): string[] {
    const ids = [...up].sort()
    const current = new Set(ids)
    for (const id of this.due.keys()) if (!current.has(id)) this.due.delete(id)
    const batch: string[] = []
    for (let i = 0; i < ids.length && batch.length < this.o.perPeriod; i++) {
      const id = ids[(this.cursor + i) % ids.length]!
      // Half a period's slack: a timer that fires a little early still finds a member due this period.
      if ((this.due.get(id)?.atMs ?? -Infinity) <= nowMs + this.o.periodMs / 2) batch.push(id)
    }
    if (ids.length > 0 && batch.length > 0) this.cursor = (ids.indexOf(batch[batch.length - 1]!) + 1) % ids.length
    return batch
  }

  /** `id` answered at `nowMs`; `changed` says whether its figures differ from its previous answer. */
  answered (id: string, nowMs: number, changed: boolean): void {
    const gapMs = changed ? this.o.periodMs : Math.min(this.o.idleGapMaxMs, 2 * (this.due.get(id)?.gapMs ?? this.o.periodMs / 2))
    this.due.set(id, { atMs: nowMs + gapMs, gapMs })
  }

  /** `id` did not answer: asked again next period. */
  unanswered (id: string, nowMs: number): void {
    this.due.set(id, { atMs: nowMs + this.o.periodMs, gapMs: this.o.periodMs })
  }

  /** This tab's own figures changed, so the mesh is busy: every member is due again every period. */
  busy (nowMs: number): void {
    for (const [id, d] of this.due) if (d.gapMs > this.o.periodMs) this.due.set(id, { atMs: Math.min(d.atMs, nowMs), gapMs: this.o.periodMs })
  }

  /** The gap before `id` is asked again, ms (for tests and the curious). */
  gapMs (id: string): number | undefined {
    return this.due.get(id)?.gapMs
  }
}
