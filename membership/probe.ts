// Failure detection: probe rounds (a UDP ping, then indirect pings and a TCP ping in parallel), and relaying others' indirect pings.

import { connect } from 'node:net';
import { sourceAddressFor } from '../lib/source-address.js';
import { decode } from './go-msgpack.js';
import { addrBytes, ipOf, livePeers, type MemberlistContext, type NodeRecord } from './memberlist-context.js';
import type { NodeStates } from './node-state.js';
import { compound } from './packet-codec.js';
import type { PacketTransport } from './packet-transport.js';
import { StreamReader } from './stream-reader.js';
import * as m from './wire-messages.js';
import { MsgType, NodeState } from './wire-messages.js';

export class Prober {
  private seq = 0;
  private readonly ackWaiters = new Map<number, (payload: Buffer | null) => void>();
  private readonly nackWaiters = new Map<number, () => void>();
  private probeIndex = 0;
  private probing = false;

  constructor(private readonly ctx: MemberlistContext, private readonly transport: PacketTransport, private readonly states: NodeStates) {}

  /** An ack arrived (by UDP, ours or relayed). */
  onAck(seq: number, payload: Buffer | null): void {
    this.ackWaiters.get(seq)?.(payload);
  }

  /** A helper could not reach the target of our indirect ping. */
  onNack(seq: number): void {
    this.nackWaiters.get(seq)?.();
  }

  async relayPing(req: m.IndirectPing, from: string, fromPort: number): Promise<void> {
    if (!req.Target) return;
    const seq = ++this.seq;
    const ok = (await this.pingUdp(ipOf(req.Target), req.Port, req.Node, seq, this.ctx.cfg.probeTimeoutMs)) !== false;
    const back = req.SourceAddr && req.SourcePort ? { addr: ipOf(req.SourceAddr), port: req.SourcePort } : { addr: from, port: fromPort };
    if (ok) this.transport.sendUdp(m.ack(req.SeqNo), back.addr, back.port, { piggyback: true });
    else if (req.Nack) this.transport.sendUdp(m.nack(req.SeqNo), back.addr, back.port);
  }

  private pingMsg(node: string, seq: number): Buffer {
    const { cfg } = this.ctx;
    return m.ping({ Node: node, SeqNo: seq, SourceAddr: addrBytes(cfg.advertiseAddr), SourceNode: cfg.name, SourcePort: cfg.port });
  }

  /** A UDP ping: false when no ack came in time, else the ack's payload (null when it carried none). */
  private pingUdp(addr: string, port: number, node: string, seq: number, timeoutMs: number, withSuspect?: Buffer): Promise<Buffer | null | false> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.ackWaiters.delete(seq); resolve(false); }, timeoutMs);
      this.ackWaiters.set(seq, (payload) => { clearTimeout(t); this.ackWaiters.delete(seq); resolve(payload); });
      const p = this.pingMsg(node, seq);
      this.transport.sendUdp(withSuspect ? compound([p, withSuspect]) : p, addr, port, { piggyback: !withSuspect, crc: true });
    });
  }

  private async pingTcp(n: NodeRecord, seq: number): Promise<boolean> {
    const { cfg } = this.ctx;
    try {
      const sock = connect({ host: n.addr, port: n.port, localAddress: sourceAddressFor(cfg.bindAddr, n.addr) });
      sock.on('error', () => undefined);
      sock.setTimeout(cfg.probeIntervalMs, () => sock.destroy(new Error('timeout')));
      await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      sock.write(this.transport.frameStream(this.pingMsg(n.name, seq)));
      const msg = await new StreamReader(sock, cfg.keys).message();
      sock.destroy();
      return msg[0] === MsgType.ackResp && m.readAck(decode(msg.subarray(1))).SeqNo === seq;
    } catch {
      return false;
    }
  }

  /** One probe round (the probe timer's tick). */
  async probe(): Promise<void> {
    if (this.probing) return; // a probe stretched by awareness skips the next tick, as Go's ticker would
    this.probing = true;
    try {
      await this.probeOne();
    } finally {
      this.probing = false;
    }
  }

  private async probeOne(): Promise<void> {
    const { cfg, awareness } = this.ctx;
    const peers = livePeers(this.ctx);
    if (!peers.length || this.ctx.stopped) return;
    const n = peers[this.probeIndex++ % peers.length];
    const seq = ++this.seq;
    // While we look unhealthy ourselves (missed nacks, refutations), give peers longer to answer.
    const window = awareness.scale(cfg.probeIntervalMs);
    const suspectMsg = n.state === NodeState.suspect ? m.suspect({ From: cfg.name, Incarnation: n.incarnation, Node: n.name }) : undefined;
    const sent = performance.now();
    const payload = await this.pingUdp(n.addr, n.port, n.name, seq, awareness.scale(cfg.probeTimeoutMs), suspectMsg);
    if (payload !== false) {
      awareness.apply(-1);
      // Only a direct ack times a round trip (as memberlist's ping delegate).
      if (payload?.length) this.ctx.delegate.notifyPingComplete?.(n, performance.now() - sent, payload);
      return;
    }
    // Indirect probes through up to three other peers, and a TCP ping, in parallel (Lifeguard).
    const helpers = peers.filter((p) => p !== n && p.state === NodeState.alive).sort(() => Math.random() - 0.5).slice(0, 3);
    const expectedNacks = helpers.filter((h) => h.vsn[1] >= 4).length;
    let nacks = 0;
    let allNacked = () => undefined as void;
    this.nackWaiters.set(seq, () => { if (++nacks >= expectedNacks) allNacked(); });
    const acked = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { this.ackWaiters.delete(seq); resolve(false); }, window - cfg.probeTimeoutMs);
      this.ackWaiters.set(seq, () => { clearTimeout(t); this.ackWaiters.delete(seq); resolve(true); });
    });
    for (const h of helpers) {
      this.transport.sendUdp(m.indirectPing({ Nack: h.vsn[1] >= 4, Node: n.name, Port: n.port, SeqNo: seq, Target: addrBytes(n.addr), SourceAddr: addrBytes(cfg.advertiseAddr), SourceNode: cfg.name, SourcePort: cfg.port }), h.addr, h.port, { piggyback: true });
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
    awareness.apply(expectedNacks > 0 ? expectedNacks - nacks : 1);
    this.states.onSuspect({ From: cfg.name, Incarnation: n.incarnation, Node: n.name });
  }
}
