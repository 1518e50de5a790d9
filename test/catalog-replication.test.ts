// The catalog and intentions replicated over gossip between real agents on loopback, and traffic across nodes.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../agent/ca/certificate-authority.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const agents: TestAgent[] = [];
let caFiles: { caFile: string; caKeyFile: string };
after(async () => { for (const a of agents.reverse()) await a.stop().catch(() => undefined); });

before(async () => {
  const dir = tempDir();
  const root = await CertificateAuthority.createRoot();
  writeFileSync(join(dir, 'ca.pem'), root.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), root.keyPem, { mode: 0o600 });
  caFiles = { caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca-key.pem') };
  // Fast gossip timings are not configurable per agent yet: LAN defaults, so allow a few seconds.
  for (let i = 1; i <= 5; i++) {
    const seed = agents[0] ? [`127.0.8.1:${agents[0].gossip.port}`] : [];
    agents.push(await startTestAgent({ node: `rep-${i}`, bind: `127.0.8.${i}`, join: seed, defaultIntentionPolicy: 'allow', ...caFiles }));
  }
});

const json = async (a: TestAgent, path: string) => (await a.api(path)).json() as Promise<any>;

test('five agents, one seed: a service registered on agent 1 appears on agent 5; check changes and deregistration follow', async () => {
  const [a1, , , , a3] = agents;
  await a1.api('/v1/agent/service/register', put({ Name: 'orders', Port: 7000, Check: { TTL: '1m' } }));
  await waitFor(async () => assert.deepEqual((await json(a3, '/v1/catalog/service/orders')).map((r: any) => r.Node), ['rep-1']));
  assert.equal((await json(a3, '/v1/health/service/orders?passing')).length, 0);
  await a1.api('/v1/agent/check/pass/service:orders', put());
  await waitFor(async () => assert.equal((await json(a3, '/v1/health/service/orders?passing')).length, 1));
  await a1.api('/v1/agent/service/deregister/orders', put());
  await waitFor(async () => assert.deepEqual(await json(a3, '/v1/catalog/service/orders'), []));
  assert.deepEqual((await json(a3, '/v1/catalog/nodes')).map((n: any) => n.Node), ['rep-1', 'rep-2', 'rep-3', 'rep-4', 'rep-5']);
});

test('an intention created on agent 2 decides on agent 4; a blocking query on agent 4 wakes on it', async () => {
  const [, a2, , a3] = agents;
  const idx = (await a3.api('/v1/connect/intentions')).headers.get('x-consul-index');
  const waiting = a3.api(`/v1/connect/intentions?index=${idx}&wait=30s`);
  const r = await a2.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }) });
  assert.equal(r.status, 200);
  const list = await (await waiting).json() as { SourceName: string }[];
  assert.equal(list.length, 1);
  await waitFor(async () => assert.deepEqual(await json(a3, '/v1/connect/intentions/check?source=web&destination=api'), { Allowed: false }));
  const { ID } = await r.json() as { ID: string };
  await a3.api(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  await waitFor(async () => assert.deepEqual(await json(a2, '/v1/connect/intentions'), []));
});

test('cross-node: web on agent 1 reaches api on agent 3 over mTLS; a deny made on agent 5 closes the open connection', async () => {
  const [a1, , a3, , a2] = agents;
  const app = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => s.destroy()); s.pipe(s); });
  await new Promise<void>((r) => app.listen(0, '127.0.8.33', r));
  const up = await freePort('127.0.0.1');
  await a3.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.8.33', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  await a1.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.8.11', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal((await json(a1, '/v1/health/connect/api?passing')).length, 1), 15_000);
  const sock = connect({ host: '127.0.0.1', port: up, localAddress: '127.0.8.11' });
  let closed = false;
  sock.on('close', () => { closed = true; });
  sock.on('error', () => undefined);
  const reply = await new Promise<string>((resolve) => { sock.once('data', (c) => resolve(String(c))); sock.write('across nodes'); });
  assert.equal(reply, 'across nodes');
  await a2.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }) });
  await waitFor(() => assert.ok(closed, 'open cross-node connection not revoked'), 10_000);
  app.close();
});

test('an agent that dies without leaving is marked critical; restarted on its data dir it refutes, and its services are back without re-registering', async () => {
  const dataDir = tempDir();
  const opts = { node: 'rep-9', bind: '127.0.8.9', dataDir, join: [`127.0.8.1:${agents[0].gossip.port}`], ...caFiles };
  const a4 = await startTestAgent(opts);
  await a4.api('/v1/agent/service/register', put({ Name: 'doomed', Port: 1 }));
  // rep-9 stops gracefully at the end of its first life only through the gossip shutdown below.
  await waitFor(async () => assert.equal((await json(agents[0], '/v1/health/service/doomed?passing')).length, 1), 10_000);
  await a4.gossip.shutdown(); // as kill -9 for the pool: no leave, no more answers
  await waitFor(async () => {
    const h = await json(agents[0], '/v1/health/service/doomed');
    assert.equal(h[0]?.Checks.find((c: any) => c.CheckID === 'serfHealth')?.Status, 'critical');
  }, 20_000);
  assert.equal((await json(agents[0], '/v1/health/service/doomed?passing')).length, 0);
  await a4.stop().catch(() => undefined);

  const again = await startTestAgent(opts);
  agents.push(again);
  await waitFor(async () => {
    const m = (await json(agents[0], '/v1/agent/members')).find((x: any) => x.Name === 'rep-9');
    assert.equal(m?.Status, 1, 'restarted agent is alive again');
  }, 15_000);
  await waitFor(async () => assert.equal((await json(agents[0], '/v1/health/service/doomed?passing')).length, 1), 15_000);
});
