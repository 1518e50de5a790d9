// The agent service API against a real agent: register, read back through agent, catalog and health, deregister.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
before(async () => { agent = await startTestAgent(); });
after(async () => { await agent.stop(); });

const json = async (path: string) => (await agent.api(path)).json() as Promise<any>;

test('register with defaults: ID from Name, default weights, tagged addresses from Address', async () => {
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'api', Port: 9000, Address: '127.0.0.5', Tags: ['a'], Meta: { v: '1' } }));
  assert.equal(r.status, 200);
  assert.equal(await r.text(), '');
  const svc = (await json('/v1/agent/services')).api;
  assert.equal(svc.ID, 'api');
  assert.equal(svc.Service, 'api');
  assert.deepEqual(svc.Weights, { Passing: 1, Warning: 1 });
  assert.deepEqual(svc.TaggedAddresses.lan_ipv4, { Address: '127.0.0.5', Port: 9000 });
  assert.deepEqual(svc.TaggedAddresses.wan_ipv4, { Address: '127.0.0.5', Port: 9000 });
  const one = await agent.api('/v1/agent/service/api');
  const body = await one.json() as any;
  assert.equal(one.headers.get('x-consul-contenthash'), body.ContentHash);
  assert.equal((await agent.api('/v1/agent/service/nope')).status, 404);
});

test('snake_case and any-case keys are accepted, as Consul does', async () => {
  const r = await agent.api('/v1/agent/service/register', put({ name: 'snake', port: 1, enable_tag_override: true, TAGS: ['x'] }));
  assert.equal(r.status, 200, await r.text());
  const svc = (await json('/v1/agent/services')).snake;
  assert.equal(svc.EnableTagOverride, true);
  assert.deepEqual(svc.Tags, ['x']);
});

test('catalog and health show the instance with its checks; ?tag and ?passing filter', async () => {
  await agent.api('/v1/agent/service/register', put({ Name: 'web', ID: 'web-1', Port: 80, Tags: ['blue'], Check: { TTL: '30s', Status: 'passing' } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'web', ID: 'web-2', Port: 81, Tags: ['green'], Check: { TTL: '30s' } }));
  const services = await json('/v1/catalog/services');
  assert.deepEqual(services.web.sort(), ['blue', 'green']);
  const rows = await json('/v1/catalog/service/web');
  assert.deepEqual(rows.map((r: any) => r.ServiceID), ['web-1', 'web-2']);
  assert.equal(rows[0].Node, 'node-1');
  assert.equal(rows[0].Datacenter, 'dc1');
  assert.deepEqual((await json('/v1/catalog/service/web?tag=green')).map((r: any) => r.ServiceID), ['web-2']);
  assert.deepEqual(await json('/v1/catalog/service/unknown'), []);

  const health = await json('/v1/health/service/web');
  assert.equal(health.length, 2);
  assert.deepEqual(health[0].Checks.map((c: any) => c.CheckID), ['serfHealth', 'service:web-1']);
  assert.equal(health[1].Checks[1].Status, 'critical');
  for (const q of ['?passing', '?passing=true', '?passing=1']) {
    assert.deepEqual((await json(`/v1/health/service/web${q}`)).map((e: any) => e.Service.ID), ['web-1'], q);
  }
  assert.equal((await json('/v1/health/service/web?passing=false')).length, 2);
  const bad = await agent.api('/v1/health/service/web?passing=abc');
  assert.equal(bad.status, 400);
  assert.equal(await bad.text(), 'Invalid value for ?passing');

  const checks = await json('/v1/health/checks/web');
  assert.deepEqual(checks.map((c: any) => c.CheckID).sort(), ['service:web-1', 'service:web-2']);
  const node = await json('/v1/health/node/node-1');
  assert.ok(node.some((c: any) => c.CheckID === 'serfHealth'));
  const critical = await json('/v1/health/state/critical');
  assert.ok(critical.some((c: any) => c.CheckID === 'service:web-2'));
  assert.equal((await agent.api('/v1/health/state/bogus')).status, 400);

  const nodes = await json('/v1/catalog/nodes');
  assert.equal(nodes.length, 1);
  assert.equal(nodes[0].Node, 'node-1');
  const nodeServices = await json('/v1/catalog/node/node-1');
  assert.ok(nodeServices.Services['web-1']);
  assert.equal(await json('/v1/catalog/node/ghost'), null);
});

