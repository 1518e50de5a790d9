// Blocking queries: ?index waits for a change past that index, ?wait bounds it, and shutdown releases waiters.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseBlocking } from '../api/blocking-query.js';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
before(async () => { agent = await startTestAgent(); });
after(async () => { await agent.stop(); });

const index = (r: Response) => Number(r.headers.get('x-consul-index'));

test('a catalog read with ?index returns once a registration moves the index past it', async () => {
  const first = await agent.api('/v1/catalog/service/web');
  const idx = index(first);
  assert.ok(idx >= 1);
  let settled = false;
  const pending = agent.api(`/v1/catalog/service/web?index=${idx}&wait=30s`).then((r) => { settled = true; return r; });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(settled, false, 'must block while nothing changed');
  await agent.api('/v1/agent/service/register', put({ Name: 'web', Port: 80 }));
  const woke = await pending;
  assert.ok(index(woke) > idx);
  const rows = await woke.json() as { ServiceID: string }[];
  assert.deepEqual(rows.map((r) => r.ServiceID), ['web']);
});

test('a change to another service does not answer a per-service query', async () => {
  const idx = index(await agent.api('/v1/health/service/web'));
  let settled = false;
  const pending = agent.api(`/v1/health/service/web?index=${idx}&wait=1s`).then((r) => { settled = true; return r; });
  await agent.api('/v1/agent/service/register', put({ Name: 'other', Port: 1 }));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(settled, false);
  const r = await pending; // times out after ~1s with the same index
  assert.equal(index(r), idx);
  assert.equal(r.status, 200);
});

test('without a change the query answers at ?wait with the current index', async () => {
  const idx = index(await agent.api('/v1/catalog/nodes'));
  const r = await agent.api(`/v1/catalog/nodes?index=${idx}&wait=300ms`);
  assert.equal(r.status, 200);
  assert.equal(index(r), idx);
});

test('index 0 or no index answers at once', async () => {
  const r = await agent.api('/v1/catalog/services?index=0&wait=10m');
  assert.equal(r.status, 200);
});

test('deregistration wakes a waiting health query (deletions move the index too)', async () => {
  const idx = index(await agent.api('/v1/health/service/web'));
  const pending = agent.api(`/v1/health/service/web?index=${idx}&wait=30s`);
  await agent.api('/v1/agent/service/deregister/web', put());
  const r = await pending;
  assert.ok(index(r) > idx);
  assert.deepEqual(await r.json(), []);
});

test('agent service ?hash blocks until the definition changes', async () => {
  await agent.api('/v1/agent/service/register', put({ Name: 'hashy', Port: 1 }));
  const first = await (await agent.api('/v1/agent/service/hashy')).json() as { ContentHash: string };
  const pending = agent.api(`/v1/agent/service/hashy?hash=${first.ContentHash}&wait=30s`);
  await agent.api('/v1/agent/service/register', put({ Name: 'hashy', Port: 2 }));
  const next = await (await pending).json() as { ContentHash: string; Port: number };
  assert.notEqual(next.ContentHash, first.ContentHash);
  assert.equal(next.Port, 2);
});

test('wait is capped at 10m and parsed like Consul', () => {
  assert.deepEqual(parseBlocking(new URLSearchParams('index=5&wait=1h')), { minIndex: 5, waitMs: 600_000 });
  assert.deepEqual(parseBlocking(new URLSearchParams('index=5')), { minIndex: 5, waitMs: 300_000 });
  assert.deepEqual(parseBlocking(new URLSearchParams('wait=2s')), { minIndex: 0, waitMs: 2000 });
});

test('stopping the agent releases parked blocking queries', async () => {
  const other = await startTestAgent({ node: 'node-2' });
  const idx = index(await other.api('/v1/catalog/services'));
  const pending = other.api(`/v1/catalog/services?index=${idx}&wait=5m`);
  await new Promise((r) => setTimeout(r, 100));
  await other.stop();
  const r = await pending;
  assert.equal(r.status, 200);
});
