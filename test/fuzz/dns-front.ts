// The DNS interface under fuzz: mutated, truncated and random packets over UDP (and some over TCP) against a live agent;
// afterwards it must still answer a real query, with the catalog as it was.

import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import packet from 'dns-packet';
import { pino } from 'pino';
import { startAgent } from '../../agent/agent.js';
import { defaultConfig } from '../../config/agent-config.js';
import { decodeServiceObject } from '../../model/service-definition.js';
import { Rng, mutateBytes } from './mutate.js';

const HOST = '127.0.21.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DnsFrontResult { cases: number; findings: string[]; perSecond: number; heapDeltaMb: number }

const query = (name: string, type: string, edns = false, id = 1) => packet.encode({
  type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: type as 'A', name }],
  additionals: (edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096 }] : []) as never[],
});

/** One valid query answered, or undefined after a second. */
function ask(port: number, name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => { s.close(); resolve(undefined); }, 1000);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve((packet.decode(m) as { rcode?: string }).rcode); });
    s.send(query(name, 'A', false, 77), port, HOST);
  });
}

export async function fuzzDnsFront(cases: number, seed: number, heapMb: () => number): Promise<DnsFrontResult> {
  const agent = await startAgent({
    ...defaultConfig(), dev: true, node: 'fuzz-dns', bind: HOST, client: HOST, httpPort: 0, serfLanPort: 0, dnsPort: 0, logLevel: 'error', drainTimeoutMs: 500,
  }, pino({ level: 'silent' }));
  const findings: string[] = [];
  const port = agent.dnsPort!;
  await agent.local.registerService(decodeServiceObject({ Name: 'web', Port: 80, Tags: ['v1'] }), { replaceExistingChecks: true });
  const catalogBefore = JSON.stringify(agent.catalog.serviceNodes('web').map((s) => s.service));
  const seeds = [
    query('web.service.consul', 'A'), query('web.service.consul', 'SRV', true), query('v1.web.service.dc1.consul', 'AAAA'),
    query('_web._tcp.service.consul', 'SRV'), query('fuzz-dns.node.consul', 'TXT'), query('web.virtual.consul', 'A', true),
    query('7f000001.addr.dc1.consul', 'ANY'), query('example.test', 'A'),
    packet.encode({ type: 'response', id: 3, questions: [{ type: 'A', name: 'web.service.consul' }], answers: [{ type: 'A', name: 'web.service.consul', data: '127.0.0.1' }] }),
  ];
  const rng = new Rng(seed);
  const heap0 = heapMb();
  const udp = createSocket('udp4');
  let replies = 0;
  udp.on('message', () => { replies++; });
  await new Promise<void>((r) => udp.bind(0, HOST, r));
  const t0 = Date.now();
  try {
    for (let i = 0; i < cases; i++) {
      const input = rng.int(10) === 0 ? Buffer.from(Array.from({ length: rng.int(600) }, () => rng.int(256))) : mutateBytes(rng, seeds);
      if (i % 100 === 99) {
        // Over TCP: the input framed with its length, then a random length prefix with a cut body, on one connection.
        const s = connect(port, HOST);
        s.on('error', () => undefined);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(input.length & 0xffff);
        s.end(Buffer.concat([len, input, Buffer.from([rng.int(256), rng.int(256)]), input.subarray(0, rng.int(input.length))]));
      } else {
        udp.send(input, port, HOST);
      }
      // Paced so that most packets reach the decoder rather than a full socket buffer.
      if (i % 200 === 199) await sleep(1);
      if (i % 20_000 === 19_999) process.stderr.write(`fuzz: dns-front: ${i + 1}/${cases}\r`);
    }
    await sleep(500);
    let rcode: string | undefined;
    for (let k = 0; k < 5 && !rcode; k++) rcode = await ask(port, 'web.service.consul');
    if (rcode !== 'NOERROR') findings.push(`after ${cases} packets a real query got ${rcode ?? 'no answer'}`);
    if (replies === 0) findings.push('no packet was answered at all (the fuzz never reached the decoder?)');
    if (JSON.stringify(agent.catalog.serviceNodes('web').map((s) => s.service)) !== catalogBefore) findings.push('the catalog changed under DNS fuzz');
  } finally {
    udp.close();
    await agent.stop();
  }
  const secs = (Date.now() - t0) / 1000;
  return { cases, findings, perSecond: cases / Math.max(secs, 0.001), heapDeltaMb: heapMb() - heap0 };
}
