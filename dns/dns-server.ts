// The agent's DNS interface, UDP and TCP on one port: Consul's names from the catalog, others to recursors, bad packets FORMERR.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import packet, { type Answer, type DecodedPacket, type Packet } from 'dns-packet';
import type { Logger } from 'pino';
import { NodemeshError } from '../lib/errors.js';
import { listenServer } from '../lib/listen-server.js';
import { inDomain, soaOf, type DnsAnswers } from './dns-answers.js';
import type { Recursors } from './dns-recursors.js';

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
/** A UDP answer without EDNS fits in 512 bytes (RFC 1035). */
const DEFAULT_UDP_SIZE = 512;
/** TCP: connections open at once, and how long one may sit idle. */
const MAX_TCP_CONNECTIONS = 256;
const TCP_IDLE_MS = 10_000;

export interface DnsServerOptions {
  host: string;
  port: number;
  domain: string;
  answers: DnsAnswers;
  recursors: Recursors;
  /** Most records in a UDP answer to a query without EDNS (Consul's dns_config.udp_answer_limit). */
  udpAnswerLimit: number;
  /** Set TC on a UDP answer that had to be cut, so the client retries over TCP (Consul's dns_config.enable_truncate). */
  enableTruncate: boolean;
  log: Logger;
}

export interface DnsServer {
  port: number;
  close(): Promise<void>;
}

/** `attempt`: how many times a port-0 start has found its UDP port taken for TCP. */
export async function startDnsServer(o: DnsServerOptions, attempt = 0): Promise<DnsServer> {
  const answer = async (buf: Buffer, udp: boolean): Promise<Buffer | undefined> => {
    try {
      return await respond(buf, udp, o);
    } catch (e) {
      o.log.error({ err: (e as Error).stack }, 'dns: answering a query failed');
      return header(buf, RCODE.SERVFAIL);
    }
  };

  const udp: UdpSocket = createSocket({ type: isIP(o.host) === 6 ? 'udp6' : 'udp4' });
  udp.on('message', (msg, rinfo) => {
    void answer(msg, true).then((out) => { if (out) udp.send(out, rinfo.port, rinfo.address); });
  });
  const open = new Set<Socket>();
  const tcp: Server = createServer((sock) => serveTcp(sock, open, answer));
  // Port 0: the OS picks a free UDP port, which TCP may have in use; then both start again on another (a few times).
  const port = await bindUdp(udp, o.port, o.host);
  const failed = await listenServer(tcp, port, o.host).then(() => undefined, (e: NodeJS.ErrnoException) => e);
  if (failed) {
    await new Promise<void>((r) => udp.close(() => r()));
    if (o.port === 0 && failed.code === 'EADDRINUSE' && attempt < 10) return startDnsServer(o, attempt + 1);
    throw new NodemeshError('DNS_LISTEN_FAILED', `cannot listen for DNS on ${o.host}:${port} (TCP): ${failed.code ?? failed.message}`, 1);
  }
  udp.on('error', (e) => o.log.warn({ err: e.message }, 'dns: UDP socket error'));
  tcp.on('error', (e) => o.log.warn({ err: e.message }, 'dns: TCP listener error'));
  o.log.info({ dns: `${o.host}:${port}`, domain: o.domain, recursors: o.recursors.count }, 'DNS listening (UDP and TCP)');

  return {
    port,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => tcp.close(() => r()));
      await new Promise<void>((r) => udp.close(() => r()));
    },
  };
}

/** Binds the UDP socket; a coded error that says what to do when the port is taken. */
function bindUdp(udp: UdpSocket, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, host, () => { udp.off('error', reject); resolve(udp.address().port); });
  }).catch((e: NodeJS.ErrnoException) => {
    throw new NodemeshError('DNS_LISTEN_FAILED', `cannot listen for DNS on ${host}:${port} (UDP): ${e.code ?? e.message}${e.code === 'EADDRINUSE' ? ' (another agent or DNS server there? set ports.dns, or -1 to turn DNS off)' : ''}`, 1);
  });
}

