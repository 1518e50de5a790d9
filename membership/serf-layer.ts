// The Serf layer on top of memberlist: tags as node meta, Lamport clocks, join and leave intents, user events and
// queries (answered as a member answers them); nodemesh's own messages ride along to nodemesh peers only.

import { NodemeshError } from '../lib/errors.js';
import { asObject, decode, encode, str, uint, type GoValue } from './go-msgpack.js';
import { BroadcastQueue } from './broadcast-queue.js';
import { Memberlist, type GossipLog, type MemberlistConfig, type NodeRecord } from './memberlist.js';
import { MsgType, NodeState } from './wire-messages.js';
import { LamportClock } from './lamport-clock.js';
import { SerfQueries } from './serf-queries.js';
import { SerfUserEvents, type UserEvent } from './serf-user-events.js';
import { compileLinearRegex } from '../lib/linear-regex.js';
import { decodePingPayload, encodePingPayload, type Coordinate } from './network-coordinate.js';
import { VivaldiClient } from './vivaldi-client.js';

export const SerfType = { leave: 0, join: 1, pushPull: 2, userEvent: 3, query: 4, queryResponse: 5 } as const;

export interface Member { name: string; addr: string; port: number; tags: Record<string, string>; status: 'alive' | 'leaving' | 'left' | 'failed' }


export function encodeTags(tags: Record<string, string>): Buffer {
  const meta = Buffer.concat([Buffer.from([0xff]), encode(tags)]);
  if (meta.length > 512) throw new NodemeshError('SERF_TAGS_TOO_LARGE', `serf tags are ${meta.length} bytes encoded; the limit is 512`, 500);
  return meta;
}

export function decodeTags(meta: Buffer): Record<string, string> {
  if (meta.length === 0 || meta[0] !== 0xff) return { role: meta.toString('utf8') };
  try {
    const o = asObject(decode(meta.subarray(1)), 'tags');
    return Object.fromEntries(Object.keys(o).map((k) => [k, str(o, k)]));
  } catch {
    return {};
  }
}

export class SerfNode {
  readonly memberlist: Memberlist;
  private readonly clock = new LamportClock();
  /** Serf user events: fired and received here, each once. */
  readonly events: SerfUserEvents;
  private readonly queries: SerfQueries;
  /** A new user event (ours or a peer's), for the agent's event list. */
  onUserEvent?: (e: UserEvent) => void;
  private readonly queue: BroadcastQueue;
  /** Our own messages: piggybacked only on packets to peers that run nodemesh, so a Serf member never sees one. */
  private readonly appQueue: BroadcastQueue;
  /** addr:port of the members whose tags say they run nodemesh (`td`); rebuilt after a membership change. */
  private appPeers?: Set<string>;
  private readonly leftIntents = new Map<string, bigint>();
  /** Our network coordinate (from probe round trips) and the ones peers' acks carried. */
  private readonly vivaldi = new VivaldiClient();

  /** nodemesh's own data riding on the pool (catalog, intentions): our message type and our push/pull state. */
  app?: {
    /** Our messages carry this first byte, outside Serf's range; they go to nodemesh peers only (a Serf peer would log them). */
    type: number;
    onMessage(body: Buffer, from?: string): void;
    localState(): Buffer;
    mergeState(state: Buffer): void;
  };

