// A sidecar left to a proxy of its own: with "nodemesh-proxy": "external" in its Meta the agent opens no listener for it,
// and Consul 1.8.7's built-in proxy (`consul connect proxy -sidecar-for web`, pointed at the nodemesh agent) serves it —
// its leaf, roots and authorization from nodemesh — reached from another nodemesh agent's upstream over mTLS.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { poolCa, put, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const skip = consulMissing();
const A = '127.0.24.1';
const B = '127.0.24.2';
const APP = '127.0.24.11';
let a: TestAgent;
let b: TestAgent;
let app: Server;
let proxy: ChildProcess | undefined;
let proxyOut = '';
let upstreamPort = 0;

before(async () => {
  if (skip) return;
  app = createServer((_q, r) => r.end('web behind consul\'s proxy'));
  await new Promise<void>((r) => app.listen(0, APP, r));
  const ca = await poolCa();
  a = await startTestAgent({ node: 'ext-a', bind: A, ...ca });
  b = await startTestAgent({ node: 'ext-b', bind: B, join: [`${A}:${a.gossip.port}`], ...ca });
  await a.api('/v1/agent/service/register', put({
    Name: 'web', Address: APP, Port: (app.address() as { port: number }).port,
    // Consul's proxy binds its public listener to the registration's Address.
    Connect: { SidecarService: { Address: A, Meta: { 'nodemesh-proxy': 'external' } } },
  }));
  upstreamPort = await freePort('127.0.0.1');
  await b.api('/v1/agent/service/register', put({ Name: 'shop', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'web', LocalBindPort: upstreamPort }] } } } }));
});

after(async () => {
  proxy?.kill();
  await b?.stop();
  await a?.stop();
  app?.close();
});

test('the agent opens no listener for an external sidecar, and is ready without one', { skip }, async () => {
  const services = await (await a.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  const port = services['web-sidecar-proxy'].Port;
  assert.ok(!a.dataPlane.listeners().inbound.includes(`${A}:${port}`), 'no public listener of nodemesh\'s');
  assert.equal((await a.api('/v1/agent/ready')).status, 200, 'not waiting for a listener it will never open');
  assert.equal((await a.api('/v1/agent/connect/ca/leaf/web')).status, 200, 'the external proxy gets web\'s leaf on this node');
});

test('consul connect proxy -sidecar-for web serves it; a nodemesh caller reaches web through it over mTLS', { skip }, async () => {
  proxy = spawn(CONSUL_BIN, ['connect', 'proxy', '-sidecar-for', 'web'], { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` } });
  proxy.stdout!.on('data', (c: Buffer) => { proxyOut += c; });
  proxy.stderr!.on('data', (c: Buffer) => { proxyOut += c; });
  let last = '';
  await waitFor(async () => {
    last = await fetch(`http://127.0.0.1:${upstreamPort}/`).then((r) => r.text(), (e: Error) => e.message);
    assert.equal(last, 'web behind consul\'s proxy', `through b's upstream and consul's proxy (last: ${last}; proxy log: ${proxyOut.slice(-400)})`);
  }, 30_000);
  assert.doesNotMatch(proxyOut, /address already in use/, 'nothing else holds the sidecar\'s port');
});
