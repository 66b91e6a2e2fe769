/**
 * Which relays a tab holds reservations on. Every Node peer runs a circuit relay; a tab keeps reservations
 * on RELAYS_WANTED of them, so that losing one relay (its process, its host) never leaves the tab
 * unreachable for WebRTC signalling. The choice spreads like placement does (ring.ts): the relay whose page
 * the tab was opened on first (it joined through that peer), then relays at locations the tab does not use
 * yet, and a location is repeated only when no other is left. Within each group the order is a rendezvous
 * hash of (tab, relay), so tabs spread evenly over the relays of a mesh and a relay's departure moves only
 * the tabs that used it. Pure: no I/O, no clock.
 */

/** Relays a tab keeps reservations on. */
export const RELAYS_WANTED = 2

export interface RelayCandidate {
  id: string
  /** The relay's failure domain (its member metadata `location`); '' when not known yet. */
  location: string
}

/** 32-bit FNV-1a: a rendezvous score, identical in every runtime. */
function score (self: string, relay: string): number {
  let h = 0x811c9dc5
  const s = `${self}|${relay}`
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/**
 * Orders `candidates` (relays not held now) by preference for tab `self`, given the relays it `held`:
 * `preferred` ones first, then those at a location not used yet (by held relays or ones ranked before),
 * each group by rendezvous score. An unknown location ('') counts as a location of its own.
 */
export function rankRelays (self: string, candidates: readonly RelayCandidate[], held: readonly RelayCandidate[], preferred: ReadonlySet<string> = new Set()): RelayCandidate[] {
  const used = new Set(held.map(r => r.location).filter(l => l !== ''))
  const heldIds = new Set(held.map(r => r.id))
  const left = candidates.filter(c => !heldIds.has(c.id) && c.id !== self)
    .map(c => ({ c, score: score(self, c.id) }))
  const out: RelayCandidate[] = []
  while (left.length > 0) {
    let best = 0
    for (let i = 1; i < left.length; i++) {
      if (better(left[i]!, left[best]!, used, preferred)) best = i
    }
    const [pick] = left.splice(best, 1)
    out.push(pick!.c)
    if (pick!.c.location !== '') used.add(pick!.c.location)
  }
  return out
}

function better (a: { c: RelayCandidate; score: number }, b: { c: RelayCandidate; score: number }, used: ReadonlySet<string>, preferred: ReadonlySet<string>): boolean {
  const pa = preferred.has(a.c.id)
  const pb = preferred.has(b.c.id)
  if (pa !== pb) return pa
  const na = !used.has(a.c.location)
  const nb = !used.has(b.c.location)
  if (na !== nb) return na
  return a.score !== b.score ? a.score < b.score : a.c.id < b.c.id
}