/** One TCP connection: 2-byte length-prefixed messages, several per connection, answered in turn. */
function serveTcp(sock: Socket, open: Set<Socket>, answer: (buf: Buffer, udp: boolean) => Promise<Buffer | undefined>): void {
  if (open.size >= MAX_TCP_CONNECTIONS) {
    sock.destroy();
    return;
  }
  open.add(sock);
  sock.once('close', () => open.delete(sock));
  sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
  sock.on('error', () => undefined);
  let pending = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      const msg = Buffer.from(pending.subarray(2, 2 + pending.readUInt16BE(0)));
      pending = pending.subarray(2 + msg.length);
      void answer(msg, false).then((out) => {
        if (!out || sock.destroyed) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        sock.write(Buffer.concat([len, out]));
      });
    }
  });
}

/** A bare answer header for a query that could not be decoded: its ID, QR, RD as asked, and `rcode`. */
function header(req: Buffer, rcode: number): Buffer | undefined {
  if (req.length < 2) return undefined;
  const out = Buffer.alloc(12);
  req.copy(out, 0, 0, 2);
  out.writeUInt16BE(QR | (req.length > 2 ? (req[2] & 0x01) << 8 : 0) | rcode, 2);
  return out;
}

async function respond(buf: Buffer, udp: boolean, o: DnsServerOptions): Promise<Buffer | undefined> {
  let req: DecodedPacket;
  try {
    req = packet.decode(buf);
  } catch {
    // A response (QR set) is never answered: two servers must not bounce errors at each other.
    return buf.length > 2 && buf[2] & 0x80 ? undefined : header(buf, RCODE.FORMERR);
  }
  if (req.flag_qr) return undefined;
  const rd = req.flag_rd ? RD : 0;
  const ra = o.recursors.count ? RA : 0;
  const opt = (req.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const reply = (rcode: number, p: Packet = {}) => packet.encode({
    ...p, type: 'response', id: req.id, flags: rcode | rd | ra | (p.flags ?? 0), questions: req.questions,
    additionals: [...(p.additionals ?? []), ...(opt ? [{ type: 'OPT', name: '.', udpPayloadSize: Math.max(DEFAULT_UDP_SIZE, opt.udpPayloadSize ?? 0) } as Answer] : [])],
  });
  // dns-packet decodes the opcode too; its types leave it out.
  if ((req as DecodedPacket & { opcode?: string }).opcode !== 'QUERY') return reply(RCODE.NOTIMP);
  const q = req.questions?.[0];
  if (!q || req.questions!.length !== 1) return reply(RCODE.FORMERR);
  const name = q.name.toLowerCase().replace(/\.$/, '');
  if (!inDomain(name, o.domain)) {
    if (!o.recursors.count) return reply(RCODE.REFUSED);
    return (await o.recursors.forward(buf, req.id ?? 0)) ?? reply(RCODE.SERVFAIL);
  }
  const r = o.answers.resolve(q);
  const rcode = RCODE[r.rcode];
  let answers = r.answers;
  let additionals = r.additionals;
  const authorities = answers.length ? [] : [soaOf(o.domain)];
  let flags = AA;
  if (udp) {
    // Consul's trimming: without EDNS at most udp_answer_limit records, then drop records until the answer fits.
    const max = Math.max(DEFAULT_UDP_SIZE, opt?.udpPayloadSize ?? 0);
    const total = answers.length;
    if (!opt && answers.length > o.udpAnswerLimit) answers = answers.slice(0, o.udpAnswerLimit);
    additionals = withTargets(additionals, answers);
    while (answers.length > 0 && packet.encodingLength({ questions: req.questions, answers, additionals, authorities }) + (opt ? 11 : 0) > max) {
      answers = answers.slice(0, -1);
      additionals = withTargets(additionals, answers);
    }
    if (answers.length < total && o.enableTruncate) flags |= TC;
  }
  return reply(rcode, { flags, answers, additionals, authorities });
}

/** The additional records still wanted: those named by a remaining answer's SRV target. */
function withTargets(additionals: Answer[], answers: Answer[]): Answer[] {
  if (!additionals.length) return additionals;
  const targets = new Set(answers.map((a) => (a.type === 'SRV' ? a.data.target : '')));
  return additionals.filter((a) => targets.has(a.name));
}