  constructor(config: MemberlistConfig, private tags: Record<string, string>, private readonly log: GossipLog, private readonly onChange: () => void = () => undefined) {
    this.memberlist = new Memberlist(config, {
      nodeMeta: () => encodeTags(this.tags),
      notifyMsg: (msg) => this.onSerfMessage(msg),
      getBroadcasts: (overhead, budget, to) => this.takeSerfBroadcasts(overhead, budget, to),
      // Serf's own push/pull state, with our data under an extra key that Serf's decoder skips.
      localState: () => Buffer.concat([Buffer.from([SerfType.pushPull]), encode({
        LTime: this.clock.time(), StatusLTimes: {}, LeftMembers: [], EventLTime: this.events.clock.time(), Events: null, QueryLTime: this.queries.clock.time(),
        ...(this.app ? { Nodemesh: this.app.localState() } : {}),
      })]),
      mergeRemoteState: (state) => {
        if (state[0] !== SerfType.pushPull) return;
        try {
          const o = asObject(decode(state.subarray(1)), 'serf push/pull');
          const lt = o.LTime;
          if (typeof lt === 'number' && lt > 0) this.clock.witness(BigInt(lt) - 1n);
          for (const [k, c] of [['EventLTime', this.events.clock], ['QueryLTime', this.queries.clock]] as const) {
            const v = o[k];
            if (typeof v === 'number' && v > 0) c.witness(BigInt(v) - 1n);
          }
          const ours = o.Nodemesh;
          if (this.app && Buffer.isBuffer(ours)) this.app.mergeState(ours);
        } catch (e) {
          this.log.debug({ err: (e as Error).message }, 'serf push/pull state ignored');
        }
      },
      ackPayload: () => encodePingPayload(this.vivaldi.own),
      notifyPingComplete: (n, rttMs, payload) => {
        try {
          if (!this.vivaldi.update(n.name, decodePingPayload(payload), rttMs)) this.log.debug({ node: n.name, rttMs }, 'round trip out of range: coordinate not updated');
        } catch (e) {
          this.log.debug({ node: n.name, err: (e as Error).message }, 'ack payload ignored');
        }
      },
      notifyJoin: () => { this.appPeers = undefined; this.onChange(); },
      notifyLeave: (n) => {
        if (n.state === NodeState.left) this.vivaldi.forget(n.name);
        this.appPeers = undefined;
        this.onChange();
      },
      notifyUpdate: () => { this.appPeers = undefined; this.onChange(); },
    }, log);
    this.queue = new BroadcastQueue(this.memberlist.cfg.retransmitMult, () => this.memberlist.nodes.size);
    this.appQueue = new BroadcastQueue(this.memberlist.cfg.retransmitMult, () => this.memberlist.nodes.size);
    this.events = new SerfUserEvents((type, body) => this.broadcast(type, body), (e) => this.onUserEvent?.(e));
    this.queries = new SerfQueries({
      name: config.name,
      tags: () => this.tags,
      rebroadcast: (raw) => this.queue.queue(Buffer.concat([Buffer.from([MsgType.user]), raw])),
      send: (msg, addr, port) => this.memberlist.sendUser(msg, addr, port),
      keys: () => this.memberlist.cfg.keys.map((k) => k.toString('base64')),
      isMember: (addr, port) => [...this.memberlist.nodes.values()].some((n) => n.addr === addr && n.port === port && n.state !== NodeState.dead && n.state !== NodeState.left),
      matches: (pattern, value) => {
        // Go's MatchString finds the pattern anywhere in the value; RE2 in linear time, as every user regex here.
        try { return compileLinearRegex(`(?s).*(?:${pattern}).*`)(value); } catch { return false; }
      },
    });
  }

  async start(): Promise<void> {
    await this.memberlist.start();
  }

  async join(addrs: string[]): Promise<number> {
    const n = await this.memberlist.join(addrs);
    if (n > 0) {
      const ltime = this.clock.time();
      this.clock.witness(ltime);
      this.broadcast(SerfType.join, { LTime: ltime, Node: this.memberlist.cfg.name });
    }
    return n;
  }

  private broadcast(type: number, body: GoValue): void {
    this.queue.queue(Buffer.concat([Buffer.from([MsgType.user, type]), encode(body)]));
  }

  private takeSerfBroadcasts(overhead: number, budget: number, to: string): Buffer[] {
    const serf = this.queue.take(overhead, budget);
    this.appPeers ??= new Set([...this.memberlist.nodes.values()].filter((n) => decodeTags(n.meta).td !== undefined).map((n) => `${n.addr}:${n.port}`));
    if (!this.appPeers.has(to)) return serf;
    const used = serf.reduce((a, b) => a + b.length + overhead, 0);
    return [...serf, ...this.appQueue.take(overhead, budget - used)];
  }

