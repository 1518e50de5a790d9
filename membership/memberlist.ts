// A memberlist (v0.2.2 wire) node: UDP and TCP on one port, the node table with incarnations, probing,
// suspicion, gossip and push/pull anti-entropy — enough for a real Serf agent to count it as a member.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { isIPv4 } from 'node:net';
import { lookup } from 'node:dns/promises';
import { Awareness } from './awareness.js';
import { BroadcastQueue } from './broadcast-queue.js';
import { asObject, decode, MsgpackTruncated, Reader, uint } from './go-msgpack.js';
import { LzwTruncated } from './go-lzw.js';
import { compound, compress, crc32, decompress, decrypt, encrypt, PacketError, splitCompound, withCrc } from './packet-codec.js';
import { sourceAddressFor } from '../lib/source-address.js';
import { Suspicion, suspicionTimeoutMs } from './suspicion.js';
import * as m from './wire-messages.js';
import { MsgType, NodeState, VSN } from './wire-messages.js';

export interface GossipLog {
  debug(o: object, msg: string): void;
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

export interface MemberlistDelegate {
  /** Our node's metadata (Serf tags), at most 512 bytes. */
  nodeMeta(): Buffer;
  /** A user message (type 8 payload) arrived. */
  notifyMsg(msg: Buffer): void;
  /** Extra broadcasts (already wrapped as user messages) to piggyback. */
  getBroadcasts(overhead: number, budget: number): Buffer[];
  localState(join: boolean): Buffer;
  mergeRemoteState(state: Buffer, join: boolean): void;
  notifyJoin?(n: NodeRecord): void;
  notifyLeave?(n: NodeRecord): void;
  notifyUpdate?(n: NodeRecord): void;
}

export interface NodeRecord {
  name: string;
  addr: string;
  port: number;
  meta: Buffer;
  vsn: Buffer;
  incarnation: number;
  state: number;
  stateChange: number;
}

export interface MemberlistConfig {
  name: string;
  bindAddr: string;
  /** The address peers reach us at (defaults to bindAddr; needed when binding 0.0.0.0). */
  advertiseAddr?: string;
  port: number;
  /** Gossip keys: the first encrypts, any decrypts. The array is shared with the stream readers and changed in place by GossipKeyring (keyring.ts): never replace it. */
  keys?: Buffer[];
  compression?: boolean;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  gossipIntervalMs?: number;
  gossipNodes?: number;
  suspicionMult?: number;
  /** Upper bound of a suspicion (before confirmations shorten it), as a multiple of the base timeout. */
  suspicionMaxTimeoutMult?: number;
  awarenessMaxMultiplier?: number;
  retransmitMult?: number;
  pushPullIntervalMs?: number;
  tcpTimeoutMs?: number;
  gossipToTheDeadMs?: number;
  /** How often to try a push/pull with one failed (not left) member, so a healed partition joins up again (Serf's ReconnectInterval). */
  reconnectIntervalMs?: number;
}

const UDP_BUFFER = 1400;
const MAX_INBOUND_STREAMS = 128;

export class Memberlist {
  readonly nodes = new Map<string, NodeRecord>();
  readonly broadcasts: BroadcastQueue;
  private udp?: UdpSocket;
  private tcp?: Server;
  private seq = 0;
  private readonly ackWaiters = new Map<number, (payload: Buffer | null) => void>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly nackWaiters = new Map<number, () => void>();
  readonly awareness: Awareness;
  private readonly streams = new Set<Socket>();
  private timers: NodeJS.Timeout[] = [];
  private probeIndex = 0;
  private probing = false;
  private leaving = false;
  private stopped = false;
  readonly cfg: Required<MemberlistConfig>;
  /** Packets and bytes dropped for bad framing, bad crypto or bad msgpack. */
  readonly dropped = { packets: 0, decrypt: 0 };
  /** UDP traffic counters, for metrics and the convergence benchmark. */
  readonly traffic = { packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0 };

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
  }

  private get self(): NodeRecord {
    return this.nodes.get(this.cfg.name)!;
  }

  private addrBytes(addr: string): Buffer {
    return isIPv4(addr) ? Buffer.from(addr.split('.').map(Number)) : Buffer.alloc(16);
  }

