// Consul's DNS interface on a real agent, asked by Node's resolver, raw UDP/TCP packets and (where installed) dig:
// services, tags, SRV targets, health, Connect, nodes, virtual IPs, limits and truncation, recursors, bad packets.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import packet, { type DecodedPacket as Decoded } from 'dns-packet';

/** dns-packet decodes the rcode too; its types leave it out. */
type DecodedPacket = Decoded & { rcode: string };
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

/** A decoded record, loosely typed (dns-packet's union has no `data` on OPT). */
type Rec = { name: string; type: string; ttl: number; data: any };
const recs = (list: unknown) => (list ?? []) as Rec[];

const NODE_ADDR = '127.0.20.1';
const RECURSOR = '127.0.20.9';
let agent: TestAgent;
let port: number;
let recursor: { close(): void; port: number; asked: string[] };

/** A stand-in upstream resolver: answers every A question with 127.0.20.99. */
async function fakeRecursor(): Promise<typeof recursor> {
  const sock = createSocket('udp4');
  const asked: string[] = [];
  sock.on('message', (m, r) => {
    let q: Decoded;
    try { q = packet.decode(m); } catch { return; }
    if (!q.questions?.[0]) return;
    asked.push(q.questions[0].name);
    sock.send(packet.encode({ type: 'response', id: q.id, flags: packet.RECURSION_AVAILABLE, questions: q.questions, answers: [{ type: 'A', name: q.questions[0].name, ttl: 60, data: '127.0.20.99' }] }), r.port, r.address);
  });
  await new Promise<void>((r) => sock.bind(0, RECURSOR, r));
  return { close: () => sock.close(), port: sock.address().port, asked };
}

function udpQuery(name: string, type: string, opts: { edns?: number; raw?: Buffer; id?: number } = {}): Promise<DecodedPacket | undefined> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const msg = opts.raw ?? packet.encode({
      type: 'query', id: opts.id ?? 4242, flags: packet.RECURSION_DESIRED, questions: [{ type: type as 'A', name }],
      additionals: (opts.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns }] : []) as never[],
    });
    const timer = setTimeout(() => { sock.close(); resolve(undefined); }, 1500);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      try { resolve(packet.decode(m) as DecodedPacket); } catch (e) { reject(e); }
    });
    sock.send(msg, port, '127.0.0.1');
  });
}

function tcpQuery(name: string, type: string): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { s.destroy(); resolve(packet.decode(buf.subarray(2)) as DecodedPacket); }
    });
    s.on('error', reject);
    s.write(packet.streamEncode({ type: 'query', id: 7, questions: [{ type: type as 'A', name }] }));
  });
}

