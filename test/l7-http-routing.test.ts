// L7 for HTTP/1.1 upstreams through two agents: weighted splits, header routes, prefix rewrite, retries on 503, request timeouts, metrics.
//
// Agents: A (the caller's node) 127.0.73.1, B (the instances' node) 127.0.73.2. Instances of `shop` on 127.0.73.11–.13
// (v1, v1, v2) and of `flaky` on 127.0.73.21–.23 (the third answers 503). The caller `web` is 127.0.73.31.

import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { put, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { sampleSum } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait-for.js';

const A = '127.0.73.1';
const B = '127.0.73.2';
let a: TestAgent;
let b: TestAgent;
const servers: Server[] = [];
const port = { shop: 0, flaky: 0, chat: 0 };
let wss: WebSocketServer | undefined;
let caConfig: Awaited<ReturnType<typeof sharedCa>>;
const seen = new Map<string, number>();

/** An HTTP instance that names itself in `x-instance` and echoes the path it got. */
async function instance(host: string, name: string, behave: (path: string) => { status: number; delayMs?: number } = () => ({ status: 200 })): Promise<number> {
  const s = createServer((req, res) => {
    seen.set(name, (seen.get(name) ?? 0) + 1);
    const { status, delayMs } = behave(req.url ?? '/');
    const reply = () => res.writeHead(status, { 'x-instance': name, 'x-got-traceparent': String(req.headers.traceparent ?? ''), 'content-type': 'text/plain' }).end(`${name} ${req.method} ${req.url}`);
    if (delayMs) setTimeout(reply, delayMs);
    else reply();
  });
  s.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => s.listen(0, host, r));
  servers.push(s);
  return (s.address() as { port: number }).port;
}

const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 32 });
function get(p: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; instance: string; body: string; traceparent: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: p, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, instance: String(res.headers['x-instance'] ?? ''), body, traceparent: String(res.headers['x-got-traceparent'] ?? '') }));
    });
    r.on('error', reject);
    r.end();
  });
}

async function many(n: number, p: number, path: string, headers: Record<string, string> = {}) {
  const out: Awaited<ReturnType<typeof get>>[] = [];
  for (let i = 0; i < n; i += 32) out.push(...await Promise.all(Array.from({ length: Math.min(32, n - i) }, () => get(p, path, headers))));
  return out;
}

const config = (agentX: TestAgent, entry: unknown) => agentX.api('/v1/config', put(entry)).then(async (r) => assert.equal(r.status, 200, await r.text()));

