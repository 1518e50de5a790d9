// Push/pull anti-entropy over TCP: our state and merging a peer's, the exchange itself, join, the periodic round and reconnecting to failed members.

import { connect, isIPv4 } from 'node:net';
import { lookup } from 'node:dns/promises';
import { sourceAddressFor } from '../lib/source-address.js';
import { decode } from './go-msgpack.js';
import { addrBytes, livePeers, type MemberlistContext } from './memberlist-context.js';
import type { NodeStates } from './node-state.js';
import { PacketError } from './packet-codec.js';
import type { PacketTransport } from './packet-transport.js';
import { StreamReader } from './stream-reader.js';
import * as m from './wire-messages.js';
import { MsgType, NodeState } from './wire-messages.js';

export class PushPull {
  constructor(private readonly ctx: MemberlistContext, private readonly transport: PacketTransport, private readonly states: NodeStates) {}

  localPushPull(join: boolean): Buffer {
    const states: m.PushNodeState[] = [...this.ctx.nodes.values()].map((n) => ({
      Addr: addrBytes(n.addr), Incarnation: n.incarnation, Meta: n.meta, Name: n.name, Port: n.port, State: n.state, Vsn: n.vsn,
    }));
    return m.pushPull(join, states, this.ctx.delegate.localState(join));
  }

  mergePushPull(remote: ReturnType<typeof m.readPushPull>): void {
    for (const n of remote.nodes) {
      if (n.Vsn.length > 0 && n.Vsn.length < 6) throw new PacketError(`node ${n.Name}: Vsn must be 6 bytes`);
    }
    for (const n of remote.nodes) {
      if (n.State === NodeState.alive) this.states.onAlive({ Addr: n.Addr, Incarnation: n.Incarnation, Meta: n.Meta, Node: n.Name, Port: n.Port, Vsn: n.Vsn });
      else if (n.State === NodeState.left) this.states.onDead({ From: n.Name, Incarnation: n.Incarnation, Node: n.Name });
      else this.states.onSuspect({ From: this.ctx.cfg.name, Incarnation: n.Incarnation, Node: n.Name });
    }
    if (remote.userState.length) this.ctx.delegate.mergeRemoteState(remote.userState, remote.header.Join);
  }

  /** One push/pull exchange with a peer over TCP. */
  async pushPullWith(addr: string, port: number, join: boolean): Promise<void> {
    const { cfg } = this.ctx;
    const sock = connect({ host: addr, port, localAddress: sourceAddressFor(cfg.bindAddr, addr) });
    sock.on('error', () => undefined); // failures surface through the awaits below
    sock.setTimeout(cfg.tcpTimeoutMs, () => sock.destroy(new Error('push/pull timed out')));
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    sock.write(this.transport.frameStream(this.localPushPull(join)));
    const reader = new StreamReader(sock, cfg.keys);
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
    const { cfg, log } = this.ctx;
    let ok = 0;
    for (const a of addrs) {
      const i = a.lastIndexOf(':');
      const host = i > 0 ? a.slice(0, i) : a;
      const port = i > 0 ? Number(a.slice(i + 1)) : 8301;
      let ips: string[];
      try {
        ips = isIPv4(host) ? [host] : (await lookup(host, { all: true, family: 4 })).map((r) => r.address);
      } catch (e) {
        log.warn({ addr: a, err: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'gossip join: cannot resolve');
        continue;
      }
      for (const ip of ips) {
        if (port === cfg.port && (ip === cfg.advertiseAddr || ip === cfg.bindAddr)) continue;
        try {
          await this.pushPullWith(ip, port, true);
          ok++;
        } catch (e) {
          log.warn({ addr: `${ip}:${port}`, err: (e as Error).message }, 'gossip join attempt failed');
        }
      }
    }
    return ok;
  }

  /** The periodic anti-entropy round: a push/pull with one random live peer. */
  async periodic(): Promise<void> {
    const peers = livePeers(this.ctx);
    if (!peers.length) return;
    const p = peers[Math.floor(Math.random() * peers.length)];
    await this.pushPullWith(p.addr, p.port, false).catch((e: Error) => this.ctx.log.debug({ peer: p.name, err: e.message }, 'push/pull failed'));
  }

  /**
   * Serf's reconnect: a push/pull with one random failed member. Once nobody gossips to it any more, this is the only
   * way two sides of a healed partition find each other. The first exchange makes each side refute the other's view
   * of it (a new incarnation); a second one at once carries the refutations, so one round joins them up.
   */
  async reconnect(): Promise<void> {
    const { cfg, nodes, log } = this.ctx;
    const failed = [...nodes.values()].filter((n) => n.state === NodeState.dead && n.name !== cfg.name);
    if (!failed.length) return;
    const n = failed[Math.floor(Math.random() * failed.length)];
    try {
      await this.pushPullWith(n.addr, n.port, false);
      if (nodes.get(n.name)?.state === NodeState.dead) await this.pushPullWith(n.addr, n.port, false);
      if (nodes.get(n.name)?.state !== NodeState.dead) log.info({ peer: n.name }, 'reconnected to a failed member');
    } catch (e) {
      log.debug({ peer: n.name, err: (e as Error).message }, 'reconnect to a failed member failed');
    }
  }
}
