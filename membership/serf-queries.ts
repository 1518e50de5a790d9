// Serf queries as a member answers them: once per (LTime, ID), re-gossiped, acked when asked; `_serf_ping` and
// `_serf_list-keys` answered (never disclosing a second key), key changes refused (nodemesh's own API only).

import { asObject, bytes, decode, encode, str, uint, type GoValue } from './go-msgpack.js';
import { LamportClock, ltimeOf } from './lamport-clock.js';

const QUERY_BUFFER = 512;
const FLAG_ACK = 1;
const FLAG_NO_BROADCAST = 2;
/** Serf's type bytes for a query response and for a key response inside its payload. */
const QUERY_RESPONSE = 5;
const KEY_RESPONSE = 8;

export interface QueryIo {
  /** This member's name (a query's `From`, and what a node filter names). */
  name: string;
  /** This member's tags, for tag filters. */
  tags(): Record<string, string>;
  /** Gossips the query on, as it came (its type byte and body). */
  rebroadcast(raw: Buffer): void;
  /** Sends a Serf message straight to addr:port by UDP (no piggyback). */
  send(msg: Buffer, addr: string, port: number): void;
  /** The gossip keys, primary first, base64. */
  keys(): string[];
  /** Tests a tag filter's regex against a value, in linear time; false for a pattern it cannot take. */
  matches(pattern: string, value: string): boolean;
  /** Whether addr:port is a member's gossip address: answers go only there, never to an address a query names at will. */
  isMember(addr: string, port: number): boolean;
}

export class SerfQueries {
  readonly clock = new LamportClock();
  private readonly seen = new Map<number, { ltime: bigint; ids: Set<number> }>();

  constructor(private readonly io: QueryIo) {}

  /** A query message (its body after the type byte); `raw` is the whole message, for re-gossip. */
  receive(body: Buffer, raw: Buffer): void {
    const q = asObject(decode(body), 'query');
    const ltime = ltimeOf(q.LTime);
    if (ltime === undefined) return;
    this.clock.witness(ltime);
    if (this.clock.time() > BigInt(QUERY_BUFFER) && ltime < this.clock.time() - BigInt(QUERY_BUFFER)) return;
    const id = uint(q, 'ID');
    const slot = Number(ltime % BigInt(QUERY_BUFFER));
    let at = this.seen.get(slot);
    if (!at || at.ltime !== ltime) {
      at = { ltime, ids: new Set() };
      this.seen.set(slot, at);
    }
    if (at.ids.has(id)) return;
    at.ids.add(id);
    const flags = uint(q, 'Flags');
    if (!(flags & FLAG_NO_BROADCAST)) this.io.rebroadcast(raw);
    if (!this.passes(q.Filters)) return;
    const addr = ipOf(bytes(q, 'Addr'));
    const port = uint(q, 'Port', 65535);
    // A query could name any address: answering it from every member would make the pool a reflector.
    if (!addr || !port || !this.io.isMember(addr, port)) return;
    const reply = (payload: Buffer | null, ack = false) => {
      const body: GoValue = { Flags: ack ? FLAG_ACK : 0, From: this.io.name, ID: id, LTime: ltime, Payload: payload };
      this.io.send(Buffer.concat([Buffer.from([QUERY_RESPONSE]), encode(body)]), addr, port);
    };
    if (flags & FLAG_ACK) reply(null, true);
    const name = str(q, 'Name');
    if (name === '_serf_ping') return;
    if (name === '_serf_list-keys') {
      // One key: whoever could send this query holds it already. More (a rotation under way): the querier may hold
      // only the old one, and learning the new one would undo the rotation — nodemesh does not tell.
      const keys = this.io.keys();
      if (keys.length > 1) return reply(keyResponse({ Result: false, Message: 'nodemesh does not disclose its keyring over gossip while it holds more than one key (a rotation): list it with nodemesh keyring on the agent', Keys: [], PrimaryKey: '' }));
      return reply(keyResponse({ Result: true, Message: '', Keys: keys, PrimaryKey: keys[0] ?? '' }));
    }
    if (name === '_serf_install-key' || name === '_serf_use-key' || name === '_serf_remove-key') {
      return reply(keyResponse({ Result: false, Message: 'nodemesh changes its gossip keyring through its own API only (nodemesh keyring, PUT /v1/operator/keyring on each agent)', Keys: [], PrimaryKey: '' }));
    }
    // Any other query: acked when asked; nodemesh runs no query handlers, so no answer.
  }

  /** Serf's filters: every one must pass — node names (type 0) or a tag's value against a regex (type 1). */
  private passes(filters: unknown): boolean {
    if (!Array.isArray(filters)) return true;
    for (const f of filters) {
      if (!Buffer.isBuffer(f) || f.length < 1) return false;
      const body = decode(f.subarray(1));
      if (f[0] === 0) {
        if (!Array.isArray(body) || !body.some((n) => Buffer.isBuffer(n) && n.toString('utf8') === this.io.name)) return false;
      } else if (f[0] === 1) {
        const o = asObject(body, 'tag filter');
        const value = this.io.tags()[str(o, 'Tag')];
        if (value === undefined || !this.io.matches(str(o, 'Expr'), value)) return false;
      } else return false;
    }
    return true;
  }
}

function keyResponse(r: { Result: boolean; Message: string; Keys: string[]; PrimaryKey: string }): Buffer {
  return Buffer.concat([Buffer.from([KEY_RESPONSE]), encode(r)]);
}

/** An address as Serf sends it: 4 or 16 bytes. */
function ipOf(b: Buffer | null): string | undefined {
  if (!b) return undefined;
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) {
    if (b.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]))) return [...b.subarray(12)].join('.');
    return (b.toString('hex').match(/.{4}/g) ?? []).join(':');
  }
  return undefined;
}