before(async () => {
  const ca = await sharedCa();
  b = await startTestAgent({ node: 'l7-b', bind: B, nodeMeta: { zone: 'z1' }, ...ca });
  a = await startTestAgent({ node: 'l7-a', bind: A, nodeMeta: { zone: 'z1' }, join: [`${B}:${b.gossip.port}`], ...ca });
  caConfig = ca;
  const shop = [['127.0.73.11', 'shop-v1-a', 'v1'], ['127.0.73.12', 'shop-v1-b', 'v1'], ['127.0.73.13', 'shop-v2', 'v2']];
  for (const [host, name, version] of shop) {
    const p = await instance(host, name, (path) => (path.startsWith('/slow') ? { status: 200, delayMs: path.includes('short') ? 300 : 2000 } : { status: 200 }));
    await b.api('/v1/agent/service/register', put({ Name: 'shop', ID: name, Address: host, Port: p, Meta: { version }, Connect: { SidecarService: {} } }));
  }
  // A shadow service for mirroring, which always fails: the caller must never notice.
  const shadowPort = await instance('127.0.73.41', 'shadow', () => ({ status: 500 }));
  await b.api('/v1/agent/service/register', put({ Name: 'shadow', Address: '127.0.73.41', Port: shadowPort, Connect: { SidecarService: {} } }));
  const flaky = [['127.0.73.21', 'flaky-a', 200], ['127.0.73.22', 'flaky-b', 200], ['127.0.73.23', 'flaky-bad', 503]] as const;
  for (const [host, name, status] of flaky) {
    const p = await instance(host, name, () => ({ status }));
    await b.api('/v1/agent/service/register', put({ Name: 'flaky', ID: name, Address: host, Port: p, Connect: { SidecarService: {} } }));
  }
  // A WebSocket echo service (protocol http: its upgrades pass through the HTTP upstream listener).
  const chatServer = createServer((_q, r) => r.writeHead(426).end());
  wss = new WebSocketServer({ server: chatServer });
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  await new Promise<void>((r) => chatServer.listen(0, '127.0.73.51', r));
  servers.push(chatServer);
  await b.api('/v1/agent/service/register', put({ Name: 'chat', Address: '127.0.73.51', Port: (chatServer.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  await config(a, { Kind: 'service-defaults', Name: 'chat', Protocol: 'http' });
  // Protocol first (a router needs it), then the caller with its upstreams: its listeners open as HTTP.
  await config(a, { Kind: 'service-defaults', Name: 'shop', Protocol: 'http' });
  await config(a, { Kind: 'service-defaults', Name: 'flaky', Protocol: 'http' });
  port.shop = await freePort('127.0.0.1');
  port.flaky = await freePort('127.0.0.1');
  port.chat = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.73.31', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [
    { DestinationName: 'shop', LocalBindPort: port.shop }, { DestinationName: 'flaky', LocalBindPort: port.flaky },
    { DestinationName: 'chat', LocalBindPort: port.chat },
  ] } } } }));
  await waitFor(async () => {
    const r = await get(port.shop, '/');
    assert.equal(r.status, 200);
    assert.equal((await many(30, port.shop, '/')).filter((x) => x.status === 200).length, 30, 'all three shop instances known');
    // The mirror drops copies while it knows no healthy shadow instance: wait until the caller's agent does.
    const shadow = await (await a.api('/v1/health/connect/shadow?passing')).json() as unknown[];
    assert.equal(shadow.length, 1, 'the shadow\'s proxy is known and passing on the caller\'s agent');
  }, 20_000);
});

after(async () => {
  agent.destroy();
  wss?.close();
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  for (const s of servers) s.close();
});

test('a 90/10 split over 2 000 requests lands within ±3 % of 10 %; a header route sends only marked requests to the canary', async () => {
  await config(a, { Kind: 'service-resolver', Name: 'shop', DefaultSubset: 'v1', Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } } });
  await config(a, { Kind: 'service-splitter', Name: 'shop', Splits: [{ Weight: 90, ServiceSubset: 'v1' }, { Weight: 10, ServiceSubset: 'v2' }] });
  await config(a, { Kind: 'service-router', Name: 'shop', Routes: [{ Match: { HTTP: { Header: [{ Name: 'x-canary', Exact: 'yes' }] } }, Destination: { ServiceSubset: 'v2' } }] });
  const all = await many(2000, port.shop, '/items');
  assert.equal(all.filter((r) => r.status !== 200).length, 0);
  const canary = all.filter((r) => r.instance === 'shop-v2').length / all.length;
  console.log(`# canary share over 2000 requests: ${(canary * 100).toFixed(1)} %`);
  assert.ok(canary >= 0.07 && canary <= 0.13, `canary share ${canary}`);
  assert.ok(all.some((r) => r.instance === 'shop-v1-a') && all.some((r) => r.instance === 'shop-v1-b'), 'v1 load is spread over both v1 instances');
  const marked = await many(100, port.shop, '/items', { 'x-canary': 'yes' });
  assert.deepEqual([...new Set(marked.map((r) => r.instance))], ['shop-v2']);
  const unmarked = await many(100, port.shop, '/items', { 'x-canary': 'no' });
  assert.ok(unmarked.filter((r) => r.instance === 'shop-v2').length < 30);
});

