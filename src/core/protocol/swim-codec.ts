/**
 * The wire format of /meshkv/swim/1.0.0: a format byte, a message type, then its fields, with every length,
 * count and string bounded. `decodeSwim` validates everything and throws DecodeError for anything else, so
 * a peer that sends garbage can be counted and cut off and never reaches the state machine.
 *
 *   message = format (1) | type | fields
 *   ping/ack/nack = seq | updates        ping-req = seq | target | updates      gossip = updates
 *   push-pull = flags (1 join, 2 reply) | updates
 *   update = id | incarnation | state | meta | from?      meta = count | (key | tag | value)*
 */
import { Reader, Writer } from '../codec.js'
import { DecodeError } from '../errors.js'
import { REPLICA_ID_BYTES_MAX } from '../version/context.js'
import type { MemberState, Meta, SwimMessage, Update } from '../membership/swim.js'

const FORMAT = 1
const TYPES = ['ping', 'ack', 'ping-req', 'nack', 'gossip', 'push-pull'] as const
const STATES: readonly MemberState[] = ['alive', 'suspect', 'dead', 'left']

/** Largest encoded SWIM message; a full push-pull of 1,000 members with metadata fits well within it. */
export const SWIM_MESSAGE_BYTES_MAX = 4 * 1024 * 1024
/** Most updates in one message (a push-pull carries the whole table). */
export const SWIM_UPDATES_MAX = 100_000
const META_ENTRIES_MAX = 32
const META_KEY_BYTES_MAX = 64
const META_VALUE_BYTES_MAX = 1024

function writeUpdates (w: Writer, updates: readonly Update[]): void {
  w.varint(updates.length)
  for (const u of updates) {
    w.string(u.id).varint(u.incarnation).u8(STATES.indexOf(u.state))
    const entries = Object.entries(u.meta)
    w.varint(entries.length)
    for (const [k, v] of entries) {
      w.string(k)
      if (typeof v === 'number') {
        const b = new Uint8Array(8)
        new DataView(b.buffer).setFloat64(0, v, true)
        w.u8(1).raw(b)
      } else {
        w.u8(0).string(v)
      }
    }
    if (u.from === undefined) w.u8(0)
    else w.u8(1).string(u.from)
  }
}

export function encodeSwim (message: SwimMessage): Uint8Array {
  const w = new Writer(256)
  w.u8(FORMAT).u8(TYPES.indexOf(message.type))
  switch (message.type) {
    case 'ping': case 'ack': case 'nack':
      w.varint(message.seq)
      writeUpdates(w, message.updates)
      break
    case 'ping-req':
      w.varint(message.seq).string(message.target)
      writeUpdates(w, message.updates)
      break
    case 'gossip':
      writeUpdates(w, message.updates)
      break
    case 'push-pull':
      w.u8((message.join ? 1 : 0) | (message.reply ? 2 : 0))
      writeUpdates(w, message.members)
      break
  }
  return w.finish().slice()
}

function readId (r: Reader): string {
  const id = r.string(REPLICA_ID_BYTES_MAX)
  if (id.length === 0) throw new DecodeError('swim message', 'empty member id')
  return id
}

function readUpdates (r: Reader): Update[] {
  const count = r.varint()
  if (count > SWIM_UPDATES_MAX) throw new DecodeError('swim message', `${count} updates exceed ${SWIM_UPDATES_MAX}`)
  const out: Update[] = []
  for (let i = 0; i < count; i++) {
    const id = readId(r)
    const incarnation = r.varint()
    const state = STATES[r.u8()]
    if (state === undefined) throw new DecodeError('swim message', 'unknown member state')
    const metaCount = r.varint()
    if (metaCount > META_ENTRIES_MAX) throw new DecodeError('swim message', `${metaCount} metadata entries exceed ${META_ENTRIES_MAX}`)
    // A null-prototype object: a key such as "__proto__" from the network is then an ordinary property,
    // never a prototype change (fast-check found this).
    const meta: Record<string, string | number> = Object.create(null) as Record<string, string | number>
    for (let j = 0; j < metaCount; j++) {
      const key = r.string(META_KEY_BYTES_MAX)
      const tag = r.u8()
      if (tag === 0) meta[key] = r.string(META_VALUE_BYTES_MAX)
      else if (tag === 1) {
        let v = 0
        const bytes = new Uint8Array(8)
        for (let k = 0; k < 8; k++) bytes[k] = r.u8()
        v = new DataView(bytes.buffer).getFloat64(0, true)
        if (!Number.isFinite(v)) throw new DecodeError('swim message', 'non-finite metadata number')
        meta[key] = v
      } else throw new DecodeError('swim message', `unknown metadata tag ${tag}`)
    }
    const hasFrom = r.u8()
    if (hasFrom > 1) throw new DecodeError('swim message', 'bad flag')
    const base = { id, incarnation, state, meta: meta as Meta }
    out.push(hasFrom === 1 ? { ...base, from: readId(r) } : base)
  }
  return out
}

export function decodeSwim (bytes: Uint8Array): SwimMessage {
  if (bytes.length > SWIM_MESSAGE_BYTES_MAX) throw new DecodeError('swim message', `${bytes.length} bytes exceed ${SWIM_MESSAGE_BYTES_MAX}`)
  const r = new Reader(bytes, 'swim message')
  const format = r.u8()
  if (format !== FORMAT) throw new DecodeError('swim message', `unknown format ${format}`)
  const type = TYPES[r.u8()]
  let message: SwimMessage
  switch (type) {
    case 'ping': case 'ack': case 'nack':
      message = { type, seq: r.varint(), updates: readUpdates(r) }
      break
    case 'ping-req':
      message = { type, seq: r.varint(), target: readId(r), updates: readUpdates(r) }
      break
    case 'gossip':
      message = { type, updates: readUpdates(r) }
      break
    case 'push-pull': {
      const flags = r.u8()
      if (flags > 3) throw new DecodeError('swim message', 'bad push-pull flags')
      message = { type, join: (flags & 1) !== 0, reply: (flags & 2) !== 0, members: readUpdates(r) }
      break
    }
    default:
      throw new DecodeError('swim message', 'unknown message type')
  }
  r.end()
  return message
}
