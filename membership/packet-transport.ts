// memberlist's transport: the UDP socket and TCP listener, sealing and stream framing, piggybacked sends, decoding and dispatching what arrives.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { asObject, decode, Reader, uint } from './go-msgpack.js';
import { ipOf, type MemberlistContext } from './memberlist-context.js';
import { compound, compress, crc32, decompress, encrypt, decrypt, PacketError, splitCompound, withCrc } from './packet-codec.js';
import { EncryptionMismatch, StreamReader } from './stream-reader.js';
import * as m from './wire-messages.js';
import { MsgType } from './wire-messages.js';

export const UDP_BUFFER = 1400;
const MAX_INBOUND_STREAMS = 128;

/** Where received messages go: the parts that own probing, node states and push/pull. */
export interface PacketHandlers {
  relayPing(req: m.IndirectPing, from: string, fromPort: number): Promise<void>;
  ack(seq: number, payload: Buffer | null): void;
  nack(seq: number): void;
  alive(a: m.Alive): void;
  suspect(s: m.Suspect): void;
  dead(d: m.Dead): void;
  localPushPull(join: boolean): Buffer;
  mergePushPull(remote: ReturnType<typeof m.readPushPull>): void;
}

export class PacketTransport {
  private udp?: UdpSocket;
  private tcp?: Server;
  private readonly streams = new Set<Socket>();

  constructor(private readonly ctx: MemberlistContext, private readonly handlers: PacketHandlers) {}

  /** Listens on TCP at the configured address and port; resolves with the port (the one the OS picked, for port 0). */
  async listenTcp(): Promise<number> {
    const { cfg } = this.ctx;
    this.tcp = createServer((s) => this.onStream(s));
    await new Promise<void>((resolve, reject) => {
      this.tcp!.once('error', reject);
      this.tcp!.listen(cfg.port, cfg.bindAddr, () => resolve());
    });
    return (this.tcp.address() as { port: number }).port;
  }

  /** Binds UDP on the same port as TCP. */
  async bindUdp(port: number): Promise<void> {
    this.udp = createSocket({ type: 'udp4', recvBufferSize: 2 * 1024 * 1024 });
    this.udp.on('message', (buf, rinfo) => this.onPacket(buf, rinfo.address, rinfo.port));
    this.udp.on('error', (e) => this.ctx.log.warn({ err: e.message }, 'gossip UDP socket error'));
    await new Promise<void>((resolve, reject) => {
      this.udp!.once('error', reject);
      this.udp!.bind(port, this.ctx.cfg.bindAddr, () => resolve());
    });
  }

  /** Whether a socket is still open (shutdown is idempotent on this). */
  get open(): boolean {
    return this.udp !== undefined || this.tcp !== undefined;
  }