  private aliveMsg(n: NodeRecord): Buffer {
    return m.alive({ Addr: this.addrBytes(n.addr), Incarnation: n.incarnation, Meta: n.meta, Node: n.name, Port: n.port, Vsn: n.vsn });
  }

  async start(): Promise<void> {
    this.nodes.set(this.cfg.name, {
      name: this.cfg.name, addr: this.cfg.advertiseAddr, port: this.cfg.port, meta: this.delegate.nodeMeta(), vsn: VSN,
      incarnation: 1, state: NodeState.alive, stateChange: Date.now(),
    });
    this.tcp = createServer((s) => this.onStream(s));
    await new Promise<void>((resolve, reject) => {
      this.tcp!.once('error', reject);
      this.tcp!.listen(this.cfg.port, this.cfg.bindAddr, () => resolve());
    });
    const port = (this.tcp.address() as { port: number }).port;
    this.self.port = port;
    this.cfg.port = port;
    this.udp = createSocket({ type: 'udp4', recvBufferSize: 2 * 1024 * 1024 });
    this.udp.on('message', (buf, rinfo) => this.onPacket(buf, rinfo.address, rinfo.port));
    this.udp.on('error', (e) => this.log.warn({ err: e.message }, 'gossip UDP socket error'));
    await new Promise<void>((resolve, reject) => {
      this.udp!.once('error', reject);
      this.udp!.bind(port, this.cfg.bindAddr, () => resolve());
    });
    this.every(this.cfg.probeIntervalMs, () => void this.probe());
    this.every(this.cfg.gossipIntervalMs, () => this.gossip());
    if (this.cfg.pushPullIntervalMs > 0) this.every(this.cfg.pushPullIntervalMs, () => void this.periodicPushPull());
    if (this.cfg.reconnectIntervalMs > 0) this.every(this.cfg.reconnectIntervalMs, () => void this.reconnect());
  }

