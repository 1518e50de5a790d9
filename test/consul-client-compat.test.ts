// The `consul` npm client (v2), unchanged, drives the agent: register with a TTL check, pass it, read catalog and health, deregister.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Consul from 'consul';
import { startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
let consul: Consul;
// The client's typings demand Name and Timeout on every check, which Consul itself does not: cast, don't change the call.
type RegisterOptions = Parameters<Consul['agent']['service']['register']>[0];

before(async () => {
  agent = await startTestAgent({ node: 'compat-node' });
  consul = new Consul({ host: '127.0.0.1', port: agent.http.port });
});
after(async () => { await agent.stop(); });

test('register, pass TTL, read through catalog and health, watch, deregister — all through the consul client', async () => {
  await consul.agent.service.register({
    name: 'payments', id: 'payments-1', port: 7070, address: '127.0.0.9', tags: ['v2'], meta: { team: 'fin' },
    check: { ttl: '30s', notes: 'heartbeat' },
  } as unknown as RegisterOptions);
  const services = await consul.agent.service.list() as Record<string, { Service: string; Port: number; Tags: string[] }>;
  assert.equal(services['payments-1'].Service, 'payments');
  assert.equal(services['payments-1'].Port, 7070);

  let checks = await consul.agent.check.list() as Record<string, { Status: string; Notes: string; Output: string }>;
  assert.equal(checks['service:payments-1'].Status, 'critical');
  assert.equal(checks['service:payments-1'].Notes, 'heartbeat');

  assert.deepEqual(await consul.health.service({ service: 'payments', passing: true }), []);
  await consul.agent.check.pass({ id: 'service:payments-1', note: 'alive' });
  checks = await consul.agent.check.list() as typeof checks;
  assert.equal(checks['service:payments-1'].Status, 'passing');
  assert.equal(checks['service:payments-1'].Output, 'alive');

  const catalogServices = await consul.catalog.service.list() as Record<string, string[]>;
  assert.deepEqual(catalogServices.payments, ['v2']);
  const nodes = await consul.catalog.service.nodes('payments') as { Node: string; ServiceAddress: string; ServicePort: number; ServiceMeta: Record<string, string> }[];
  assert.equal(nodes.length, 1);
  assert.equal(nodes[0].Node, 'compat-node');
  assert.equal(nodes[0].ServiceAddress, '127.0.0.9');
  assert.deepEqual(nodes[0].ServiceMeta, { team: 'fin' });

  const health = await consul.health.service({ service: 'payments', passing: true }) as { Service: { ID: string }; Checks: { CheckID: string; Status: string }[] }[];
  assert.equal(health.length, 1);
  assert.equal(health[0].Service.ID, 'payments-1');
  assert.ok(health[0].Checks.every((c) => c.Status === 'passing'));

  const nodeChecks = await consul.health.node('compat-node') as { CheckID: string }[];
  assert.ok(nodeChecks.some((c) => c.CheckID === 'serfHealth'));
  const members = await consul.agent.members() as { Name: string }[];
  assert.equal(members[0].Name, 'compat-node');
  const leader = await consul.status.leader();
  assert.equal(typeof leader, 'string');

  // A watch (blocking queries under the hood) sees the check go critical.
  const watch = consul.watch({ method: consul.health.service, options: { service: 'payments' } as never, backoffFactor: 100 });
  const sawCritical = new Promise<void>((resolve, reject) => {
    watch.on('change', (data: { Checks: { CheckID: string; Status: string }[] }[]) => {
      if (data[0]?.Checks.some((c) => c.CheckID === 'service:payments-1' && c.Status === 'critical')) resolve();
    });
    watch.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 200));
  await consul.agent.check.fail({ id: 'service:payments-1', note: 'down' });
  await sawCritical;
  watch.end();

  await consul.agent.service.deregister('payments-1');
  assert.deepEqual(await consul.catalog.service.nodes('payments'), []);
  assert.deepEqual(Object.keys(await consul.agent.check.list() as object), []);
});

test('the client surfaces the agent\'s 400 for a bad definition', async () => {
  await assert.rejects(
    consul.agent.service.register({ name: 'bad', check: { ttl: 'soon' } } as unknown as RegisterOptions),
    (e: Error & { statusCode?: number }) => e.statusCode === 400 && /invalid duration "soon"/.test(e.message),
  );
  const services = await consul.agent.service.list() as Record<string, unknown>;
  assert.equal(services.bad, undefined);
});
