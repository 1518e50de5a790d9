// L7 intentions (Consul 1.9's Permissions) decided per request on the inbound side of an HTTP service: allow
// GET /public/*, deny POST /admin, the default for the rest; 403 with a log naming the intention; validation.
// Agents: A (caller `web`) 127.0.74.1, B (`api`, protocol http) 127.0.74.2; api's app 127.0.74.11, web 127.0.74.21.

import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { put, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

let a: TestAgent;
let b: TestAgent;
let app: Server;
let upstream = 0;
let reached: string[] = [];

function call(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: upstream, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end(method === 'POST' ? '{"x":1}' : undefined);
  });
}

before(async () => {
  const ca = { ...await sharedCa(), defaultIntentionPolicy: 'deny' as const };
  b = await startTestAgent({ node: 'l7i-b', bind: '127.0.74.2', ...ca });
  a = await startTestAgent({ node: 'l7i-a', bind: '127.0.74.1', join: [`127.0.74.2:${b.gossip.port}`], ...ca });
  app = createServer((req, res) => {
    reached.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`api saw ${req.method} ${req.url}`));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.74.11', r));
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.74.11', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  // The protocol is config, replicated to both agents: the caller routes per request, the callee decides per request.
  assert.equal((await a.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }))).status, 200);
  await waitFor(async () => assert.equal((await b.api('/v1/config/service-defaults/api')).status, 200), 15_000);
  upstream = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.74.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }));
});

after(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  app?.close();
});

test('an L7 intention allows GET /public/* and denies POST /admin from the same source; the rest falls to the default', async () => {
  const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({
    SourceName: 'web', DestinationName: 'api', Permissions: [
      { Action: 'allow', HTTP: { PathPrefix: '/public/', Methods: ['GET'] } },
      { Action: 'deny', HTTP: { PathExact: '/admin', Methods: ['POST'] } },
      { Action: 'allow', HTTP: { PathExact: '/admin' } },
    ],
  }) });
  assert.equal(r.status, 200, await r.text());
  await waitFor(async () => assert.equal((await call('GET', '/public/items')).status, 200), 15_000);
  reached = [];
  const ok = await call('GET', '/public/items?page=2');
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'api saw GET /public/items?page=2');
  const denied = await call('POST', '/admin');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'RBAC: access denied\n');
  assert.equal((await call('GET', '/admin')).status, 200, 'a later permission allows GET /admin');
  assert.equal((await call('POST', '/public/items')).status, 403, 'no permission matches a POST to /public: default deny');
  assert.equal((await call('GET', '/private')).status, 403);
  assert.deepEqual(reached, ['GET /public/items?page=2', 'GET /admin'], 'denied requests never reach the app');
  const metrics = await (await b.api('/metrics')).text();
  assert.match(metrics, /nodemesh_proxy_denied_total\{direction="inbound",source="web",destination="api",reason="l7_permission"\} 3/);
  // The L4 authorize endpoint, as Consul 1.9: an L7 intention does not authorize a bare connection.
  const authz = await (await b.api('/v1/agent/connect/authorize', { method: 'POST', body: JSON.stringify({ Target: 'api', ClientCertURI: `spiffe://${b.ca.trustDomain}/ns/default/dc/dc1/svc/web` }) })).json() as { Authorized: boolean; Reason: string };
  assert.equal(authz.Authorized, false);
  assert.match(authz.Reason, /^Matched L7 intention: L7 default\/web => default\/api/);
});

test('turning the L7 intention into an L4 deny stops the caller\'s requests; bad Permissions are refused', async () => {
  const list = await (await a.api('/v1/connect/intentions')).json() as { ID: string }[];
  assert.equal((await a.api(`/v1/connect/intentions/${list[0].ID}`, { method: 'PUT', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }) })).status, 200);
  await waitFor(async () => assert.equal((await call('GET', '/public/items')).status, 503), 15_000);
  const bad: [unknown, RegExp][] = [
    [{ SourceName: 'web', DestinationName: 'api2', Action: 'allow', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }, /Action must be empty when Permissions are present/],
    [{ SourceName: 'web', DestinationName: 'api3', Permissions: [{ Action: 'maybe', HTTP: { PathPrefix: '/' } }] }, /Permissions\[0\]\.Action must be set to 'allow' or 'deny'/],
    [{ SourceName: 'web', DestinationName: 'api4', Permissions: [{ Action: 'allow' }] }, /Permissions\[0\]\.HTTP must be set/],
    [{ SourceName: 'web', DestinationName: 'api5', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: 'x', PathExact: '/y' } }] }, /at most one of PathExact, PathPrefix, or PathRegex/],
    [{ SourceName: 'web', DestinationName: 'api6', Permissions: [{ Action: 'allow', HTTP: { Methods: ['GRAB'] } }] }, /invalid method "GRAB"/],
    [{ SourceName: 'web', DestinationName: 'api7', Permissions: [{ Action: 'allow', HTTP: { Header: [{ Name: 'x', Regex: '(' }] } }] }, /invalid regular expression/],
    [{ SourceName: 'web', DestinationName: 'api8', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: 7 } }] }, /cannot unmarshal number/],
  ];
  // api2…api8 have no service-defaults: the protocol check would answer first, so give them http.
  for (let n = 2; n <= 8; n++) await a.api('/v1/config', put({ Kind: 'service-defaults', Name: `api${n}`, Protocol: 'http' }));
  for (const [body, want] of bad) {
    const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify(body) });
    const text = await r.text();
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${text}`);
    assert.match(text, want);
  }
  const tcp = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'db', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }) });
  assert.equal(tcp.status, 400);
  assert.match(await tcp.text(), /Permissions need an HTTP-family destination, but "db" has protocol "tcp"/);
});