test('catalog reads carry X-Consul-Index and the consistency headers', async () => {
  const r = await agent.api('/v1/catalog/services');
  assert.match(r.headers.get('x-consul-index') ?? '', /^[1-9]\d*$/);
  assert.equal(r.headers.get('x-consul-knownleader'), 'true');
  assert.equal(r.headers.get('x-consul-effective-consistency'), 'leader');
});

test('checks: one Check gets service:<id>, several get service:<id>:n; replace-existing-checks drops the rest', async () => {
  await agent.api('/v1/agent/service/register', put({ Name: 'multi', Checks: [{ TTL: '10s' }, { TTL: '10s', Name: 'second' }] }));
  let checks = await json('/v1/agent/checks');
  assert.ok(checks['service:multi:1']);
  assert.equal(checks['service:multi:2'].Name, 'second');
  assert.equal(checks['service:multi:1'].Name, "Service 'multi' check");
  assert.equal(checks['service:multi:1'].Status, 'critical');
  assert.equal(checks['service:multi:1'].Type, 'ttl');
  assert.equal(checks['service:multi:1'].Definition.TTL, '10s');

  // Without the flag, checks not in the new definition stay.
  await agent.api('/v1/agent/service/register', put({ Name: 'multi', Check: { CheckID: 'keep', TTL: '10s' } }));
  checks = await json('/v1/agent/checks');
  assert.ok(checks['service:multi:1'] && checks.keep);
  await agent.api('/v1/agent/service/register?replace-existing-checks=true', put({ Name: 'multi', Check: { CheckID: 'keep', TTL: '10s' } }));
  checks = await json('/v1/agent/checks');
  assert.deepEqual(Object.keys(checks).filter((k) => checks[k].ServiceID === 'multi'), ['keep']);
});

test('standalone checks: register, read, deregister (unknown IDs are fine)', async () => {
  let r = await agent.api('/v1/agent/check/register', put({ Name: 'disk', TTL: '1m' }));
  assert.equal(r.status, 200, await r.text());
  let checks = await json('/v1/agent/checks');
  assert.equal(checks.disk.ServiceID, '');
  r = await agent.api('/v1/agent/check/register', put({ Name: 'x', TTL: '1m', ServiceID: 'ghost' }));
  assert.equal(r.status, 400);
  r = await agent.api('/v1/agent/check/deregister/disk', put());
  assert.equal(r.status, 200);
  checks = await json('/v1/agent/checks');
  assert.equal(checks.disk, undefined);
  assert.equal((await agent.api('/v1/agent/check/deregister/never-was', put())).status, 200);
});

