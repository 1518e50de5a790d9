// Consul's user events on the gossip pool: fired as Serf events named `consul:event:NAME` with Consul's msgpack body,
// filtered by node, service and tag on arrival, kept in a ring of 256 for /v1/event/list; plain Serf events kept too.

import { createHash, randomUUID } from 'node:crypto';
import type { Catalog } from '../../catalog/catalog-store.js';
import { ChangeFeed } from '../../lib/change-feed.js';
import { NodemeshError } from '../../lib/errors.js';
import { compileLinearRegex } from '../../lib/linear-regex.js';
import { asObject, bytes, decode, encode, str, uint } from '../../membership/go-msgpack.js';
import type { SerfUserEvents, UserEvent } from '../../membership/serf-user-events.js';
import { USER_EVENT_SIZE_LIMIT } from '../../membership/serf-user-events.js';

/** Consul's prefix for its events among Serf's. */
const CONSUL_EVENT_PREFIX = 'consul:event:';
/** Consul keeps the last 256 events an agent received. */
const RING = 256;

/** Consul's api.UserEvent, as /v1/event/fire answers and /v1/event/list lists. */
export interface ConsulUserEvent {
  ID: string; Name: string; Payload: string | null; NodeFilter: string; ServiceFilter: string; TagFilter: string; Version: number; LTime: number;
}

export interface EventFilters { node?: string; service?: string; tag?: string }

/** A Go-regexp filter (found anywhere in the value), run by RE2 in linear time; a pattern it refuses is a 400. */
function filter(pattern: string, what: string): (v: string) => boolean {
  try {
    return compileLinearRegex(`(?s).*(?:${pattern}).*`);
  } catch (e) {
    throw new NodemeshError('API_BAD_QUERY', `Invalid ${what} filter ${JSON.stringify(pattern)}: ${(e as Error).message}`, 400);
  }
}

/** Consul's index for an event list: the last event's ID folded to 64 bits (its uuidToUint64). */
export function eventIndex(id: string | undefined): string {
  if (!id || id.length < 36) return '1';
  const low = BigInt(`0x${id.slice(0, 8)}${id.slice(9, 13)}${id.slice(14, 18)}`);
  const high = BigInt(`0x${id.slice(19, 23)}${id.slice(24, 36)}`);
  return String(low ^ high);
}

export class UserEventLog {
  readonly feed = new ChangeFeed();
  private readonly ring: ConsulUserEvent[] = [];

  constructor(private readonly serf: SerfUserEvents, private readonly catalog: Catalog, private readonly node: string) {}

  /** Consul's PUT /v1/event/fire/NAME: the event as Consul encodes it, fired into the pool (and kept here if it applies). */
  fire(name: string, payload: Buffer, f: EventFilters): ConsulUserEvent {
    if (!name) throw new NodemeshError('API_BAD_QUERY', 'Missing name', 400);
    for (const [k, v] of Object.entries(f)) if (v) filter(v, k);
    if (f.tag && !f.service) throw new NodemeshError('API_BAD_QUERY', 'Cannot provide tag filter without service filter', 400);
    const ev = { ID: randomUUID(), Name: name, Payload: payload.length ? payload : null, NodeFilter: f.node ?? '', ServiceFilter: f.service ?? '', TagFilter: f.tag ?? '', Version: 1, LTime: 0 };
    const body = encode({ ...ev, Payload: ev.Payload });
    if (body.length + CONSUL_EVENT_PREFIX.length + name.length > USER_EVENT_SIZE_LIMIT) {
      throw new NodemeshError('API_BAD_QUERY', `user event exceeds limit of ${USER_EVENT_SIZE_LIMIT} bytes`, 400);
    }
    this.serf.fire(CONSUL_EVENT_PREFIX + name, body);
    return { ...ev, Payload: ev.Payload ? ev.Payload.toString('base64') : null };
  }

  /** A new Serf user event: Consul's, if its filters take this node; a plain Serf event as it came. */
  receive(e: UserEvent): void {
    let ev: ConsulUserEvent;
    if (e.name.startsWith(CONSUL_EVENT_PREFIX)) {
      try {
        const o = asObject(decode(e.payload), 'consul event');
        const payload = bytes(o, 'Payload');
        ev = {
          ID: str(o, 'ID'), Name: str(o, 'Name'), Payload: payload && payload.length ? payload.toString('base64') : null,
          NodeFilter: str(o, 'NodeFilter'), ServiceFilter: str(o, 'ServiceFilter'), TagFilter: str(o, 'TagFilter'),
          Version: uint(o, 'Version'), LTime: Number(e.ltime),
        };
      } catch {
        return;
      }
      if (!/^[0-9a-f-]{36}$/.test(ev.ID) || !this.applies(ev)) return;
    } else {
      const id = createHash('sha256').update(`${e.ltime}\0${e.name}\0`).update(e.payload).digest('hex');
      ev = {
        ID: `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20, 32)}`, Name: e.name,
        Payload: e.payload.length ? e.payload.toString('base64') : null, NodeFilter: '', ServiceFilter: '', TagFilter: '', Version: 1, LTime: Number(e.ltime),
      };
    }
    this.ring.push(ev);
    if (this.ring.length > RING) this.ring.shift();
    this.feed.notify();
  }

  /** The events kept here, oldest first; `name`: only those. */
  list(name?: string): ConsulUserEvent[] {
    return name ? this.ring.filter((e) => e.Name === name) : [...this.ring];
  }

  /** Consul's shouldProcessUserEvent: the node filter against this node, the service (and tag) filter against its services. */
  private applies(ev: ConsulUserEvent): boolean {
    const safe = (p: string, what: string) => { try { return filter(p, what); } catch { return () => false; } };
    if (ev.NodeFilter && !safe(ev.NodeFilter, 'node')(this.node)) return false;
    if (!ev.ServiceFilter) return true;
    const services = [...(this.catalog.getNode(this.node)?.services.values() ?? [])];
    const svc = safe(ev.ServiceFilter, 'service');
    const tag = ev.TagFilter ? safe(ev.TagFilter, 'tag') : undefined;
    return services.some((s) => svc(s.Service) && (!tag || s.Tags.some(tag)));
  }
}