test('a path route with PrefixRewrite, and a request timeout that answers 504 on time', async () => {
  await config(a, { Kind: 'service-router', Name: 'shop', Routes: [
    { Match: { HTTP: { PathPrefix: '/api/' } }, Destination: { ServiceSubset: 'v2', PrefixRewrite: '/' } },
    { Match: { HTTP: { PathPrefix: '/slow' } }, Destination: { RequestTimeout: '300ms' } },
  ] });
  const r = await get(port.shop, '/api/items?x=1');
  assert.equal(r.instance, 'shop-v2');
  assert.equal(r.body, 'shop-v2 GET /items?x=1');
  const t0 = Date.now();
  const slow = await get(port.shop, '/slow');
  assert.equal(slow.status, 504);
  assert.match(slow.body, /upstream request timeout/);
  console.log(`# 504 after ${Date.now() - t0} ms (RequestTimeout 300ms, instance answers after 2000 ms)`);
});

test('with one of three instances answering 503, retries make every request succeed and outlier detection stops sending to it', async () => {
  await config(a, { Kind: 'service-router', Name: 'flaky', Routes: [{ Match: { HTTP: { PathPrefix: '/' } }, Destination: { NumRetries: 2, RetryOnStatusCodes: [503] } }] });
  const all = await many(300, port.flaky, '/');
  assert.deepEqual([...new Set(all.map((r) => r.status))], [200]);
  const hitsOnBad = seen.get('flaky-bad') ?? 0;
  assert.ok(hitsOnBad >= 1, 'the bad instance was tried');
  await many(200, port.flaky, '/');
  assert.equal(seen.get('flaky-bad') ?? 0, hitsOnBad, 'ejected: no more requests reach it');
  const metrics = await (await a.api('/metrics')).text();
  assert.equal(sampleSum(metrics, 'nodemesh_l7_requests_total', { direction: 'outbound', source: 'web', destination: 'flaky', route: 'route-0', code_class: '2xx' }), 500);
  assert.match(metrics, /nodemesh_l7_retries_total\{source="web",destination="flaky",route="route-0",reason="status"\} [1-9]/);
  assert.ok(sampleSum(metrics, 'nodemesh_l7_request_duration_seconds_count', { direction: 'outbound', source: 'web', destination: 'shop', route: 'default' }) > 0, 'latency in seconds');
  console.log(`# the 503 instance got ${hitsOnBad} of 500 requests before it was ejected`);
});