  get port(): number {
    return this.cfg.port;
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  // ---- sending ----

  private seal(msg: Buffer): Buffer {
    return this.cfg.keys.length ? encrypt(this.cfg.keys[0], msg) : msg;
  }

  private sendUdp(msg: Buffer, addr: string, port: number, opts: { piggyback?: boolean; crc?: boolean } = {}): void {
    if (!this.udp || this.stopped) return;
    let packet = msg;
    if (opts.piggyback) {
      const extra = this.takeBroadcasts(UDP_BUFFER - msg.length - 2 - (this.cfg.keys.length ? 29 : 0));
      if (extra.length) packet = compound([msg, ...extra]);
    }
    if (this.cfg.compression) {
      const c = compress(packet);
      if (c.length < packet.length) packet = c;
    }
    if (opts.crc) packet = withCrc(packet);
    const sealed = this.seal(packet);
    this.traffic.packetsSent++;
    this.traffic.bytesSent += sealed.length;
    this.udp.send(sealed, port, addr);
  }

  private takeBroadcasts(budget: number): Buffer[] {
    const own = this.broadcasts.take(2, budget);
    const used = own.reduce((a, b) => a + b.length + 2, 0);
    return [...own, ...this.delegate.getBroadcasts(2, budget - used)];
  }

  /** Frames a stream message: compressed, then encrypted, as memberlist does on TCP. */
  private frameStream(msg: Buffer): Buffer {
    let out = this.cfg.compression ? compress(msg) : msg;
    if (this.cfg.keys.length) {
      const header = Buffer.alloc(5);
      header[0] = MsgType.encrypt;
      header.writeUInt32BE(1 + 12 + out.length + 16, 1);
      out = Buffer.concat([header, encrypt(this.cfg.keys[0], out, header)]);
    }
    return out;
  }

  // ---- receiving ----

  private onPacket(buf: Buffer, from: string, fromPort: number): void {
    this.traffic.packetsReceived++;
    this.traffic.bytesReceived += buf.length;
    try {
      let msg = buf;
      if (this.cfg.keys.length) {
        try {
          msg = decrypt(this.cfg.keys, buf);
        } catch {
          this.dropped.decrypt++;
          return;
        }
      }
      if (msg.length >= 5 && msg[0] === MsgType.hasCrc) {
        if (crc32(msg.subarray(5)) !== msg.readUInt32BE(1)) throw new PacketError('bad CRC');
        msg = msg.subarray(5);
      }
      this.dispatch(msg, from, fromPort, 0);
    } catch (e) {
      this.dropped.packets++;
      this.log.debug({ from, err: (e as Error).message }, 'gossip packet dropped');
    }
  }

  private dispatch(msg: Buffer, from: string, fromPort: number, depth: number): void {
    if (msg.length === 0 || depth > 4) throw new PacketError('empty or over-nested message');
    const type = msg[0];
    const body = msg.subarray(1);
    switch (type) {
      case MsgType.compound:
        for (const part of splitCompound(body)) {
          try { this.dispatch(part, from, fromPort, depth + 1); } catch (e) { this.dropped.packets++; this.log.debug({ err: (e as Error).message }, 'compound part dropped'); }
        }
        return;
      case MsgType.compress:
        // A datagram is at most 64 KiB; what it decompresses to is capped so a bomb costs nothing.
        return this.dispatch(decompress(body, 256 * 1024), from, fromPort, depth + 1);
      case MsgType.ping: {
        const p = m.readPing(decode(body));
        if (p.Node && p.Node !== this.cfg.name) return;
        const to = p.SourceAddr && p.SourcePort ? { addr: ipOf(p.SourceAddr), port: p.SourcePort } : { addr: from, port: fromPort };
        this.sendUdp(m.ack(p.SeqNo), to.addr, to.port, { piggyback: true });
        return;
      }
      case MsgType.indirectPing:
        return void this.relayPing(m.readIndirectPing(decode(body)), from, fromPort);
      case MsgType.ackResp: {
        const a = m.readAck(decode(body));
        this.ackWaiters.get(a.SeqNo)?.(a.Payload);
        return;
      }
      case MsgType.nackResp:
        this.nackWaiters.get(m.readAck(decode(body)).SeqNo)?.();
        return;
      case MsgType.alive:
        return this.onAlive(m.readAlive(decode(body)));
      case MsgType.suspect:
        return this.onSuspect(m.readSuspect(decode(body)));
      case MsgType.dead:
        return this.onDead(m.readSuspect(decode(body)));
      case MsgType.user:
        if (body.length) this.delegate.notifyMsg(body);
        return;
      default:
        throw new PacketError(`msg type (${type}) not supported`);
    }
  }

  private async relayPing(req: m.IndirectPing, from: string, fromPort: number): Promise<void> {
    if (!req.Target) return;
    const seq = ++this.seq;
    const ok = await this.pingUdp(ipOf(req.Target), req.Port, req.Node, seq, this.cfg.probeTimeoutMs);
    const back = req.SourceAddr && req.SourcePort ? { addr: ipOf(req.SourceAddr), port: req.SourcePort } : { addr: from, port: fromPort };
    if (ok) this.sendUdp(m.ack(req.SeqNo), back.addr, back.port, { piggyback: true });
    else if (req.Nack) this.sendUdp(m.nack(req.SeqNo), back.addr, back.port);
  }

  // ---- streams (TCP) ----

  private onStream(sock: Socket): void {
    // Streams are short (one push/pull, ping or user message): bound how many and for how long.
    if (this.streams.size >= MAX_INBOUND_STREAMS) {
      this.dropped.packets++;
      sock.destroy();
      return;
    }
    this.streams.add(sock);
    const deadline = setTimeout(() => sock.destroy(), this.cfg.tcpTimeoutMs);
    deadline.unref();
    sock.once('close', () => { clearTimeout(deadline); this.streams.delete(sock); });
    sock.on('error', () => sock.destroy());
    const reader = new StreamReader(sock, this.cfg.keys);
    reader.message().then((msg) => {
      const type = msg[0];
      if (type === MsgType.pushPull) {
        const remote = m.readPushPull(msg.subarray(1));
        sock.end(this.frameStream(this.localPushPull(remote.header.Join)));
        this.mergePushPull(remote);
      } else if (type === MsgType.ping) {
        const p = m.readPing(decode(msg.subarray(1)));
        if (p.Node && p.Node !== this.cfg.name) return sock.destroy();
        sock.end(this.frameStream(m.ack(p.SeqNo)));
      } else if (type === MsgType.user) {
        // Reliable user message: a {UserMsgLen} header, then that many raw bytes.
        const r = new Reader(msg.subarray(1));
        const len = uint(asObject(r.value(), 'userMsgHeader'), 'UserMsgLen', 20 << 20);
        const payload = msg.subarray(1 + r.pos, 1 + r.pos + len);
        if (payload.length < len) throw new PacketError('reliable user message shorter than its header says');
        if (payload.length) this.delegate.notifyMsg(payload);
        sock.end();
      } else {
        sock.destroy();
      }
    }).catch((e: Error) => {
      this.dropped.packets++;
      this.log.debug({ err: e.message }, 'gossip stream dropped');
      if (e instanceof EncryptionMismatch) sock.end(this.frameStreamPlain(m.withType(MsgType.err, { Error: e.message })));
      else sock.destroy();
    });
  }

  private frameStreamPlain(msg: Buffer): Buffer {
    return this.cfg.compression ? compress(msg) : msg;
  }

  private localPushPull(join: boolean): Buffer {
    const states: m.PushNodeState[] = [...this.nodes.values()].map((n) => ({
      Addr: this.addrBytes(n.addr), Incarnation: n.incarnation, Meta: n.meta, Name: n.name, Port: n.port, State: n.state, Vsn: n.vsn,
    }));
    return m.pushPull(join, states, this.delegate.localState(join));
  }

  private mergePushPull(remote: ReturnType<typeof m.readPushPull>): void {
    for (const n of remote.nodes) {
      if (n.Vsn.length > 0 && n.Vsn.length < 6) throw new PacketError(`node ${n.Name}: Vsn must be 6 bytes`);
    }
    for (const n of remote.nodes) {
      if (n.State === NodeState.alive) this.onAlive({ Addr: n.Addr, Incarnation: n.Incarnation, Meta: n.Meta, Node: n.Name, Port: n.Port, Vsn: n.Vsn });
      else if (n.State === NodeState.left) this.onDead({ From: n.Name, Incarnation: n.Incarnation, Node: n.Name });
      else this.onSuspect({ From: this.cfg.name, Incarnation: n.Incarnation, Node: n.Name });
    }
    if (remote.userState.length) this.delegate.mergeRemoteState(remote.userState, remote.header.Join);
  }

  /** One push/pull exchange with a peer over TCP. */
  async pushPullWith(addr: string, port: number, join: boolean): Promise<void> {
    const sock = connect({ host: addr, port, localAddress: sourceAddressFor(this.cfg.bindAddr, addr) });
    sock.on('error', () => undefined); // failures surface through the awaits below
    sock.setTimeout(this.cfg.tcpTimeoutMs, () => sock.destroy(new Error('push/pull timed out')));
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    sock.write(this.frameStream(this.localPushPull(join)));
    const reader = new StreamReader(sock, this.cfg.keys);
    try {
      const msg = await reader.message();
      if (msg[0] === MsgType.err) throw new PacketError(`remote error: ${String((decode(msg.subarray(1)) as Record<string, Buffer>).Error ?? '')}`);
      if (msg[0] !== MsgType.pushPull) throw new PacketError(`push/pull: unexpected reply type ${msg[0]}`);
      this.mergePushPull(m.readPushPull(msg.subarray(1)));
    } finally {
      sock.destroy();
    }
  }

  /**
   * Joins through any of `addrs` (host:port, host defaulting to port 8301). A DNS name is tried at
   * every IPv4 address it resolves to (a headless Service lists every agent); our own address is
   * skipped, so only a push/pull with another member counts. Resolves with how many answered.
   */
  async join(addrs: string[]): Promise<number> {
    let ok = 0;
    for (const a of addrs) {
      const i = a.lastIndexOf(':');
      const host = i > 0 ? a.slice(0, i) : a;
      const port = i > 0 ? Number(a.slice(i + 1)) : 8301;
      let ips: string[];
      try {
        ips = isIPv4(host) ? [host] : (await lookup(host, { all: true, family: 4 })).map((r) => r.address);
      } catch (e) {
        this.log.warn({ addr: a, err: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'gossip join: cannot resolve');
        continue;
      }
      for (const ip of ips) {
        if (port === this.cfg.port && (ip === this.cfg.advertiseAddr || ip === this.cfg.bindAddr)) continue;
        try {
          await this.pushPullWith(ip, port, true);
          ok++;
        } catch (e) {
          this.log.warn({ addr: `${ip}:${port}`, err: (e as Error).message }, 'gossip join attempt failed');
        }
      }
    }
    return ok;
  }

  private async periodicPushPull(): Promise<void> {
    const peers = this.livePeers();
    if (!peers.length) return;
    const p = peers[Math.floor(Math.random() * peers.length)];
    await this.pushPullWith(p.addr, p.port, false).catch((e: Error) => this.log.debug({ peer: p.name, err: e.message }, 'push/pull failed'));
  }

  /**
   * Serf's reconnect: a push/pull with one random failed member. Once nobody gossips to it any more, this is the only
   * way two sides of a healed partition find each other. The first exchange makes each side refute the other's view
   * of it (a new incarnation); a second one at once carries the refutations, so one round joins them up.
   */
  private async reconnect(): Promise<void> {
    const failed = [...this.nodes.values()].filter((n) => n.state === NodeState.dead && n.name !== this.cfg.name);
    if (!failed.length) return;
    const n = failed[Math.floor(Math.random() * failed.length)];
    try {
      await this.pushPullWith(n.addr, n.port, false);
      if (this.nodes.get(n.name)?.state === NodeState.dead) await this.pushPullWith(n.addr, n.port, false);
      if (this.nodes.get(n.name)?.state !== NodeState.dead) this.log.info({ peer: n.name }, 'reconnected to a failed member');
    } catch (e) {
      this.log.debug({ peer: n.name, err: (e as Error).message }, 'reconnect to a failed member failed');
    }
  }

  // ---- state machine ----

  private onAlive(a: m.Alive): void {
    if (this.leaving && a.Node === this.cfg.name) return;
    if (a.Vsn.length >= 3 && (a.Vsn[0] === 0 || a.Vsn[1] === 0 || a.Vsn[0] > a.Vsn[1])) return;
    if (a.Vsn.length > 0 && a.Vsn.length < 6) return;
    // A nameless node, or one without a usable address or port, could never be probed: ignore it.
    if (a.Node === '' || (a.Addr.length !== 4 && a.Addr.length !== 16) || a.Port === 0) return;
    const addr = ipOf(a.Addr);
    let n = this.nodes.get(a.Node);
    if (a.Node === this.cfg.name) {
      if (a.Incarnation < this.self.incarnation) return;
      if (a.Incarnation === this.self.incarnation && a.Meta?.equals(this.self.meta) && a.Vsn.equals(this.self.vsn)) return;
      return this.refute(a.Incarnation);
    }
    const isNew = !n;
    if (!n) {
      n = { name: a.Node, addr, port: a.Port, meta: a.Meta ?? Buffer.alloc(0), vsn: a.Vsn, incarnation: 0, state: NodeState.dead, stateChange: Date.now() };
      this.nodes.set(a.Node, n);
    } else if ((n.addr !== addr || n.port !== a.Port) && n.state !== NodeState.left && n.state !== NodeState.dead) {
      this.log.warn({ node: a.Node, have: `${n.addr}:${n.port}`, got: `${addr}:${a.Port}` }, 'gossip: conflicting address for a node name');
      return;
    }
    if (!isNew && a.Incarnation <= n.incarnation) return;
    // Accepted news is passed on, whether it came by gossip or by push/pull (as memberlist does).
    this.broadcasts.queue(m.alive(a), a.Node);
    const wasDown = n.state === NodeState.dead || n.state === NodeState.left;
    const metaChanged = !n.meta.equals(a.Meta ?? Buffer.alloc(0));
    this.endSuspicion(a.Node);
    Object.assign(n, { addr, port: a.Port, meta: a.Meta ?? Buffer.alloc(0), vsn: a.Vsn, incarnation: a.Incarnation });
    if (n.state !== NodeState.alive) Object.assign(n, { state: NodeState.alive, stateChange: Date.now() });
    if (wasDown) this.delegate.notifyJoin?.(n);
    else if (metaChanged) this.delegate.notifyUpdate?.(n);
  }

  private onSuspect(s: m.Suspect): void {
    const n = this.nodes.get(s.Node);
    if (!n || s.Incarnation < n.incarnation) return;
    // Already suspected: an independent accuser shortens the timer (Lifeguard) and is passed on.
    const running = this.suspicions.get(s.Node);
    if (running) {
      if (running.confirm(s.From)) this.broadcasts.queue(m.suspect(s), s.Node);
      return;
    }
    if (n.state !== NodeState.alive) return;
    if (s.Node === this.cfg.name) return this.refute(s.Incarnation);
    this.broadcasts.queue(m.suspect(s), s.Node);
    Object.assign(n, { incarnation: s.Incarnation, state: NodeState.suspect, stateChange: Date.now() });
    // Wait for SuspicionMult - 2 confirmations, unless the pool is too small to give them.
    const members = this.nodes.size;
    const k = members - 2 < this.cfg.suspicionMult - 2 ? 0 : this.cfg.suspicionMult - 2;
    const min = suspicionTimeoutMs(this.cfg.suspicionMult, members, this.cfg.probeIntervalMs);
    const incarnation = s.Incarnation;
    this.suspicions.set(s.Node, new Suspicion(s.From, k, min, this.cfg.suspicionMaxTimeoutMult * min, (confirmations) => {
      this.suspicions.delete(s.Node);
      if (n.state !== NodeState.suspect || n.incarnation !== incarnation) return;
      this.log.info({ node: n.name, confirmations }, 'gossip: suspect node declared failed');
      this.onDead({ From: this.cfg.name, Incarnation: incarnation, Node: n.name });
    }));
  }

  private endSuspicion(node: string): void {
    this.suspicions.get(node)?.cancel();
    this.suspicions.delete(node);
  }

  private onDead(d: m.Dead): void {
    const n = this.nodes.get(d.Node);
    if (!n || d.Incarnation < n.incarnation || n.state === NodeState.dead || n.state === NodeState.left) return;
    this.endSuspicion(d.Node);
    if (d.Node === this.cfg.name && !this.leaving) return this.refute(d.Incarnation);
    this.broadcasts.queue(m.dead(d), d.Node);
    Object.assign(n, { incarnation: d.Incarnation, state: d.From === d.Node ? NodeState.left : NodeState.dead, stateChange: Date.now() });
    this.delegate.notifyLeave?.(n);
  }

  private refute(accused: number): void {
    const self = this.self;
    this.awareness.apply(1); // being accused hints that we are the slow one
    self.incarnation = Math.max(self.incarnation + 1, accused + 1);
    this.broadcasts.queue(this.aliveMsg(self), self.name);
  }

  /** New tags: broadcast alive with a higher incarnation (Serf's member-update). */
  updateMeta(): void {
    const self = this.self;
    self.meta = this.delegate.nodeMeta();
    self.incarnation++;
    this.broadcasts.queue(this.aliveMsg(self), self.name);
  }

  // ---- probing and gossip ----

  private livePeers(): NodeRecord[] {
    return [...this.nodes.values()].filter((n) => n.name !== this.cfg.name && n.state !== NodeState.dead && n.state !== NodeState.left);
  }

  private pingUdp(addr: string, port: number, node: string, seq: number, timeoutMs: number, withSuspect?: Buffer): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.ackWaiters.delete(seq); resolve(false); }, timeoutMs);
      this.ackWaiters.set(seq, () => { clearTimeout(t); this.ackWaiters.delete(seq); resolve(true); });
      const p = m.ping({ Node: node, SeqNo: seq, SourceAddr: this.addrBytes(this.cfg.advertiseAddr), SourceNode: this.cfg.name, SourcePort: this.cfg.port });
      this.sendUdp(withSuspect ? compound([p, withSuspect]) : p, addr, port, { piggyback: !withSuspect, crc: true });
    });
  }

  private async pingTcp(n: NodeRecord, seq: number): Promise<boolean> {
    try {
      const sock = connect({ host: n.addr, port: n.port, localAddress: sourceAddressFor(this.cfg.bindAddr, n.addr) });
      sock.on('error', () => undefined);
      sock.setTimeout(this.cfg.probeIntervalMs, () => sock.destroy(new Error('timeout')));
      await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      sock.write(this.frameStream(m.ping({ Node: n.name, SeqNo: seq, SourceAddr: this.addrBytes(this.cfg.advertiseAddr), SourceNode: this.cfg.name, SourcePort: this.cfg.port })));
      const msg = await new StreamReader(sock, this.cfg.keys).message();
      sock.destroy();
      return msg[0] === MsgType.ackResp && m.readAck(decode(msg.subarray(1))).SeqNo === seq;
    } catch {
      return false;
    }
  }

  private async probe(): Promise<void> {
    if (this.probing) return; // a probe stretched by awareness skips the next tick, as Go's ticker would
    this.probing = true;
    try {
      await this.probeOne();
    } finally {
      this.probing = false;
    }
  }

  private async probeOne(): Promise<void> {
    const peers = this.livePeers();
    if (!peers.length || this.stopped) return;
    const n = peers[this.probeIndex++ % peers.length];
    const seq = ++this.seq;
    // While we look unhealthy ourselves (missed nacks, refutations), give peers longer to answer.
    const window = this.awareness.scale(this.cfg.probeIntervalMs);
    const suspectMsg = n.state === NodeState.suspect ? m.suspect({ From: this.cfg.name, Incarnation: n.incarnation, Node: n.name }) : undefined;
    if (await this.pingUdp(n.addr, n.port, n.name, seq, this.awareness.scale(this.cfg.probeTimeoutMs), suspectMsg)) {
      this.awareness.apply(-1);
      return;
    }
    // Indirect probes through up to three other peers, and a TCP ping, in parallel (Lifeguard).
    const helpers = peers.filter((p) => p !== n && p.state === NodeState.alive).sort(() => Math.random() - 0.5).slice(0, 3);
    const expectedNacks = helpers.filter((h) => h.vsn[1] >= 4).length;
    let nacks = 0;
    let allNacked = () => undefined as void;
    this.nackWaiters.set(seq, () => { if (++nacks >= expectedNacks) allNacked(); });
    const acked = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { this.ackWaiters.delete(seq); resolve(false); }, window - this.cfg.probeTimeoutMs);
      this.ackWaiters.set(seq, () => { clearTimeout(t); this.ackWaiters.delete(seq); resolve(true); });
    });
    for (const h of helpers) {
      this.sendUdp(m.indirectPing({ Nack: h.vsn[1] >= 4, Node: n.name, Port: n.port, SeqNo: seq, Target: this.addrBytes(n.addr), SourceAddr: this.addrBytes(this.cfg.advertiseAddr), SourceNode: this.cfg.name, SourcePort: this.cfg.port }), h.addr, h.port, { piggyback: true });
    }
    const [viaUdp, viaTcp] = await Promise.all([acked, this.pingTcp(n, seq)]);
    if (!viaUdp && !viaTcp && nacks < expectedNacks) {
      // Helpers nack after their own probe timeout, so a nack can trail our deadline a little.
      await new Promise<void>((r) => { const t = setTimeout(r, 200); allNacked = () => { clearTimeout(t); r(); }; });
    }
    this.nackWaiters.delete(seq);
    if (viaUdp || viaTcp) return;
    // Helpers that did not even send a nack suggest the trouble is on our side; with no helper
    // able to nack, any failed probe counts against us (as memberlist).
    this.awareness.apply(expectedNacks > 0 ? expectedNacks - nacks : 1);
    this.onSuspect({ From: this.cfg.name, Incarnation: n.incarnation, Node: n.name });
  }

  private gossip(): void {
    const now = Date.now();
    const targets = [...this.nodes.values()]
      .filter((n) => n.name !== this.cfg.name && (n.state === NodeState.alive || n.state === NodeState.suspect || (n.state === NodeState.dead && now - n.stateChange < this.cfg.gossipToTheDeadMs)))
      .sort(() => Math.random() - 0.5)
      .slice(0, this.cfg.gossipNodes);
    for (const t of targets) {
      const msgs = this.takeBroadcasts(UDP_BUFFER - 2 - (this.cfg.keys.length ? 29 : 0));
      if (!msgs.length) return;
      this.sendUdp(compound(msgs), t.addr, t.port, { crc: t.vsn[1] >= 5 });
    }
  }

  /** Graceful leave: broadcast our own death (From = us) and give gossip a moment to carry it. */
  async leave(waitMs = 1000): Promise<void> {
    this.leaving = true;
    const self = this.self;
    this.broadcasts.queue(m.dead({ From: self.name, Incarnation: self.incarnation, Node: self.name }), self.name);
    const deadline = Date.now() + waitMs;
    while (this.broadcasts.length > 0 && Date.now() < deadline && this.livePeers().length) {
      this.gossip();
      await new Promise((r) => setTimeout(r, this.cfg.gossipIntervalMs));
    }
  }

  /** Stops everything; idempotent. Open streams are cut, and the close waits at most a second. */
  async shutdown(): Promise<void> {
    if (this.stopped && !this.udp && !this.tcp) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    for (const t of this.suspicions.values()) t.cancel();
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    try { udp?.close(); } catch { /* already closed */ }
    for (const s of this.streams) s.destroy();
    if (tcp) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 1000);
        t.unref();
        tcp.close(() => { clearTimeout(t); r(); });
      });
    }
  }
}