  /** Closes both sockets and cuts open streams; the TCP close waits at most a second. */
  async close(): Promise<void> {
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

  // ---- sending ----

  private seal(msg: Buffer): Buffer {
    return this.ctx.cfg.keys.length ? encrypt(this.ctx.cfg.keys[0], msg) : msg;
  }

  sendUdp(msg: Buffer, addr: string, port: number, opts: { piggyback?: boolean; crc?: boolean } = {}): void {
    if (!this.udp || this.ctx.stopped) return;
    const { cfg, traffic } = this.ctx;
    let packet = msg;
    if (opts.piggyback) {
      const extra = this.takeBroadcasts(UDP_BUFFER - msg.length - 2 - (cfg.keys.length ? 29 : 0), `${addr}:${port}`);
      if (extra.length) packet = compound([msg, ...extra]);
    }
    if (cfg.compression) {
      const c = compress(packet);
      if (c.length < packet.length) packet = c;
    }
    if (opts.crc) packet = withCrc(packet);
    const sealed = this.seal(packet);
    traffic.packetsSent++;
    traffic.bytesSent += sealed.length;
    this.udp.send(sealed, port, addr);
  }

  /** Broadcasts for one packet to `to` (addr:port): memberlist's own first, then the delegate's for that peer. */
  takeBroadcasts(budget: number, to: string): Buffer[] {
    const own = this.ctx.broadcasts.take(2, budget);
    const used = own.reduce((a, b) => a + b.length + 2, 0);
    return [...own, ...this.ctx.delegate.getBroadcasts(2, budget - used, to)];
  }

  /** Frames a stream message: compressed, then encrypted, as memberlist does on TCP. */
  frameStream(msg: Buffer): Buffer {
    const { cfg } = this.ctx;
    let out = cfg.compression ? compress(msg) : msg;
    if (cfg.keys.length) {
      const header = Buffer.alloc(5);
      header[0] = MsgType.encrypt;
      header.writeUInt32BE(1 + 12 + out.length + 16, 1);
      out = Buffer.concat([header, encrypt(cfg.keys[0], out, header)]);
    }
    return out;
  }

  private frameStreamPlain(msg: Buffer): Buffer {
    return this.ctx.cfg.compression ? compress(msg) : msg;
  }

  // ---- receiving ----

  private onPacket(buf: Buffer, from: string, fromPort: number): void {
    const { cfg, dropped, traffic } = this.ctx;
    traffic.packetsReceived++;
    traffic.bytesReceived += buf.length;
    try {
      let msg = buf;
      if (cfg.keys.length) {
        try {
          msg = decrypt(cfg.keys, buf);
        } catch {
          dropped.decrypt++;
          return;
        }
      }
      if (msg.length >= 5 && msg[0] === MsgType.hasCrc) {
        if (crc32(msg.subarray(5)) !== msg.readUInt32BE(1)) throw new PacketError('bad CRC');
        msg = msg.subarray(5);
      }
      this.dispatch(msg, from, fromPort, 0);
    } catch (e) {
      dropped.packets++;
      this.ctx.log.debug({ from, err: (e as Error).message }, 'gossip packet dropped');
    }
  }

  private dispatch(msg: Buffer, from: string, fromPort: number, depth: number): void {
    if (msg.length === 0 || depth > 4) throw new PacketError('empty or over-nested message');
    const type = msg[0];
    const body = msg.subarray(1);
    switch (type) {
      case MsgType.compound:
        for (const part of splitCompound(body)) {
          try { this.dispatch(part, from, fromPort, depth + 1); } catch (e) { this.ctx.dropped.packets++; this.ctx.log.debug({ err: (e as Error).message }, 'compound part dropped'); }
        }
        return;
      case MsgType.compress:
        // A datagram is at most 64 KiB; what it decompresses to is capped so a bomb costs nothing.
        return this.dispatch(decompress(body, 256 * 1024), from, fromPort, depth + 1);
      case MsgType.ping: {
        const p = m.readPing(decode(body));
        if (p.Node && p.Node !== this.ctx.cfg.name) return;
        const to = p.SourceAddr && p.SourcePort ? { addr: ipOf(p.SourceAddr), port: p.SourcePort } : { addr: from, port: fromPort };
        this.sendUdp(m.ack(p.SeqNo, this.ctx.delegate.ackPayload?.() ?? null), to.addr, to.port, { piggyback: true });
        return;
      }
      case MsgType.indirectPing:
        return void this.handlers.relayPing(m.readIndirectPing(decode(body)), from, fromPort);
      case MsgType.ackResp: {
        const a = m.readAck(decode(body));
        this.handlers.ack(a.SeqNo, a.Payload);
        return;
      }
      case MsgType.nackResp:
        this.handlers.nack(m.readAck(decode(body)).SeqNo);
        return;
      case MsgType.alive:
        return this.handlers.alive(m.readAlive(decode(body)));
      case MsgType.suspect:
        return this.handlers.suspect(m.readSuspect(decode(body)));
      case MsgType.dead:
        return this.handlers.dead(m.readSuspect(decode(body)));
      case MsgType.user:
        if (body.length) this.ctx.delegate.notifyMsg(body);
        return;
      default:
        throw new PacketError(`msg type (${type}) not supported`);
    }
  }

  // ---- streams (TCP) ----

  private onStream(sock: Socket): void {
    // Streams are short (one push/pull, ping or user message): bound how many and for how long.
    if (this.streams.size >= MAX_INBOUND_STREAMS) {
      this.ctx.dropped.packets++;
      sock.destroy();
      return;
    }
    this.streams.add(sock);
    const deadline = setTimeout(() => sock.destroy(), this.ctx.cfg.tcpTimeoutMs);
    deadline.unref();
    sock.once('close', () => { clearTimeout(deadline); this.streams.delete(sock); });
    sock.on('error', () => sock.destroy());
    const reader = new StreamReader(sock, this.ctx.cfg.keys);
    reader.message().then((msg) => {
      const type = msg[0];
      if (type === MsgType.pushPull) {
        const remote = m.readPushPull(msg.subarray(1));
        sock.end(this.frameStream(this.handlers.localPushPull(remote.header.Join)));
        this.handlers.mergePushPull(remote);
      } else if (type === MsgType.ping) {
        const p = m.readPing(decode(msg.subarray(1)));
        if (p.Node && p.Node !== this.ctx.cfg.name) return sock.destroy();
        sock.end(this.frameStream(m.ack(p.SeqNo)));
      } else if (type === MsgType.user) {
        // Reliable user message: a {UserMsgLen} header, then that many raw bytes.
        const r = new Reader(msg.subarray(1));
        const len = uint(asObject(r.value(), 'userMsgHeader'), 'UserMsgLen', 20 << 20);
        const payload = msg.subarray(1 + r.pos, 1 + r.pos + len);
        if (payload.length < len) throw new PacketError('reliable user message shorter than its header says');
        if (payload.length) this.ctx.delegate.notifyMsg(payload);
        sock.end();
      } else {
        sock.destroy();
      }
    }).catch((e: Error) => {
      this.ctx.dropped.packets++;
      this.ctx.log.debug({ err: e.message }, 'gossip stream dropped');
      if (e instanceof EncryptionMismatch) sock.end(this.frameStreamPlain(m.withType(MsgType.err, { Error: e.message })));
      else sock.destroy();
    });
  }
}