test('no instance of a subset: 503 that says so; the plain service (no entries) still routes', async () => {
  await config(a, { Kind: 'service-router', Name: 'shop', Routes: [{ Match: { HTTP: { PathPrefix: '/v3' } }, Destination: { ServiceSubset: 'v3' } }] });
  await config(a, { Kind: 'service-resolver', Name: 'shop', DefaultSubset: 'v1', Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' }, v3: { Filter: 'Service.Meta.version == v3' } } });
  const r = await get(port.shop, '/v3/x');
  assert.equal(r.status, 503);
  assert.match(r.body, /no healthy upstream for shop\/v3/);
  for (const kind of ['service-router', 'service-splitter', 'service-resolver']) await a.api(`/v1/config/${kind}/shop`, { method: 'DELETE' });
  const plain = await many(30, port.shop, '/');
  assert.equal(new Set(plain.map((x) => x.instance)).size, 3, 'round robin over all three again');
});

test('fault injection (nodemesh extension) aborts and delays the configured share; a mirror gets copies the caller never sees', async () => {
  await config(a, { Kind: 'service-router', Name: 'shop', Routes: [
    { Match: { HTTP: { PathPrefix: '/abort' } }, Destination: { Nodemesh: { Fault: { AbortPercent: 50, AbortStatus: 418 } } } },
    { Match: { HTTP: { PathPrefix: '/delay' } }, Destination: { Nodemesh: { Fault: { DelayPercent: 100, Delay: '200ms' } } } },
    { Match: { HTTP: { PathPrefix: '/mirror' } }, Destination: { Nodemesh: { Mirror: { Service: 'shadow', Percent: 100 } } } },
  ] });
  const aborted = (await many(400, port.shop, '/abort')).filter((r) => r.status === 418).length;
  console.log(`# aborted ${aborted} of 400 (AbortPercent 50)`);
  assert.ok(aborted >= 160 && aborted <= 240, `aborted ${aborted}`);
  const t0 = Date.now();
  const delayed = await get(port.shop, '/delay');
  assert.equal(delayed.status, 200);
  assert.ok(Date.now() - t0 >= 200, 'held for the configured delay');
  const shadowBefore = seen.get('shadow') ?? 0;
  const mirrored = await many(20, port.shop, '/mirror');
  assert.deepEqual([...new Set(mirrored.map((r) => r.status))], [200], 'the mirror\'s 500s never reach the caller');
  assert.ok(mirrored.every((r) => r.instance.startsWith('shop-')));
  await waitFor(() => assert.equal((seen.get('shadow') ?? 0) - shadowBefore, 20), 5000);
  await a.api('/v1/config/service-router/shop', { method: 'DELETE' });
});

test('the local rate limit answers 429 beyond its budget; the circuit breaker sheds load with 503 at the concurrency limit', async () => {
  await config(a, { Kind: 'service-resolver', Name: 'shop', Nodemesh: { RateLimit: { RequestsPerSecond: 5, Burst: 5 } } });
  const burst = await Promise.all(Array.from({ length: 30 }, () => get(port.shop, '/')));
  const limited = burst.filter((r) => r.status === 429).length;
  assert.ok(limited >= 20 && burst.filter((r) => r.status === 200).length >= 5, `429s: ${limited}`);
  assert.match(burst.find((r) => r.status === 429)!.body, /local rate limit exceeded/);
  await config(a, { Kind: 'service-resolver', Name: 'shop', Nodemesh: { Limits: { MaxConcurrentRequests: 2 } } });
  const slow = await Promise.all(Array.from({ length: 12 }, () => get(port.shop, '/slow')));
  assert.equal(slow.filter((r) => r.status === 200).length, 2);
  assert.equal(slow.filter((r) => r.status === 503).length, 10);
  assert.match(slow.find((r) => r.status === 503)!.body, /upstream overflow/);
  // One connection per instance and one request waiting for it: of three requests per instance, the third is shed.
  await config(a, { Kind: 'service-resolver', Name: 'shop', Nodemesh: { Limits: { MaxConnections: 1, MaxPendingRequests: 1 } } });
  const pooled = await Promise.all(Array.from({ length: 9 }, () => get(port.shop, '/slow-short')));
  assert.equal(pooled.filter((r) => r.status === 200).length, 6, pooled.map((r) => r.status).join(','));
  assert.match(pooled.find((r) => r.status === 503)!.body, /waiting for a connection \(MaxPendingRequests 1\)/);
  await a.api('/v1/config/service-resolver/shop', { method: 'DELETE' });
});

test('consistent hashing (ring_hash on a header) sends the same key to the same instance while instances stay', async () => {
  await config(a, { Kind: 'service-resolver', Name: 'shop', LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }] } });
  const byUser = new Map<string, Set<string>>();
  for (let round = 0; round < 4; round++) {
    const users = Array.from({ length: 50 }, (_, i) => `user-${i}`);
    const replies = await Promise.all(users.map((u) => get(port.shop, '/cart', { 'x-user': u })));
    replies.forEach((r, i) => {
      assert.equal(r.status, 200);
      byUser.set(users[i], (byUser.get(users[i]) ?? new Set()).add(r.instance));
    });
  }
  for (const [u, instances] of byUser) assert.equal(instances.size, 1, `${u} went to ${[...instances].join(', ')}`);
  const used = new Set([...byUser.values()].flatMap((s) => [...s]));
  assert.equal(used.size, 3, 'keys spread over all three instances');
  await a.api('/v1/config/service-resolver/shop', { method: 'DELETE' });
});

