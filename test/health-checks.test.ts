// Health checks end to end: HTTP/TCP/TTL probes against real listeners, thresholds, truncation, the reaper, blocking wake-ups and aggregated health.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

interface CheckJson {
  Node: string; CheckID: string; Name: string; Status: string; Notes: string; Output: string;
  ServiceID: string; ServiceName: string; Type: string; Definition: Record<string, unknown>;
}
interface HealthEntry { Node: { Node: string }; Service: { ID: string; Service: string }; Checks: CheckJson[] }

/** Retries `fn` every 50 ms until it returns without throwing; on timeout fails with its last error. */
// ---- fixtures: every listener is a real socket on 127.0.0.1, closed in after() ----

const cleanups: (() => Promise<void>)[] = [];

interface Backend { server: Server; port: number; url: string }

async function startBackend(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}` };
}

/** A port nothing listens on: bound once to get a free number, then closed. */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function startAgent(overrides: Parameters<typeof startTestAgent>[0] = {}): Promise<TestAgent> {
  const a = await startTestAgent(overrides);
  cleanups.push(() => a.stop());
  return a;
}

// ---- API helpers ----

async function ok(res: Response, what: string): Promise<string> {
  const text = await res.text();
  assert.equal(res.status, 200, `${what}: HTTP ${res.status}: ${text}`);
  return text;
}

async function registerService(a: TestAgent, body: unknown): Promise<void> {
  await ok(await a.api('/v1/agent/service/register', put(body)), 'register service');
}

async function deregisterService(a: TestAgent, id: string): Promise<void> {
  await ok(await a.api(`/v1/agent/service/deregister/${encodeURIComponent(id)}`, put()), 'deregister service');
}

async function agentChecks(a: TestAgent): Promise<Record<string, CheckJson>> {
  const res = await a.api('/v1/agent/checks');
  assert.equal(res.status, 200);
  return await res.json() as Record<string, CheckJson>;
}

async function agentCheck(a: TestAgent, id: string): Promise<CheckJson> {
  const all = await agentChecks(a);
  const c = all[id];
  assert.ok(c, `check ${id} not in /v1/agent/checks (have: ${Object.keys(all).join(', ')})`);
  return c;
}

async function healthService(a: TestAgent, name: string, query = ''): Promise<{ index: number; entries: HealthEntry[] }> {
  const res = await a.api(`/v1/health/service/${encodeURIComponent(name)}${query}`);
  assert.equal(res.status, 200);
  const index = Number(res.headers.get('X-Consul-Index'));
  assert.ok(index > 0, 'X-Consul-Index is set');
  return { index, entries: await res.json() as HealthEntry[] };
}

/** The check `id` as /v1/health/service/:name reports it. */
async function healthCheck(a: TestAgent, name: string, id: string): Promise<CheckJson> {
  const { entries } = await healthService(a, name);
  assert.equal(entries.length, 1, `one instance of ${name}`);
  const c = entries[0].Checks.find((x) => x.CheckID === id);
  assert.ok(c, `check ${id} in /v1/health/service/${name}`);
  return c;
}

/** Waits until check `id` has `status` in both the agent view and the health endpoint. */
async function waitForStatus(a: TestAgent, service: string, id: string, status: string): Promise<CheckJson> {
  return waitFor(async () => {
    const c = await agentCheck(a, id);
    assert.equal(c.Status, status, `check ${id} status (output: ${JSON.stringify(c.Output.slice(0, 200))})`);
    assert.equal((await healthCheck(a, service, id)).Status, status, `/v1/health/service/${service} status of ${id}`);
    return c;
  });
}

let agent: TestAgent;

before(async () => {
  agent = await startAgent();
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// ---- 1. HTTP checks ----

test('HTTP check follows the backend: 2xx passing, 429 warning, 500 critical, with Consul\'s output and User-Agent', async () => {
  let code = 200;
  const userAgents = new Set<string>();
  const backend = await startBackend((req, res) => {
    userAgents.add(req.headers['user-agent'] ?? '');
    res.writeHead(code, { 'Content-Type': 'text/plain' }).end(`backend says ${code}`);
  });
  const url = `${backend.url}/health`;
  await registerService(agent, { Name: 'web', Port: 8080, Check: { HTTP: url, Interval: '1s' } });
  try {
    const passing = await waitForStatus(agent, 'web', 'service:web', 'passing');
    assert.equal(passing.Type, 'http');
    assert.equal(passing.ServiceID, 'web');
    assert.equal(passing.Output, `HTTP GET ${url}: 200 OK Output: backend says 200`);
    assert.deepEqual([...userAgents], ['Consul Health Check']);

    code = 429;
    const warning = await waitForStatus(agent, 'web', 'service:web', 'warning');
    assert.equal(warning.Output, `HTTP GET ${url}: 429 Too Many Requests Output: backend says 429`);

    code = 500;
    const critical = await waitForStatus(agent, 'web', 'service:web', 'critical');
    assert.equal(critical.Output, `HTTP GET ${url}: 500 Internal Server Error Output: backend says 500`);

    code = 204;
    await waitForStatus(agent, 'web', 'service:web', 'passing');
    assert.deepEqual([...userAgents], ['Consul Health Check']);
  } finally {
    await deregisterService(agent, 'web');
  }
});

// ---- 2. TCP checks ----

test('TCP check: a listening port is passing, a closed port is critical', async () => {
  const listener = createTcpServer((sock) => sock.destroy());
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const open = (listener.address() as AddressInfo).port;
  const closed = await closedPort();
  await registerService(agent, { Name: 'tcp-up', Port: open, Check: { TCP: `127.0.0.1:${open}`, Interval: '1s' } });
  await registerService(agent, { Name: 'tcp-down', Port: closed, Check: { TCP: `127.0.0.1:${closed}`, Interval: '1s' } });
  try {
    const up = await waitForStatus(agent, 'tcp-up', 'service:tcp-up', 'passing');
    assert.equal(up.Type, 'tcp');
    assert.equal(up.Output, `TCP connect 127.0.0.1:${open}: Success`);

    // Critical from the start (no Status given); wait for a probe to have written its output.
    const down = await waitFor(async () => {
      const c = await agentCheck(agent, 'service:tcp-down');
      assert.notEqual(c.Output, '', 'a probe of the closed port has run');
      return c;
    });
    assert.equal(down.Status, 'critical');
    assert.match(down.Output, new RegExp(`^dial tcp 127\\.0\\.0\\.1:${closed}: `));
    assert.equal((await healthCheck(agent, 'tcp-down', 'service:tcp-down')).Status, 'critical');
  } finally {
    await deregisterService(agent, 'tcp-up');
    await deregisterService(agent, 'tcp-down');
  }
});

// ---- 3. TTL checks ----

test('TTL check: starts critical, pass/warn/fail/update set it, silence past the TTL makes it critical', async () => {
  let res = await agent.api('/v1/agent/check/register', put({ Name: 'ttl-bad', TTL: '1s', Interval: '1s' }));
  assert.equal(res.status, 400);
  assert.equal(await res.text(), 'Invalid check: Interval and TTL cannot both be specified');

  await ok(await agent.api('/v1/agent/check/register', put({ ID: 'ttl-1', Name: 'ttl one', TTL: '1s' })), 'register TTL check');
  try {
    const initial = await agentCheck(agent, 'ttl-1');
    assert.equal(initial.Type, 'ttl');
    assert.equal(initial.Definition.TTL, '1s');
    assert.equal(initial.Status, 'critical');

    await ok(await agent.api('/v1/agent/check/pass/ttl-1?note=ok', put()), 'pass');
    let c = await agentCheck(agent, 'ttl-1');
    assert.equal(c.Status, 'passing');
    assert.equal(c.Output, 'ok');

    // No further update: once the 1s TTL runs out the check goes critical, keeping the last output.
    c = await waitFor(async () => {
      const x = await agentCheck(agent, 'ttl-1');
      assert.equal(x.Status, 'critical', 'TTL has expired');
      return x;
    });
    assert.match(c.Output, /^TTL expired/);
    assert.equal(c.Output, 'TTL expired (last output before timeout follows): ok');

    await ok(await agent.api('/v1/agent/check/update/ttl-1', put({ Status: 'warning', Output: 'x' })), 'update');
    c = await agentCheck(agent, 'ttl-1');
    assert.equal(c.Status, 'warning');
    assert.equal(c.Output, 'x');

    await ok(await agent.api('/v1/agent/check/warn/ttl-1?note=slow', put()), 'warn');
    c = await agentCheck(agent, 'ttl-1');
    assert.deepEqual([c.Status, c.Output], ['warning', 'slow']);
    await ok(await agent.api('/v1/agent/check/fail/ttl-1?note=down', put()), 'fail');
    c = await agentCheck(agent, 'ttl-1');
    assert.deepEqual([c.Status, c.Output], ['critical', 'down']);

    res = await agent.api('/v1/agent/check/update/ttl-1', put({ Status: 'bogus' }));
    assert.equal(res.status, 400);
    assert.equal(await res.text(), "Invalid check status: 'bogus'");
  } finally {
    await ok(await agent.api('/v1/agent/check/deregister/ttl-1', put()), 'deregister check');
  }
});

test('TTL endpoints refuse unknown checks and checks that are not TTL checks with 500', async () => {
  const backend = await startBackend((_req, res) => res.end('fine'));
  await ok(await agent.api('/v1/agent/check/register', put({ ID: 'http-not-ttl', Name: 'http', HTTP: backend.url, Interval: '10s' })), 'register');
  try {
    for (const [path, init, id] of [
      ['/v1/agent/check/pass/x', put(), 'x'],
      ['/v1/agent/check/fail/x?note=n', put(), 'x'],
      ['/v1/agent/check/update/x', put({ Status: 'passing', Output: 'y' }), 'x'],
      ['/v1/agent/check/pass/http-not-ttl', put(), 'http-not-ttl'],
      ['/v1/agent/check/update/http-not-ttl', put({ Status: 'warning' }), 'http-not-ttl'],
    ] as const) {
      const res = await agent.api(path, init);
      assert.equal(res.status, 500, path);
      assert.equal(await res.text(), `CheckID "${id}" does not have associated TTL`, path);
    }
    assert.equal((await agentCheck(agent, 'http-not-ttl')).Type, 'http');
  } finally {
    await ok(await agent.api('/v1/agent/check/deregister/http-not-ttl', put()), 'deregister check');
  }
});

// ---- 4. initial status ----

test('a Status given at registration is the initial status; without one a check starts critical', async () => {
  // A backend that never answers until the test ends, so no probe result can replace the initial status.
  const pending: ServerResponse[] = [];
  const silent = await startBackend((_req, res) => { pending.push(res); });
  await registerService(agent, {
    Name: 'init', Port: 1,
    Checks: [
      { TTL: '60s', Status: 'passing' },
      { TTL: '60s' },
      { HTTP: `${silent.url}/h`, Interval: '1s', Status: 'warning' },
      { HTTP: `${silent.url}/h`, Interval: '1s' },
    ],
  });
  await ok(await agent.api('/v1/agent/check/register', put({ ID: 'init-node', Name: 'node-level', TTL: '60s', Status: 'passing' })), 'register');
  try {
    const all = await agentChecks(agent);
    assert.deepEqual(
      ['service:init:1', 'service:init:2', 'service:init:3', 'service:init:4', 'init-node'].map((id) => [id, all[id]?.Status, all[id]?.Output]),
      [
        ['service:init:1', 'passing', ''],
        ['service:init:2', 'critical', ''],
        ['service:init:3', 'warning', ''],
        ['service:init:4', 'critical', ''],
        ['init-node', 'passing', ''],
      ],
    );
    const { entries } = await healthService(agent, 'init');
    const byId = Object.fromEntries(entries[0].Checks.map((c) => [c.CheckID, c.Status]));
    assert.equal(byId['service:init:1'], 'passing');
    assert.equal(byId['service:init:3'], 'warning');
    assert.equal(byId['service:init:4'], 'critical');
  } finally {
    await deregisterService(agent, 'init');
    await ok(await agent.api('/v1/agent/check/deregister/init-node', put()), 'deregister check');
    for (const res of pending) res.destroy();
  }
});

// ---- 5. thresholds ----

test('SuccessBeforePassing / FailuresBeforeCritical: after the first result, a flip needs two consecutive results', async () => {
  // The backend answers `code`, except request number `holdAt`, which it keeps open until released.
  // The runner only sends its next request after applying the previous result, so while a request
  // is held, every earlier result has already been applied: no timing is assumed.
  let code = 200;
  let hits = 0;
  let holdAt = 0;
  let held: ServerResponse | undefined;
  const backend = await startBackend((_req, res) => {
    hits++;
    if (hits === holdAt) held = res;
    else res.writeHead(code).end(`answer ${code}`);
  });
  const release = (status: number) => {
    const r = held!;
    held = undefined;
    r.writeHead(status).end(`answer ${status}`);
  };
  const url = `${backend.url}/ready`;
  await registerService(agent, {
    Name: 'thresh', Port: 1,
    Check: { HTTP: url, Interval: '1s', SuccessBeforePassing: 2, FailuresBeforeCritical: 2 },
  });
  try {
    const def = (await agentCheck(agent, 'service:thresh')).Definition;
    assert.equal(def.SuccessBeforePassing, 2);
    assert.equal(def.FailuresBeforeCritical, 2);

    // Like Consul's StatusHandler, the counters start at their thresholds: the first result applies at once.
    let c = await waitForStatus(agent, 'thresh', 'service:thresh', 'passing');
    assert.equal(c.Output, `HTTP GET ${url}: 200 OK Output: answer 200`);

    // Now failing: the next request gets a 500, the one after is held.
    code = 500;
    holdAt = hits + 2;
    await waitFor(() => assert.ok(held, 'second failing probe has arrived'));
    c = await agentCheck(agent, 'service:thresh');
    assert.equal(c.Status, 'passing', 'one failure is not enough');
    release(500);
    c = await waitForStatus(agent, 'thresh', 'service:thresh', 'critical');
    assert.equal(c.Output, `HTTP GET ${url}: 500 Internal Server Error Output: answer 500`);

    // Recovering: one success is not enough either.
    code = 200;
    holdAt = hits + 2;
    await waitFor(() => assert.ok(held, 'second passing probe has arrived'));
    c = await agentCheck(agent, 'service:thresh');
    assert.equal(c.Status, 'critical', 'one success is not enough');
    release(200);
    c = await waitForStatus(agent, 'thresh', 'service:thresh', 'passing');
  } finally {
    await deregisterService(agent, 'thresh');
    held?.destroy();
  }
});

// ---- 6. output size ----

test('HTTP check output is truncated to 4096 bytes', async () => {
  const body = 'abcdefghij'.repeat(1024); // 10 KiB
  const backend = await startBackend((_req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end(body));
  const url = `${backend.url}/big`;
  await registerService(agent, { Name: 'big', Port: 1, Check: { HTTP: url, Interval: '1s' } });
  try {
    const c = await waitForStatus(agent, 'big', 'service:big', 'passing');
    const prefix = `HTTP GET ${url}: 200 OK Output: `;
    assert.ok(Buffer.byteLength(c.Output) <= 4096, `Output is ${Buffer.byteLength(c.Output)} bytes`);
    assert.ok(Buffer.byteLength(c.Output) > 4000, 'Output is cut at the limit, not dropped');
    assert.ok(c.Output.startsWith(`${prefix}abcdefghij`), c.Output.slice(0, 120));
    assert.equal(c.Output, (prefix + body).slice(0, 4096));
  } finally {
    await deregisterService(agent, 'big');
  }
});

test('output cut inside a multi-byte character stays within 4096 bytes, on a character boundary', async () => {
  let body = '';
  const backend = await startBackend((_req, res) => res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end(body));
  const url = `${backend.url}/euro`;
  const prefix = `HTTP GET ${url}: 200 OK Output: `;
  // Pad with ASCII so that the 4096-byte cut falls one byte into a 3-byte '€'.
  const pad = ((4096 - Buffer.byteLength(prefix) - 1) % 3 + 3) % 3;
  body = 'x'.repeat(pad) + '€'.repeat(3414); // ~10 KiB
  await registerService(agent, { Name: 'euro', Port: 1, Checks: [{ HTTP: url, Interval: '1s' }, { TTL: '60s' }] });
  try {
    const c = await waitForStatus(agent, 'euro', 'service:euro:1', 'passing');
    const size = Buffer.byteLength(c.Output);
    assert.ok(size <= 4096 && size >= 4093, `HTTP Output is ${size} bytes`);
    assert.ok(!c.Output.includes('\uFFFD'), 'no replacement character from a split sequence');
    assert.equal(c.Output, (prefix + body).slice(0, c.Output.length));

    // A TTL update's Output is cut the same way.
    const output = '€'.repeat(2000); // 6000 bytes; byte 4096 is inside a character
    await ok(await agent.api('/v1/agent/check/update/service:euro:2', put({ Status: 'passing', Output: output })), 'update');
    const t = await agentCheck(agent, 'service:euro:2');
    assert.equal(t.Output, '€'.repeat(1365), `TTL Output is ${Buffer.byteLength(t.Output)} bytes`);
  } finally {
    await deregisterService(agent, 'euro');
  }
});

// ---- 7. the critical-service reaper ----

test('DeregisterCriticalServiceAfter: a service whose check stays critical is deregistered', async () => {
  const a = await startAgent({ checkReapIntervalMs: 200, checkDeregisterIntervalMinMs: 500 });
  const port = await closedPort();
  await registerService(a, {
    Name: 'doomed', Port: port,
    Check: { TCP: `127.0.0.1:${port}`, Interval: '1s', DeregisterCriticalServiceAfter: '1s' },
  });
  // Same failing check without the option: must survive.
  await registerService(a, { Name: 'kept', Port: port, Check: { TCP: `127.0.0.1:${port}`, Interval: '1s' } });
  const services = async () => Object.keys(await (await a.api('/v1/agent/services')).json() as Record<string, unknown>).sort();
  assert.deepEqual(await services(), ['doomed', 'kept']);
  assert.equal((await agentCheck(a, 'service:doomed')).Definition.DeregisterCriticalServiceAfter, '1s');

  await waitFor(async () => assert.deepEqual(await services(), ['kept'], 'doomed has been reaped'));
  const checks = await agentChecks(a);
  assert.equal(checks['service:doomed'], undefined, 'its check went with it');
  assert.equal(checks['service:kept']?.Status, 'critical');
  assert.deepEqual((await healthService(a, 'doomed')).entries, []);
});

// ---- 8. blocking queries ----

test('a TTL status change wakes a blocking /v1/health/service query', async () => {
  await registerService(agent, { Name: 'blocky', Port: 1, Check: { TTL: '60s' } });
  try {
    const first = await healthService(agent, 'blocky');
    assert.equal(first.entries[0].Checks.find((c) => c.CheckID === 'service:blocky')?.Status, 'critical');

    let settled = false;
    const blocking = agent.api(`/v1/health/service/blocky?index=${first.index}&wait=30s`, { signal: AbortSignal.timeout(15_000) })
      .finally(() => { settled = true; });
    await sleep(300);
    assert.equal(settled, false, 'the query blocks while nothing changes');

    await ok(await agent.api('/v1/agent/check/pass/service:blocky?note=up', put()), 'pass');
    const res = await blocking; // rejects (AbortSignal) if the change did not wake it well before wait=30s
    assert.equal(res.status, 200);
    const index = Number(res.headers.get('X-Consul-Index'));
    assert.ok(index > first.index, `index ${index} > ${first.index}`);
    const entries = await res.json() as HealthEntry[];
    const c = entries[0].Checks.find((x) => x.CheckID === 'service:blocky');
    assert.equal(c?.Status, 'passing');
    assert.equal(c?.Output, 'up');

    // With the new index the query blocks again (bounded here by a short wait).
    const again = await agent.api(`/v1/health/service/blocky?index=${index}&wait=200ms`);
    assert.equal(Number(again.headers.get('X-Consul-Index')), index);
    await again.arrayBuffer();
  } finally {
    await deregisterService(agent, 'blocky');
  }
});

// ---- 9. aggregated health ----

test('/v1/agent/health/service/id/:id: 200/429/503 for passing/warning/critical, JSON or ?format=text', async () => {
  await registerService(agent, { Name: 'agg', Port: 1, Checks: [{ TTL: '60s' }, { TTL: '60s' }] });
  const set = async (id: string, Status: string) =>
    ok(await agent.api(`/v1/agent/check/update/${id}`, put({ Status, Output: Status })), `update ${id}`);
  const expect = async (code: number, status: string) => {
    const res = await agent.api('/v1/agent/health/service/id/agg');
    assert.equal(res.status, code, `JSON answer for ${status}`);
    const body = await res.json() as { AggregatedStatus: string; Service: { ID: string }; Checks: CheckJson[] };
    assert.equal(body.AggregatedStatus, status);
    assert.equal(body.Service.ID, 'agg');
    assert.deepEqual(body.Checks.map((c) => c.CheckID).sort(), ['service:agg:1', 'service:agg:2']);
    const text = await agent.api('/v1/agent/health/service/id/agg?format=text');
    assert.equal(text.status, code, `text answer for ${status}`);
    assert.match(text.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await text.text(), status);
  };
  try {
    await expect(503, 'critical'); // both checks start critical
    await set('service:agg:1', 'passing');
    await expect(503, 'critical');
    await set('service:agg:2', 'passing');
    await expect(200, 'passing');
    await set('service:agg:2', 'warning');
    await expect(429, 'warning');
    await set('service:agg:1', 'critical');
    await expect(503, 'critical');

    const missing = await agent.api('/v1/agent/health/service/id/nope?format=text');
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), 'ServiceId nope not found');
  } finally {
    await deregisterService(agent, 'agg');
  }
});
