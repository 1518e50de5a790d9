// Prometheus metrics: process metrics, API requests by route and code, catalog sizes and check states.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
before(async () => { agent = await startTestAgent(); });
after(async () => { await agent.stop(); });

test('GET /metrics and /v1/agent/metrics?format=prometheus expose the agent\'s metrics', async () => {
  await agent.api('/v1/agent/service/register', put({ Name: 'web', Check: { TTL: '1m', Status: 'passing' } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'bad', Port: 'x' }));
  for (const path of ['/metrics', '/v1/agent/metrics?format=prometheus']) {
    const r = await agent.api(path);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
    const text = await r.text();
    assert.match(text, /^process_cpu_seconds_total \d/m);
    assert.match(text, /^nodemesh_http_requests_total\{route="\/v1\/agent\/service\/register",method="PUT",code="200"\} 1$/m);
    assert.match(text, /^nodemesh_http_requests_total\{route="\/v1\/agent\/service\/register",method="PUT",code="400"\} 1$/m);
    assert.match(text, /^nodemesh_http_request_duration_seconds_bucket\{le="0.005",route="\/v1\/agent\/service\/register",method="PUT",code="200"\} \d+$/m);
    assert.match(text, /^nodemesh_catalog_entries\{kind="services"\} 1$/m);
    assert.match(text, /^nodemesh_catalog_entries\{kind="nodes"\} 1$/m);
    assert.match(text, /^nodemesh_checks\{status="passing"\} 2$/m);
  }
  const j = await agent.api('/v1/agent/metrics');
  assert.equal(j.status, 200);
  const body = await j.json() as { Metrics: { name: string }[] };
  assert.ok(body.Metrics.some((m) => m.name === 'nodemesh_catalog_entries'));
});