test('a WebSocket upgrade passes through the HTTP upstream: 1 000 messages echoed in order', async () => {
  const ws = await waitFor(() => new Promise<WebSocket>((resolve, reject) => {
    const w = new WebSocket(`ws://127.0.0.1:${port.chat}/chat`);
    w.once('open', () => resolve(w));
    w.once('error', reject);
  }), 10_000);
  const got: string[] = [];
  const done = new Promise<void>((resolve) => ws.on('message', (m) => { got.push(String(m)); if (got.length === 1000) resolve(); }));
  for (let i = 0; i < 1000; i++) ws.send(`message ${i}`);
  await done;
  assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => `message ${i}`));
  ws.close();
});

test('W3C traceparent: the same trace and sampled flag with a new span id per hop, or a new trace when none came', async () => {
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const r = await get(port.shop, '/', { traceparent: incoming });
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(r.traceparent);
  assert.ok(m, r.traceparent);
  assert.equal(m[1], '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.notEqual(m[2], '00f067aa0ba902b7');
  assert.equal(m[3], '01');
  const fresh = await get(port.shop, '/');
  assert.match(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  const junk = await get(port.shop, '/', { traceparent: 'garbage' });
  assert.match(junk.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
});

test('a resolver Failover sends a subset with no instance to another; zone-aware choice prefers the caller\'s zone (node meta)', async () => {
  await config(a, { Kind: 'service-resolver', Name: 'shop', Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v3: { Filter: 'Service.Meta.version == v3' } }, Failover: { v3: { ServiceSubset: 'v1' } } });
  await config(a, { Kind: 'service-router', Name: 'shop', Routes: [{ Match: { HTTP: { PathPrefix: '/v3' } }, Destination: { ServiceSubset: 'v3' } }] });
  const fo = await many(20, port.shop, '/v3/x');
  assert.deepEqual([...new Set(fo.map((r) => r.status))], [200]);
  assert.ok(fo.every((r) => r.instance.startsWith('shop-v1')), 'served by the failover subset');
  await a.api('/v1/config/service-router/shop', { method: 'DELETE' });
  await a.api('/v1/config/service-resolver/shop', { method: 'DELETE' });

  // A third node in another zone with a second instance of "geo"; the caller and B are in z1.
  const c = await startTestAgent({ node: 'l7-c', bind: '127.0.73.3', nodeMeta: { zone: 'z2' }, join: [`${B}:${b.gossip.port}`], ...caConfig });
  try {
    const geoB = await instance('127.0.73.61', 'geo-z1');
    const geoC = await instance('127.0.73.62', 'geo-z2');
    await b.api('/v1/agent/service/register', put({ Name: 'geo', ID: 'geo-z1', Address: '127.0.73.61', Port: geoB, Connect: { SidecarService: {} } }));
    await c.api('/v1/agent/service/register', put({ Name: 'geo', ID: 'geo-z2', Address: '127.0.73.62', Port: geoC, Connect: { SidecarService: {} } }));
    await config(a, { Kind: 'service-defaults', Name: 'geo', Protocol: 'http' });
    const up = await freePort('127.0.0.1');
    await a.api('/v1/agent/service/register', put({ Name: 'web2', Address: '127.0.73.32', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'geo', LocalBindPort: up }] } } } }));
    await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/geo?passing')).json()) as unknown[]).length, 2), 15_000);
    await waitFor(async () => assert.equal((await get(up, '/')).status, 200), 15_000);
    const near = await many(40, up, '/');
    assert.deepEqual([...new Set(near.map((r) => r.instance))], ['geo-z1'], 'only the caller\'s zone while it has an instance');
    await b.api('/v1/agent/service/deregister/geo-z1', { method: 'PUT' });
    await waitFor(async () => assert.equal((await get(up, '/')).instance, 'geo-z2'), 15_000);
  } finally {
    await c.stop();
  }
});