const resolver = () => {
  const r = new Resolver({ timeout: 1500, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
};

before(async () => {
  recursor = await fakeRecursor();
  agent = await startTestAgent({
    node: 'dns-node', bind: NODE_ADDR, nodeMeta: { zone: 'z1' }, recursors: [`${RECURSOR}:${recursor.port}`],
    dnsConfig: { onlyPassing: false, nodeTtlS: 0, serviceTtlS: { db: 30 }, udpAnswerLimit: 3, enableTruncate: true },
  });
  port = agent.dnsPort ?? 0;
  const reg = async (body: unknown) => assert.equal((await agent.api('/v1/agent/service/register', put(body))).status, 200);
  // Five instances of api: one on the node's address, four with addresses of their own.
  await reg({ ID: 'api-0', Name: 'api', Port: 9000, Tags: ['v1'] });
  for (let i = 1; i <= 4; i++) await reg({ ID: `api-${i}`, Name: 'api', Port: 9000 + i, Address: `127.0.20.${10 + i}`, Tags: i % 2 ? ['v2'] : ['v1'] });
  await reg({ ID: 'db-1', Name: 'db', Port: 5432, Address: '127.0.20.21', Check: { TTL: '30s', Status: 'warning' } });
  await reg({ ID: 'db-2', Name: 'db', Port: 5432, Address: '127.0.20.22', Check: { TTL: '30s', Status: 'critical' } });
  await reg({ ID: 'v6', Name: 'six', Port: 80, Address: '::1' });
  await reg({ Name: 'web', Port: 8080, Address: '127.0.20.30', Connect: { SidecarService: {} } });
});

after(async () => {
  await agent?.stop();
  recursor?.close();
});

test('A answers: healthy instances only (critical left out, warning kept), tags and RFC 2782 names, case-insensitive', async () => {
  assert.ok(port > 0, 'the agent reports its DNS port');
  const all = await resolver().resolve4('api.service.consul');
  assert.equal(all.length, 5, 'every healthy instance (Node\'s resolver asks with EDNS, or over TCP after a cut answer)');
  const v2 = (await resolver().resolve4('V2.Api.Service.dc1.Consul')).sort();
  assert.deepEqual(v2, ['127.0.20.11', '127.0.20.13']);
  assert.deepEqual(await resolver().resolve4('db.service.consul'), ['127.0.20.21'], 'warning passes, critical does not');
  const srv = (await resolver().resolveSrv('_api._v1.service.consul')).map((s) => s.port).sort();
  assert.deepEqual(srv, [9000, 9002, 9004]);
});

test('SRV: the node target for an instance on the node address, an .addr. target otherwise, addresses as additionals', async () => {
  const r = await tcpQuery('api.service.consul', 'SRV');
  assert.equal(recs(r.answers).length, 5, 'TCP: every instance');
  const targets = new Map(recs(r.answers).map((a) => [a.data.port, a.data.target]));
  assert.equal(targets.get(9000), 'dns-node.node.dc1.consul');
  assert.equal(targets.get(9001), '7f00140b.addr.dc1.consul');
  const extra = new Map(recs(r.additionals).filter((a) => a.type === 'A').map((a) => [a.name, a.data]));
  assert.equal(extra.get('7f00140b.addr.dc1.consul'), '127.0.20.11');
  assert.equal(extra.get('dns-node.node.dc1.consul'), NODE_ADDR);
  assert.ok(recs(r.additionals).some((a) => a.type === 'TXT' && a.name === 'dns-node.node.dc1.consul'), 'node meta as TXT for the node target');
  assert.ok(r.flag_aa, 'authoritative');
  const addr = await udpQuery('7f00140b.addr.dc1.consul', 'A');
  assert.equal(recs(addr?.answers)[0]?.data, '127.0.20.11', 'the .addr. name resolves');
});

test('EDNS lifts the UDP answer limit and is echoed; a cut UDP answer sets TC with enable_truncate', async () => {
  const edns = await udpQuery('api.service.consul', 'A', { edns: 4096 });
  assert.equal(edns?.answers?.length, 5);
  assert.ok(edns?.additionals?.some((a) => a.type === 'OPT'), 'OPT echoed');
  const plain = await udpQuery('api.service.consul', 'A');
  assert.equal(plain?.answers?.length, 3);
  assert.equal(plain?.flag_tc, true);
  const ttl = await udpQuery('db.service.consul', 'A');
  assert.equal(recs(ttl?.answers)[0]?.ttl, 30, 'service_ttl by name');
});

test('NXDOMAIN with the SOA for unknown names, kinds and datacenters; an empty answer (NODATA) for a missing type', async () => {
  for (const name of ['nope.service.consul', 'foo.consul', 'api.service.dc9.consul', 'x.y.z.api.service.consul']) {
    const r = await udpQuery(name, 'A');
    assert.equal(r?.rcode, 'NXDOMAIN', name);
    assert.equal(r?.authorities?.[0]?.type, 'SOA', `${name}: SOA in authority`);
    assert.equal(recs(r?.authorities)[0]?.data.mname, 'ns.consul');
  }
  const aaaa = await udpQuery('api.service.consul', 'AAAA');
  assert.equal(aaaa?.rcode, 'NOERROR');
  assert.equal(aaaa?.answers?.length, 0);
  assert.equal(aaaa?.authorities?.[0]?.type, 'SOA');
  assert.deepEqual(await resolver().resolve6('six.service.consul'), ['::1']);
});

test('connect, node and virtual names; the virtual IP is also the catalog\'s consul-virtual tagged address', async () => {
  // The sidecar's check passes once its public listener is open.
  let endpoints: { port: number }[] = [];
  for (let i = 0; i < 50 && endpoints.length === 0; i++) {
    endpoints = await resolver().resolveSrv('web.connect.consul').catch(() => []);
    if (!endpoints.length) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(endpoints.length, 1, 'the sidecar proxy is the Connect endpoint');
  assert.ok(endpoints[0].port >= 21000, `the proxy's public port (${endpoints[0].port})`);
  assert.deepEqual(await resolver().resolve4('dns-node.node.consul'), [NODE_ADDR]);
  assert.deepEqual((await resolver().resolveTxt('dns-node.node.consul')).flat().sort(), ['consul-network-segment=', 'zone=z1']);
  const [vip] = await resolver().resolve4('web.virtual.consul');
  assert.match(vip, /^(24\d|25[0-5])\./, `in 240.0.0.0/4: ${vip}`);
  const rows = await (await agent.api('/v1/catalog/service/web')).json() as { ServiceTaggedAddresses?: Record<string, { Address: string; Port: number }> }[];
  assert.deepEqual(rows[0].ServiceTaggedAddresses?.['consul-virtual'], { Address: vip, Port: 8080 });
  const none = await udpQuery('api.virtual.consul', 'A');
  assert.equal(none?.rcode, 'NXDOMAIN', 'a service outside the mesh has no virtual IP');
});

test('names outside the domain go to the recursor; its answer comes back as it gave it', async () => {
  assert.deepEqual(await resolver().resolve4('example.test'), ['127.0.20.99']);
  assert.ok(recursor.asked.includes('example.test'));
  const r = await udpQuery('other.test', 'A');
  assert.equal(r?.flag_ra, true);
});

test('bad packets: FORMERR with the query ID, responses ignored, and the agent keeps answering with its state unchanged', async () => {
  const before = await (await agent.api('/v1/catalog/service/api')).text();
  const truncated = packet.encode({ type: 'query', id: 0x1234, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'api.service.consul' }] }).subarray(0, 17);
  const r = await udpQuery('', 'A', { raw: truncated });
  assert.equal(r?.id, 0x1234);
  assert.equal(r?.rcode, 'FORMERR');
  const loop = Buffer.from('000100000001000000000000c00c00010001', 'hex');
  assert.equal((await udpQuery('', 'A', { raw: loop }))?.rcode, 'FORMERR', 'a compression pointer to itself');
  const response = packet.encode({ type: 'response', id: 9, questions: [{ type: 'A', name: 'api.service.consul' }] });
  assert.equal(await udpQuery('', 'A', { raw: response }), undefined, 'a response is not answered');
  const two = packet.encode({ type: 'query', id: 5, questions: [{ type: 'A', name: 'a.service.consul' }, { type: 'A', name: 'b.service.consul' }] });
  assert.equal((await udpQuery('', 'A', { raw: two }))?.rcode, 'FORMERR', 'two questions');
  const sock = createSocket('udp4');
  for (let i = 0; i < 300; i++) {
    const junk = Buffer.from(Array.from({ length: 1 + (i % 80) }, (_, j) => (i * 31 + j * 17) & 255));
    await new Promise((r) => sock.send(junk, port, '127.0.0.1', r));
  }
  sock.close();
  // A flood can fill the socket's receive buffer, and the kernel drops what comes next (UDP): ask until the backlog is read.
  let answered: DecodedPacket | undefined;
  for (let k = 0; k < 5 && !answered; k++) answered = await udpQuery('db.service.consul', 'A', { id: 100 + k });
  assert.equal(answered?.rcode, 'NOERROR', 'answering again once the flood is read');
  assert.equal((await resolver().resolve4('db.service.consul'))[0], '127.0.20.21', 'still answering');
  assert.equal(await (await agent.api('/v1/catalog/service/api')).text(), before, 'catalog unchanged');
});

test('dig (Debian\'s dnsutils) reads the answers as Consul\'s: SRV with targets, and the virtual name', { skip: !existsSync('/usr/bin/dig') && 'dig is not installed (scripts/install-interop.sh installs dnsutils)' }, async () => {
  const dig = async (...args: string[]) => (await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args])).stdout;
  const srv = await dig('api.service.consul', 'SRV');
  assert.match(srv, /status: NOERROR/);
  assert.match(srv, /flags: qr aa rd ra;/);
  assert.match(srv, /api\.service\.consul\.\s+0\s+IN\s+SRV\s+1 1 900\d /);
  assert.match(await dig('+short', 'web.virtual.consul'), /^2(4\d|5[0-5])\.\d+\.\d+\.\d+$/m);
  assert.match(await dig('nope.service.consul'), /status: NXDOMAIN[\s\S]*consul\.\s+0\s+IN\s+SOA\s+ns\.consul\. hostmaster\.consul\./);
});
