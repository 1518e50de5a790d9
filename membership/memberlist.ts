// A memberlist (v0.2.2 wire) node, enough for a real Serf agent to count it as a member: config, start, timers, gossip, leave, shutdown.

import { Awareness } from './awareness.js';
import { BroadcastQueue } from './broadcast-queue.js';
import { livePeers, selfOf, type GossipLog, type MemberlistConfig, type MemberlistContext, type MemberlistDelegate, type NodeRecord } from './memberlist-context.js';
import { NodeStates } from './node-state.js';
import { compound } from './packet-codec.js';
import { PacketTransport, UDP_BUFFER } from './packet-transport.js';
import { Prober } from './probe.js';
import { PushPull } from './push-pull.js';
import * as m from './wire-messages.js';
import { NodeState, VSN } from './wire-messages.js';

export type { GossipLog, MemberlistConfig, MemberlistDelegate, NodeRecord } from './memberlist-context.js';
export { EncryptionMismatch } from './stream-reader.js';

/**
 * The node table with incarnations, probing, suspicion, gossip and push/pull anti-entropy over UDP and TCP on one
 * port. The work is done by its parts (packet-transport.ts, node-state.ts, probe.ts, push-pull.ts), which share
 * this node's state through a MemberlistContext.
 */
export class Memberlist {
  readonly nodes = new Map<string, NodeRecord>();
  readonly broadcasts: BroadcastQueue;
  readonly awareness: Awareness;
  private timers: NodeJS.Timeout[] = [];
  readonly cfg: Required<MemberlistConfig>;
  /** Packets and bytes dropped for bad framing, bad crypto or bad msgpack. */
  readonly dropped = { packets: 0, decrypt: 0 };
  /** UDP traffic counters, for metrics and the convergence benchmark. */
  readonly traffic = { packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0 };
  private readonly ctx: MemberlistContext;
  private readonly states: NodeStates;
  private readonly transport: PacketTransport;
  private readonly prober: Prober;
  private readonly pushPull: PushPull;

  constructor(config: MemberlistConfig, private readonly delegate: MemberlistDelegate, private readonly log: GossipLog) {
    this.cfg = {
      name: config.name, bindAddr: config.bindAddr, advertiseAddr: config.advertiseAddr ?? config.bindAddr, port: config.port,
      keys: [], compression: true, probeIntervalMs: 1000, probeTimeoutMs: 500, gossipIntervalMs: 200, gossipNodes: 3,
      suspicionMult: 4, suspicionMaxTimeoutMult: 6, awarenessMaxMultiplier: 8, retransmitMult: 4, pushPullIntervalMs: 30_000, tcpTimeoutMs: 10_000, gossipToTheDeadMs: 30_000,
      reconnectIntervalMs: 30_000,
      ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
    } as Required<MemberlistConfig>;
    this.broadcasts = new BroadcastQueue(this.cfg.retransmitMult, () => this.nodes.size);
    this.awareness = new Awareness(this.cfg.awarenessMaxMultiplier);
    this.ctx = {
      cfg: this.cfg, nodes: this.nodes, broadcasts: this.broadcasts, awareness: this.awareness, delegate: this.delegate, log: this.log,
      dropped: this.dropped, traffic: this.traffic, leaving: false, stopped: false,
    };
    this.states = new NodeStates(this.ctx);
    this.transport = new PacketTransport(this.ctx, {
      relayPing: (req, from, fromPort) => this.prober.relayPing(req, from, fromPort),
      ack: (seq, payload) => this.prober.onAck(seq, payload),
      nack: (seq) => this.prober.onNack(seq),
      alive: (a) => this.states.onAlive(a),
      suspect: (s) => this.states.onSuspect(s),
      dead: (d) => this.states.onDead(d),
      localPushPull: (join) => this.pushPull.localPushPull(join),
      mergePushPull: (remote) => this.pushPull.mergePushPull(remote),
    });
    this.prober = new Prober(this.ctx, this.transport, this.states);
    this.pushPull = new PushPull(this.ctx, this.transport, this.states);
  }

  async start(): Promise<void> {
    this.nodes.set(this.cfg.name, {
      name: this.cfg.name, addr: this.cfg.advertiseAddr, port: this.cfg.port, meta: this.delegate.nodeMeta(), vsn: VSN,
      incarnation: 1, state: NodeState.alive, stateChange: Date.now(),
    });
    const port = await this.transport.listenTcp();
    selfOf(this.ctx).port = port;
    this.cfg.port = port;
    await this.transport.bindUdp(port);
    this.every(this.cfg.probeIntervalMs, () => void this.prober.probe());
    this.every(this.cfg.gossipIntervalMs, () => this.gossip());
    if (this.cfg.pushPullIntervalMs > 0) this.every(this.cfg.pushPullIntervalMs, () => void this.pushPull.periodic());
    if (this.cfg.reconnectIntervalMs > 0) this.every(this.cfg.reconnectIntervalMs, () => void this.pushPull.reconnect());
  }

  get port(): number {
    return this.cfg.port;
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  /** A user message (a Serf query response) straight to addr:port by UDP, nothing piggybacked. */
  sendUser(msg: Buffer, addr: string, port: number): void {
    this.transport.sendUdp(Buffer.concat([Buffer.from([m.MsgType.user]), msg]), addr, port);
  }

  /** One push/pull exchange with a peer over TCP. */
  pushPullWith(addr: string, port: number, join: boolean): Promise<void> {
    return this.pushPull.pushPullWith(addr, port, join);
  }

  /**
   * Joins through any of `addrs` (host:port, host defaulting to port 8301). A DNS name is tried at
   * every IPv4 address it resolves to; our own address is skipped. Resolves with how many answered.
   */
  join(addrs: string[]): Promise<number> {
    return this.pushPull.join(addrs);
  }

  /** New tags: broadcast alive with a higher incarnation (Serf's member-update). */
  updateMeta(): void {
    this.states.updateMeta();
  }

  private gossip(): void {
    const now = Date.now();
    const targets = [...this.nodes.values()]
      .filter((n) => n.name !== this.cfg.name && (n.state === NodeState.alive || n.state === NodeState.suspect || (n.state === NodeState.dead && now - n.stateChange < this.cfg.gossipToTheDeadMs)))
      .sort(() => Math.random() - 0.5)
      .slice(0, this.cfg.gossipNodes);
    for (const t of targets) {
      const msgs = this.transport.takeBroadcasts(UDP_BUFFER - 2 - (this.cfg.keys.length ? 29 : 0), `${t.addr}:${t.port}`);
      if (!msgs.length) continue;
      this.transport.sendUdp(compound(msgs), t.addr, t.port, { crc: t.vsn[1] >= 5 });
    }
  }

  /** Graceful leave: broadcast our own death (From = us) and give gossip a moment to carry it. */
  async leave(waitMs = 1000): Promise<void> {
    this.ctx.leaving = true;
    const self = selfOf(this.ctx);
    this.broadcasts.queue(m.dead({ From: self.name, Incarnation: self.incarnation, Node: self.name }), self.name);
    const deadline = Date.now() + waitMs;
    while (this.broadcasts.length > 0 && Date.now() < deadline && livePeers(this.ctx).length) {
      this.gossip();
      await new Promise((r) => setTimeout(r, this.cfg.gossipIntervalMs));
    }
  }

  /** Stops everything; idempotent. Open streams are cut, and the close waits at most a second. */
  async shutdown(): Promise<void> {
    if (this.ctx.stopped && !this.transport.open) return;
    this.ctx.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.states.cancelSuspicions();
    await this.transport.close();
  }
}
