/**
 * Mesh-wide agreement: the settings every member of a mesh must share, because each member computes every
 * key's preference list on its own from the member set (no agreement round, Dynamo §4.2). Two members that
 * differ in N, in `minDurable`, in the placement rules (the protocol version) or in how keys hash onto the
 * ring would each hand a key to different replicas: writes acknowledged by one would be invisible to reads
 * coordinated by the other. `durableAcks` is the mesh's durability floor: a replica that coordinates a
 * forwarded write refuses a `dw` below its own floor, so a member with a lower one would see its forwarded
 * writes fail, and acknowledge its own with fewer durable copies than the mesh promises. So every member publishes these settings in its SWIM metadata, and a member
 * whose settings differ is refused: it never enters the membership table or the ring (src/core/membership).
 * memberlist does the same with the protocol versions on its alive and push-pull messages, and Consul
 * refuses members of another datacenter in its merge hook.
 *
 * What is not here, because it may differ per peer: R, W and strict quorum (each coordinator
 * applies its own to the requests it coordinates), vnodes, location and durability (each member publishes
 * its own, and every peer builds the ring from what was published), timeouts and limits.
 *
 * Older builds: a member whose metadata lacks `n`, `minDurable`, `durableAcks` or `ring` is a build from before these were
 * published; what it lacks cannot be compared and is taken as agreeing (it still must speak a compatible
 * protocol version), so a mesh can be upgraded one peer at a time. Its N is then the operator's to check.
 * A member that publishes no `proto` at all is taken to speak version 1, which no build since has accepted.
 */
import type { Meta } from './membership/swim.js'

export interface MeshAgreement {
  /** The protocol version this build speaks (PROTOCOL_VERSION in src/peer.ts). */
  proto: number
  /** The oldest protocol version this build still works with; equal to `proto` until a build can speak two. */
  protoMin: number
  /** Replicas per key. */
  n: number
  /** Durable members among every key's primaries (placement). */
  minDurable: number
  /** Durable acknowledgements every write needs at least (a request may raise it, not lower it). */
  durableAcks: number
  /** How keys and tokens map to ring positions (RING_HASH_SCHEME in src/core/ring/hash.ts). */
  ringScheme: string
}

/** The metadata keys the agreement is published under (`proto` predates the others). */
export const AGREEMENT_META_KEYS = { proto: 'proto', protoMin: 'protoMin', n: 'n', minDurable: 'minDurable', durableAcks: 'durableAcks', ringScheme: 'ring' } as const

/** The protocol version assumed for a member that publishes none. */
export const PROTO_UNPUBLISHED = 1

/** The agreement as member metadata entries. */
export function agreementMeta (a: MeshAgreement): Record<string, string | number> {
  return { proto: a.proto, protoMin: a.protoMin, n: a.n, minDurable: a.minDurable, durableAcks: a.durableAcks, ring: a.ringScheme }
}

/** One setting on which two members disagree, with both values as published (`remote` may be missing). */
export interface Mismatch {
  readonly setting: 'proto' | 'n' | 'minDurable' | 'durableAcks' | 'ring'
  readonly local: string
  readonly remote: string
}

function shown (value: string | number | undefined): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value)
}

/**
 * Every setting on which a member publishing `remote` disagrees with this one, empty when the two can share
 * a mesh. Symmetric: A refuses B exactly when B refuses A, so both sides of a refused join log it.
 * Protocol versions agree when each side's version is one the other still works with
 * (`remote.proto >= local.protoMin` and `local.proto >= remote.protoMin`); the other settings must be equal
 * when both publish them.
 */
export function mismatches (local: MeshAgreement, remote: Meta): Mismatch[] {
  const out: Mismatch[] = []
  const proto = remote[AGREEMENT_META_KEYS.proto] ?? PROTO_UNPUBLISHED
  const protoMin = remote[AGREEMENT_META_KEYS.protoMin] ?? proto
  const protoOk = typeof proto === 'number' && typeof protoMin === 'number' && protoMin <= proto &&
    proto >= local.protoMin && local.proto >= protoMin
  if (!protoOk) {
    const range = (cur: string | number, min: string | number): string => (cur === min ? shown(cur) : `${shown(cur)} (works with ${shown(min)}..${shown(cur)})`)
    out.push({ setting: 'proto', local: range(local.proto, local.protoMin), remote: range(proto, protoMin) })
  }
  const equal = (setting: 'n' | 'minDurable' | 'durableAcks' | 'ring', mine: string | number): void => {
    const theirs = remote[setting]
    if (theirs !== undefined && theirs !== mine) out.push({ setting, local: shown(mine), remote: shown(theirs) })
  }
  equal('n', local.n)
  equal('minDurable', local.minDurable)
  equal('durableAcks', local.durableAcks)
  equal('ring', local.ringScheme)
  return out
}

/** Why a member publishing `remote` cannot share this member's mesh (`n=5 here, n=3 there; ...`), or null. */
export function compatibility (local: MeshAgreement, remote: Meta): string | null {
  const found = mismatches(local, remote)
  return found.length === 0 ? null : describeMismatches(found)
}

export function describeMismatches (found: readonly Mismatch[]): string {
  return found.map(m => `${m.setting}=${m.local} here, ${m.setting}=${m.remote} there`).join('; ')
}
