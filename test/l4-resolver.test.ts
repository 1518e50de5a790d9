// The byte path picks instances with the same balancer as L7: a TCP service's resolver (default subset, failover) decides where connections go.
// One agent on 127.0.192.1; db v1 127.0.192.21, db v2 127.0.192.22; web's upstream listener on 127.0.0.1.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { put, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip, type App } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

let agent: TestAgent;
const apps: Record<string, App> = {};
let upstream = 0;

before(async () => {
  agent = await startTestAgent({ node: 'l4-resolver', bind: '127.0.192.1', ...(await sharedCa()) });
  for (const [version, host] of [['v1', '127.0.192.21'], ['v2', '127.0.192.22']]) {
    apps[version] = await echoApp(host);
    const r = await agent.api('/v1/agent/service/register', put({ Name: 'db', ID: `db-${version}`, Address: host, Port: apps[version].port, Meta: { version }, Connect: { SidecarService: {} } }));
    assert.equal(r.status, 200);
  }
  upstream = await freePort('127.0.0.1');
  await agent.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.192.11', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'db', LocalBindPort: upstream }] } } } }));
  await waitFor(async () => assert.equal((await roundTrip('127.0.0.1', upstream, 'ping')).reply.toString(), 'ping'), 15_000);
});

after(async () => {
  await agent?.stop().catch(() => undefined);
  for (const a of Object.values(apps)) a.server.close();
});

const spread = async (n: number) => {
  const before = { v1: apps.v1.connections, v2: apps.v2.connections };
  for (let i = 0; i < n; i++) assert.equal((await roundTrip('127.0.0.1', upstream, `m${i}`)).reply.toString(), `m${i}`);
  return { v1: apps.v1.connections - before.v1, v2: apps.v2.connections - before.v2 };
};

test('without a resolver, connections are spread over both instances (round robin)', async () => {
  const got = await spread(10);
  assert.deepEqual(got, { v1: 5, v2: 5 });
});

test('a resolver\'s DefaultSubset sends every connection to that subset; a subset without instances fails over', async () => {
  const subsets = { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' }, v3: { Filter: 'Service.Meta.version == v3' } };
  assert.equal((await agent.api('/v1/config', put({ Kind: 'service-resolver', Name: 'db', DefaultSubset: 'v2', Subsets: subsets }))).status, 200);
  assert.deepEqual(await spread(6), { v1: 0, v2: 6 });
  assert.equal((await agent.api('/v1/config', put({ Kind: 'service-resolver', Name: 'db', DefaultSubset: 'v3', Subsets: subsets, Failover: { v3: { ServiceSubset: 'v1' } } }))).status, 200);
  assert.deepEqual(await spread(6), { v1: 6, v2: 0 });
  assert.equal((await agent.api('/v1/config/service-resolver/db', { method: 'DELETE' })).status, 200);
  assert.deepEqual(await spread(4), { v1: 2, v2: 2 });
});