test('sidecar expansion: <id>-sidecar-proxy, port from 21000, inherited tags and meta, removed with its parent', async () => {
  const r = await agent.api('/v1/agent/service/register', put({
    Name: 'billing', Port: 7000, Tags: ['t1'], Meta: { team: 'pay' },
    Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'db', LocalBindPort: 9191 }] } } },
  }));
  assert.equal(r.status, 200, await r.text());
  const services = await json('/v1/agent/services');
  const sc = services['billing-sidecar-proxy'];
  assert.equal(sc.Kind, 'connect-proxy');
  assert.equal(sc.Service, 'billing-sidecar-proxy');
  assert.ok(sc.Port >= 21000 && sc.Port <= 21255);
  assert.deepEqual(sc.Tags, ['t1']);
  assert.deepEqual(sc.Meta, { team: 'pay' });
  assert.equal(sc.Proxy.DestinationServiceName, 'billing');
  assert.equal(sc.Proxy.DestinationServiceID, 'billing');
  assert.equal(sc.Proxy.LocalServiceAddress, '127.0.0.1');
  assert.equal(sc.Proxy.LocalServicePort, 7000);
  assert.deepEqual(sc.Proxy.Upstreams, [{ DestinationType: 'service', DestinationName: 'db', LocalBindPort: 9191 }]);
  const checks = await json('/v1/agent/checks');
  assert.equal(checks['service:billing-sidecar-proxy:1'].Name, 'Connect Sidecar Listening');
  assert.equal(checks['service:billing-sidecar-proxy:2'].Name, 'Connect Sidecar Aliasing billing');

  // A second sidecar gets another port; re-registering keeps the first one's.
  await agent.api('/v1/agent/service/register', put({ Name: 'orders', Port: 7001, Connect: { SidecarService: {} } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'billing', Port: 7000, Connect: { SidecarService: {} } }));
  const again = await json('/v1/agent/services');
  assert.equal(again['billing-sidecar-proxy'].Port, sc.Port);
  assert.notEqual(again['orders-sidecar-proxy'].Port, sc.Port);

  const connect = await json('/v1/health/connect/billing');
  assert.deepEqual(connect.map((e: any) => e.Service.ID), ['billing-sidecar-proxy']);

  await agent.api('/v1/agent/service/deregister/billing', put());
  const after = await json('/v1/agent/services');
  assert.equal(after.billing, undefined);
  assert.equal(after['billing-sidecar-proxy'], undefined);
  const checksAfter = await json('/v1/agent/checks');
  assert.equal(checksAfter['service:billing-sidecar-proxy:1'], undefined);
});

test('deregister: unknown ID is 200, empty ID is 500 "ServiceID missing"', async () => {
  assert.equal((await agent.api('/v1/agent/service/deregister/not-there', put())).status, 200);
  const r = await agent.api('/v1/agent/service/deregister/', put());
  assert.equal(r.status, 500);
  assert.equal(await r.text(), 'ServiceID missing');
});

test('wrong methods get 405, unknown paths 404', async () => {
  let r = await agent.api('/v1/agent/service/register', { method: 'POST', body: '{}' });
  assert.equal(r.status, 405);
  assert.equal(await r.text(), 'method POST not allowed');
  r = await agent.api('/v1/agent/service/deregister/x', { method: 'DELETE' });
  assert.equal(r.status, 405);
  r = await agent.api('/v1/agent/check/pass/x');
  assert.equal(r.status, 405);
  r = await agent.api('/v1/nope');
  assert.equal(r.status, 404);
});

test('self, members, status/leader describe this agent', async () => {
  const self = await json('/v1/agent/self');
  assert.equal(self.Config.NodeName, 'node-1');
  assert.equal(self.Config.Datacenter, 'dc1');
  const members = await json('/v1/agent/members');
  assert.equal(members.length, 1);
  assert.equal(members[0].Name, 'node-1');
  assert.equal(members[0].Status, 1);
  // No servers in the pool: the agent names itself, on the port its gossip really listens on.
  assert.equal(await json('/v1/status/leader'), `127.0.0.1:${agent.gossip.port}`);
  assert.equal(self.Member.Port, agent.gossip.port);
});

test('sidecar ports skip any local service already in the range; deregistering a parent keeps a separately registered proxy', async () => {
  await agent.api('/v1/agent/service/register', put({ Name: 'squatter', Port: 21000 }));
  await agent.api('/v1/agent/service/register', put({ Name: 'pay', Port: 7100, Connect: { SidecarService: {} } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'pay-proxy', Kind: 'connect-proxy', Port: 21500, Proxy: { DestinationServiceName: 'pay', DestinationServiceID: 'pay' } }));
  const services = await json('/v1/agent/services');
  assert.notEqual(services['pay-sidecar-proxy'].Port, 21000);
  assert.equal(services['pay-sidecar-proxy'].LocallyRegisteredAsSidecar, undefined, 'internal flag must not leak');
  await agent.api('/v1/agent/service/deregister/pay', put());
  const after = await json('/v1/agent/services');
  assert.equal(after['pay-sidecar-proxy'], undefined);
  assert.ok(after['pay-proxy'], 'a proxy registered on its own stays');
  for (const id of ['squatter', 'pay-proxy']) await agent.api(`/v1/agent/service/deregister/${id}`, put());
});
