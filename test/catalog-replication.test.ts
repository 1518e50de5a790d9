// The catalog and intentions replicated over gossip between real agents on loopback, and traffic across nodes.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { put, spawnAgent, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
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

test('kill -9 an agent: it is marked critical and upstreams stop choosing it; restarted on its data dir it refutes and its services are back', async () => {
  const [a1, , a3] = agents;
  const echo = async (host: string, tag: string) => {
    const srv = createServer((s) => { s.on('error', () => s.destroy()); s.end(tag); });
    await new Promise<void>((r) => srv.listen(0, host, r));
    return { srv, port: (srv.address() as { port: number }).port };
  };
  const onChild = await echo('127.0.8.41', 'child');
  const onA3 = await echo('127.0.8.43', 'a3');
  const dataDir = tempDir();
  const cfg = join(dataDir, '..', `rep-9-${process.pid}.json`);
  writeFileSync(cfg, JSON.stringify({ ca_file: caFiles.caFile, ca_key_file: caFiles.caKeyFile, default_intention_policy: 'allow' }));
  const args = ['--node', 'rep-9', '--bind', '127.0.8.9', '--data-dir', dataDir, '--config-file', cfg,
    '--join', `127.0.8.1:${a1.gossip.port}`, '--serf-lan-port', String(await freePort('127.0.8.9'))];
  let child = await spawnAgent(args);
  await fetch(`${child.url}/v1/agent/service/register`, put({ Name: 'pay', Address: '127.0.8.41', Port: onChild.port, Connect: { SidecarService: {} } }));
  await a3.api('/v1/agent/service/register', put({ Name: 'pay', Address: '127.0.8.43', Port: onA3.port, Connect: { SidecarService: {} } }));
  const up = await freePort('127.0.0.1');
  await a1.api('/v1/agent/service/register', put({ Name: 'shop', Address: '127.0.8.12', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'pay', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal((await json(a1, '/v1/health/connect/pay?passing')).length, 2), 15_000);
  const call = () => new Promise<string>((resolve) => {
    const sock = connect({ host: '127.0.0.1', port: up, localAddress: '127.0.8.12' });
    let got = '';
    sock.on('data', (c) => { got += c; });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(got));
  });
  await waitFor(async () => assert.equal(await call(), 'child'), 10_000); // both instances take traffic

  child.proc.kill('SIGKILL');
  await child.exited;
  await waitFor(async () => {
    const h = await json(a1, '/v1/health/service/pay');
    assert.equal(h.find((e: any) => e.Node.Node === 'rep-9')?.Checks.find((c: any) => c.CheckID === 'serfHealth')?.Status, 'critical');
  }, 30_000);
  assert.deepEqual((await json(a1, '/v1/health/connect/pay?passing')).map((e: any) => e.Node.Node), ['rep-3']);
  for (let i = 0; i < 8; i++) assert.equal(await call(), 'a3', 'a failed node is no longer picked');

  child = await spawnAgent(args);
  try {
    await waitFor(async () => {
      const m = (await json(a1, '/v1/agent/members')).find((x: any) => x.Name === 'rep-9');
      assert.equal(m?.Status, 1, 'restarted agent is alive again');
    }, 15_000);
    await waitFor(async () => assert.equal((await json(a1, '/v1/health/connect/pay?passing')).length, 2), 15_000);
    assert.equal((await (await fetch(`${child.url}/v1/agent/services`)).json() as Record<string, unknown>)['pay'] !== undefined, true, 'not re-registered: restored from its data dir');
  } finally {
    child.proc.kill('SIGTERM');
    await child.exited;
    onChild.srv.close();
    onA3.srv.close();
  }
});