  /** Gossips one of our messages to the pool (piggybacked, transmit-limited like Serf's own). */
  broadcastApp(body: Buffer, key?: string): void {
    if (!this.app) return;
    this.appQueue.queue(Buffer.concat([Buffer.from([MsgType.user, this.app.type]), body]), key === undefined ? undefined : `app:${key}`);
  }

  private onSerfMessage(msg: Buffer): void {
    const type = msg[0];
    if (this.app && type === this.app.type) {
      try { this.app.onMessage(msg.subarray(1)); } catch (e) { this.log.debug({ err: (e as Error).message }, 'nodemesh gossip message ignored'); }
      return;
    }
    try {
      if (type === SerfType.join || type === SerfType.leave) {
        const o = asObject(decode(msg.subarray(1)), 'intent');
        const lt = o.LTime;
        const ltime = typeof lt === 'bigint' ? lt : BigInt(uint(o, 'LTime', Number.MAX_SAFE_INTEGER));
        this.clock.witness(ltime);
        if (type === SerfType.leave) this.leftIntents.set(str(o, 'Node'), ltime);
        else this.leftIntents.delete(str(o, 'Node'));
        this.onChange();
      }
      else if (type === SerfType.userEvent) {
        // New to us: gossiped on, as Serf re-gossips what it has not seen.
        if (this.events.receive(msg.subarray(1))) this.queue.queue(Buffer.concat([Buffer.from([MsgType.user]), msg]));
      } else if (type === SerfType.query) this.queries.receive(msg.subarray(1), msg);
      // Query responses are for the member that asked (nodemesh asks none): ignored.
    } catch (e) {
      this.log.debug({ err: (e as Error).message, type }, 'serf message ignored');
    }
  }

  /** Whether a member left: gracefully (memberlist's own leave, or Serf's intent) or by a force-leave. */
  hasLeft(name: string): boolean {
    const n = this.memberlist.nodes.get(name);
    return n !== undefined && (n.state === NodeState.left || (n.state === NodeState.dead && this.leftIntents.has(name)));
  }

  members(): Member[] {
    return [...this.memberlist.nodes.values()].map((n: NodeRecord) => ({
      name: n.name, addr: n.addr, port: n.port, tags: decodeTags(n.meta),
      status: n.state === NodeState.alive || n.state === NodeState.suspect ? 'alive'
        : this.hasLeft(n.name) ? 'left' : 'failed',
    }));
  }

  /** Network coordinates: ours, and each member's that one of its acks carried (members that left are not listed). */
  coordinates(): Map<string, Coordinate> {
    const out = new Map<string, Coordinate>([[this.memberlist.cfg.name, this.vivaldi.own]]);
    for (const name of this.vivaldi.peerNames()) {
      const c = this.vivaldi.peer(name);
      // A member reaped from the table is forgotten here, so the cache does not grow with churn.
      if (!this.memberlist.nodes.has(name)) this.vivaldi.forget(name);
      else if (c && !this.hasLeft(name)) out.set(name, c);
    }
    return out;
  }

  setTags(tags: Record<string, string>): void {
    this.tags = tags;
    this.memberlist.updateMeta();
  }

  /**
   * Serf's force-leave: a failed member is announced as left (a leave intent on its behalf), so every member drops it
   * now rather than after reconnect_timeout. A member that is alive is not touched. Whether the name is a member.
   */
  forceLeave(name: string): boolean {
    const n = this.memberlist.nodes.get(name);
    if (!n) return false;
    if (n.state !== NodeState.dead) return true;
    const ltime = this.clock.time();
    this.clock.increment();
    this.leftIntents.set(name, ltime);
    this.broadcast(SerfType.leave, { LTime: ltime, Node: name, Prune: false });
    this.onChange();
    return true;
  }

  /** Graceful leave: Serf's leave intent first (so peers say `left`, not `failed`), then memberlist's. */
  async leave(): Promise<void> {
    const ltime = this.clock.time();
    this.clock.increment();
    this.broadcast(SerfType.leave, { LTime: ltime, Node: this.memberlist.cfg.name, Prune: false });
    await this.memberlist.leave(2000);
  }

  shutdown(): Promise<void> {
    return this.memberlist.shutdown();
  }
}