export class EncryptionMismatch extends Error {}

function ipOf(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return '0.0.0.0';
}

/** Reads one memberlist stream message: unwraps encryption and compression, parsing incrementally. */
class StreamReader {
  private buf = Buffer.alloc(0);
  private waiting?: () => void;
  private ended = false;

  constructor(private readonly sock: Socket, private readonly keys: Buffer[]) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      if (this.buf.length > 20 * 1024 * 1024) sock.destroy();
      this.waiting?.();
    });
    sock.on('end', () => { this.ended = true; this.waiting?.(); });
    sock.on('close', () => { this.ended = true; this.waiting?.(); });
  }

  private more(): Promise<void> {
    if (this.ended) return Promise.reject(new PacketError('stream ended early'));
    return new Promise((r) => { this.waiting = () => { this.waiting = undefined; r(); }; });
  }

  /** Waits until `parse` can read a complete message from the buffer. */
  private async parse<T>(parse: (b: Buffer) => T): Promise<T> {
    for (;;) {
      try {
        return parse(this.buf);
      } catch (e) {
        if (!(e instanceof NeedMore || e instanceof MsgpackTruncated || e instanceof LzwTruncated)) throw e;
        if (this.ended) throw new PacketError(`stream ended early: ${(e as Error).message}`);
        await this.more();
      }
    }
  }

  async message(): Promise<Buffer> {
    const first = await this.parse((b) => { if (b.length < 1) throw new NeedMore(); return b[0]; });
    let plain: Buffer;
    if (first === MsgType.encrypt) {
      if (!this.keys.length) throw new EncryptionMismatch('Remote state is encrypted and encryption is not configured');
      plain = await this.parse((b) => {
        if (b.length < 5) throw new NeedMore();
        const len = b.readUInt32BE(1);
        if (len > 20 * 1024 * 1024) throw new PacketError('encrypted stream too large');
        if (b.length < 5 + len) throw new NeedMore();
        return decrypt(this.keys, b.subarray(5, 5 + len), b.subarray(0, 5));
      });
    } else {
      if (this.keys.length) throw new EncryptionMismatch('Encryption is configured but remote state is not encrypted');
      plain = this.buf;
    }
    if (plain[0] === MsgType.compress) {
      const src = plain;
      plain = first === MsgType.encrypt ? decompress(src.subarray(1)) : await this.parse((b) => decompress(b.subarray(1)));
    }
    // A plain message may still be arriving: make sure the whole of it is here.
    if (first !== MsgType.encrypt && plain === this.buf) {
      plain = await this.parse((b) => { completeMessage(b); return b; });
    }
    return plain;
  }
}

class NeedMore extends Error {}

/** Throws NeedMore (or a truncation error) unless `b` holds a complete push/pull, ping or user message. */
function completeMessage(b: Buffer): void {
  if (b.length < 2) throw new NeedMore();
  if (b[0] === MsgType.pushPull) {
    m.readPushPull(b.subarray(1));
    return;
  }
  const r = new Reader(b.subarray(1));
  const header = r.value();
  // A reliable user message is a {UserMsgLen} header followed by that many raw bytes.
  if (b[0] === MsgType.user && 1 + r.pos + uint(asObject(header, 'userMsgHeader'), 'UserMsgLen', 20 << 20) > b.length) throw new NeedMore();
}
