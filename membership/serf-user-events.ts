// Serf user events: fired with the event clock, received once each (a ring of 512 LTimes, as Serf keeps), re-gossiped when new.

import { asObject, bool, bytes, decode, str, type GoValue } from './go-msgpack.js';
import { LamportClock, ltimeOf } from './lamport-clock.js';

/** Serf's user-event buffer: events more than this many LTimes old are dropped, newer ones deduplicated. */
const EVENT_BUFFER = 512;
/** Serf's limit on an event's name and payload together. */
export const USER_EVENT_SIZE_LIMIT = 512;

export interface UserEvent { name: string; payload: Buffer; ltime: bigint; coalesce: boolean }

export class SerfUserEvents {
  readonly clock = new LamportClock();
  /** LTime % 512 → the LTime held there and the events seen at it (name + payload). */
  private readonly seen = new Map<number, { ltime: bigint; keys: Set<string> }>();

  constructor(
    /** Gossips a Serf message (type byte and body) to the pool. */
    private readonly broadcast: (type: number, body: GoValue) => void,
    /** A new event, ours or a peer's. */
    private readonly deliver: (e: UserEvent) => void,
  ) {}

  /** Fires an event into the pool (and delivers it here, as Serf does). */
  fire(name: string, payload: Buffer, coalesce = false): UserEvent {
    const ltime = this.clock.time();
    this.clock.increment();
    const e = { name, payload, ltime, coalesce };
    this.remember(e);
    this.broadcast(3, { CC: coalesce, LTime: ltime, Name: name, Payload: payload });
    this.deliver(e);
    return e;
  }

  /** A user-event message from a peer (its body, after the type byte); whether it was new (and so is gossiped on). */
  receive(body: Buffer): boolean {
    const o = asObject(decode(body), 'user event');
    const ltime = ltimeOf(o.LTime);
    if (ltime === undefined) return false;
    this.clock.witness(ltime);
    const e = { name: str(o, 'Name'), payload: bytes(o, 'Payload') ?? Buffer.alloc(0), ltime, coalesce: bool(o, 'CC') };
    if (this.clock.time() > BigInt(EVENT_BUFFER) && ltime < this.clock.time() - BigInt(EVENT_BUFFER)) return false;
    if (!this.remember(e)) return false;
    this.deliver(e);
    return true;
  }

  /** Records an event as seen; false when it was seen already. */
  private remember(e: UserEvent): boolean {
    const slot = Number(e.ltime % BigInt(EVENT_BUFFER));
    const key = `${e.name}\0${e.payload.toString('base64')}`;
    let at = this.seen.get(slot);
    if (!at || at.ltime !== e.ltime) {
      at = { ltime: e.ltime, keys: new Set() };
      this.seen.set(slot, at);
    }
    if (at.keys.has(key)) return false;
    at.keys.add(key);
    return true;
  }
}
