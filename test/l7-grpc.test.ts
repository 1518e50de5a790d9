// HTTP/2 and gRPC through two agents (protocol grpc / http2): unary and bidirectional streaming calls with metadata
// and trailers (@grpc/grpc-js client and server), gRPC errors passed through, and an HTTP/2 header route to a canary.
// HTTP/2 shares the L7 pipeline with HTTP/1.1: fault injection, mirroring and access logs on h2c and gRPC.
// Agents: A 127.0.75.1 (caller `web` 127.0.75.21), B 127.0.75.2; greeter 127.0.75.11, plain h2 v1/v2 127.0.75.12/.13,
// the mirror's h2 app 127.0.75.15.

import assert from 'node:assert/strict';
import { connect as h2connect, createServer as createH2Server, type Http2Server } from 'node:http2';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { put, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { sampleSum } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait-for.js';

let a: TestAgent;
let b: TestAgent;
let server: grpc.Server;
const h2servers: Http2Server[] = [];
const port = { greeter: 0, pages: 0 };
let bad: grpc.Server | undefined;
/** Agent A's log lines (access_log on): the access lines of HTTP/2 requests are read from here. */
const logLines: Record<string, unknown>[] = [];
const shadowSeen: string[] = [];

const raw = (x: Buffer) => x;
const def: grpc.ServiceDefinition = {
  Say: { path: '/demo.Greeter/Say', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  Chat: { path: '/demo.Greeter/Chat', requestStream: true, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
};
const Greeter = grpc.makeGenericClientConstructor(def, 'Greeter');

before(async () => {
  const ca = await sharedCa();
  b = await startTestAgent({ node: 'grpc-b', bind: '127.0.75.2', ...ca });
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) logLines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  a = await startTestAgent({ node: 'grpc-a', bind: '127.0.75.1', join: [`127.0.75.2:${b.gossip.port}`], accessLog: true, ...ca }, pino({ level: 'info' }, sink));
  server = new grpc.Server();
  server.addService(def, {
    Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-initial', 'from-server');
      call.sendMetadata(md);
      const who = String(call.metadata.get('x-caller')[0] ?? '');
      if (call.request.toString() === 'fail') return cb({ code: grpc.status.PERMISSION_DENIED, details: 'not you' });
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'done');
      cb(null, Buffer.from(`hello ${call.request.toString()} (caller ${who})`), trailer);
    },
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (m: Buffer) => call.write(Buffer.from(`echo ${m.toString()}`)));
      call.on('end', () => {
        const trailer = new grpc.Metadata();
        trailer.set('x-count', 'all');
        call.end(trailer);
      });
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.75.11:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  await b.api('/v1/agent/service/register', put({ Name: 'greeter', Address: '127.0.75.11', Port: grpcPort, Connect: { SidecarService: {} } }));
  for (const [host, version] of [['127.0.75.12', 'v1'], ['127.0.75.13', 'v2']]) {
    const s = createH2Server((req, res) => res.writeHead(200, { 'x-version': version }).end(`${version} ${req.url}`));
    await new Promise<void>((r) => s.listen(0, host, r));
    h2servers.push(s);
    await b.api('/v1/agent/service/register', put({ Name: 'pages', ID: `pages-${version}`, Address: host, Port: (s.address() as { port: number }).port, Meta: { version }, Connect: { SidecarService: {} } }));
  }
  const shadow = createH2Server((req, res) => { shadowSeen.push(String(req.headers[':authority'] ?? '') + req.url); res.writeHead(500).end('shadow'); });
  await new Promise<void>((r) => shadow.listen(0, '127.0.75.15', r));
  h2servers.push(shadow);
  await b.api('/v1/agent/service/register', put({ Name: 'pages-shadow', Address: '127.0.75.15', Port: (shadow.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  for (const body of [
    { Kind: 'service-defaults', Name: 'pages-shadow', Protocol: 'http2' },
    { Kind: 'service-defaults', Name: 'greeter', Protocol: 'grpc' },
    { Kind: 'service-defaults', Name: 'pages', Protocol: 'http2' },
    { Kind: 'service-resolver', Name: 'pages', DefaultSubset: 'v1', Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } } },
    { Kind: 'service-router', Name: 'pages', Routes: [{ Match: { HTTP: { Header: [{ Name: 'x-canary', Present: true }] } }, Destination: { ServiceSubset: 'v2' } }] },
  ]) assert.equal((await a.api('/v1/config', put(body))).status, 200);
  port.greeter = await freePort('127.0.0.1');
  port.pages = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.75.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [
    { DestinationName: 'greeter', LocalBindPort: port.greeter }, { DestinationName: 'pages', LocalBindPort: port.pages },
  ] } } } }));
});

after(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  server?.forceShutdown();
  for (const s of h2servers) s.close();
});

test('gRPC unary through the mesh: metadata both ways, trailers, and a gRPC error status passed through', async () => {
  const client = new Greeter(`127.0.0.1:${port.greeter}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Say(req: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
    Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
  };
  try {
    const md = new grpc.Metadata();
    md.set('x-caller', 'web-1');
    const { reply, initial, trailing } = await waitFor(() => new Promise<{ reply: string; initial: string; trailing: string }>((resolve, reject) => {
      let initial = '';
      let trailing = '';
      const call = client.Say(Buffer.from('mesh'), md, (e, r) => (e ? reject(e) : setImmediate(() => resolve({ reply: r!.toString(), initial, trailing }))));
      call.on('metadata', (m) => { initial = String(m.get('x-initial')[0] ?? ''); });
      call.on('status', (s) => { trailing = String(s.metadata.get('x-trailer')[0] ?? ''); });
    }), 15_000);
    assert.equal(reply, 'hello mesh (caller web-1)');
    assert.equal(initial, 'from-server');
    assert.equal(trailing, 'done');
    const err = await new Promise<grpc.ServiceError>((resolve) => client.Say(Buffer.from('fail'), new grpc.Metadata(), (e) => resolve(e!)));
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.equal(err.details, 'not you');

    // Bidirectional streaming: 100 messages each way, in order, then the server's trailers.
    const chat = client.Chat();
    const got: string[] = [];
    const done = new Promise<string>((resolve, reject) => {
      chat.on('data', (m: Buffer) => got.push(m.toString()));
      chat.on('status', (s) => resolve(String(s.metadata.get('x-count')[0] ?? '')));
      chat.on('error', reject);
    });
    for (let i = 0; i < 100; i++) chat.write(Buffer.from(`m${i}`));
    chat.end();
    assert.equal(await done, 'all');
    assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => `echo m${i}`));
  } finally {
    client.close();
  }
  const metrics = await (await a.api('/metrics')).text();
  assert.ok(sampleSum(metrics, 'nodemesh_l7_requests_total', { direction: 'outbound', source: 'web', destination: 'greeter', route: 'default', code: '200', code_class: '2xx', method: 'POST' }) > 0, 'gRPC calls counted by code and method');
});

test('HTTP/2 (h2c) through the mesh: a header route sends marked requests to the canary, others to v1', async () => {
  await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/pages?passing')).json()) as unknown[]).length, 2), 15_000);
  const session = h2connect(`http://127.0.0.1:${port.pages}`);
  try {
    const ask = (headers: Record<string, string>) => new Promise<string>((resolve, reject) => {
      const r = session.request({ ':path': '/page', ...headers });
      r.setTimeout(3000, () => { r.close(); reject(new Error('no answer within 3 s')); });
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => { body += c; });
      r.on('end', () => resolve(body));
      r.on('error', reject);
      r.end();
    });
    await waitFor(async () => assert.equal(await ask({}), 'v1 /page'), 15_000);
    assert.equal(await ask({ 'x-canary': '1' }), 'v2 /page');
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => ask(i % 2 ? { 'x-canary': '1' } : {})));
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => (i % 2 ? 'v2 /page' : 'v1 /page')));
  } finally {
    session.close();
  }
});

test('gRPC retries: UNAVAILABLE counts as 503 for RetryOnStatusCodes, unary calls are retried, a bidi stream still flows under the retry route', async () => {
  // A second instance that answers every call UNAVAILABLE.
  bad = new grpc.Server();
  const unavailable = (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.UNAVAILABLE, details: 'try again' });
  bad.addService(def, { Say: unavailable, Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => call.emit('error', { code: grpc.status.UNAVAILABLE }) });
  const badPort = await new Promise<number>((resolve, reject) => bad!.bindAsync('127.0.75.14:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  await b.api('/v1/agent/service/register', put({ Name: 'greeter', ID: 'greeter-bad', Address: '127.0.75.14', Port: badPort, Connect: { SidecarService: {} } }));
  await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/greeter?passing')).json()) as unknown[]).length, 2), 15_000);
  assert.equal((await a.api('/v1/config', put({ Kind: 'service-router', Name: 'greeter', Routes: [{ Match: { HTTP: { PathPrefix: '/' } }, Destination: { NumRetries: 3, RetryOnStatusCodes: [503] } }] }))).status, 200);
  const client = new Greeter(`127.0.0.1:${port.greeter}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Say(req: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
    Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
  };
  try {
    const say = () => new Promise<string>((resolve, reject) => client.Say(Buffer.from('flaky'), new grpc.Metadata(), (e, r) => (e ? reject(e) : resolve(r!.toString()))));
    // Once the route is in place every call succeeds, though half of the first attempts reach the failing instance.
    await waitFor(async () => { for (let i = 0; i < 6; i++) assert.match(await say(), /^hello flaky/); }, 15_000);
    const results = await Promise.all(Array.from({ length: 40 }, () => say()));
    assert.ok(results.every((r) => r.startsWith('hello flaky')));
    // A stream is not retried (it cannot be sent again): with the failing instance gone, one flows under the same route.
    await b.api('/v1/agent/service/deregister/greeter-bad', { method: 'PUT' });
    await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/greeter?passing')).json()) as unknown[]).length, 1), 15_000);
    const chat = client.Chat();
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => { chat.on('status', () => resolve()); chat.on('error', reject); chat.on('data', (m: Buffer) => got.push(m.toString())); });
    chat.write(Buffer.from('ping'));
    await waitFor(() => assert.deepEqual(got, ['echo ping']), 5000);
    chat.end();
    await done;
  } finally {
    client.close();
    await a.api('/v1/config/service-router/greeter', { method: 'DELETE' });
    await b.api('/v1/agent/service/deregister/greeter-bad', { method: 'PUT' });
    bad.forceShutdown();
  }
  assert.match(await (await a.api('/metrics')).text(), /nodemesh_l7_retries_total\{source="web",destination="greeter",route="route-0",reason="status"\} [1-9]/);
});

test('an L7 intention on a gRPC service is decided per call through the tunnel: Say allowed, Chat denied with PERMISSION_DENIED', async () => {
  const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({
    SourceName: 'web', DestinationName: 'greeter', Permissions: [
      { Action: 'deny', HTTP: { PathExact: '/demo.Greeter/Chat' } },
      { Action: 'allow', HTTP: { PathPrefix: '/demo.Greeter/' } },
    ] }) });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  const id = (JSON.parse(text) as { ID: string }).ID;
  const client = new Greeter(`127.0.0.1:${port.greeter}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Say(req: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
    Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
  };
  const chatStatus = () => new Promise<grpc.status>((resolve) => {
    const chat = client.Chat();
    chat.on('data', () => undefined);
    chat.on('error', (e: grpc.ServiceError) => resolve(e.code));
    chat.on('status', (s) => resolve(s.code));
    chat.write(Buffer.from('ping'));
    chat.end();
  });
  try {
    // Replicated to B (where greeter's inbound decides) within a moment: then every Chat is denied per call.
    await waitFor(async () => assert.equal(await chatStatus(), grpc.status.PERMISSION_DENIED), 15_000);
    const say = await new Promise<string>((resolve, reject) => client.Say(Buffer.from('l7'), new grpc.Metadata(), (e, out) => (e ? reject(e) : resolve(out!.toString()))));
    assert.match(say, /^hello l7/);
    assert.match(await (await b.api('/metrics')).text(), /nodemesh_proxy_denied_total\{direction="inbound",source="web",destination="greeter",reason="l7_permission"\} [1-9]/);
  } finally {
    client.close();
    await a.api(`/v1/connect/intentions/${id}`, { method: 'DELETE' });
  }
});

test('HTTP/2 and gRPC take the same L7 pipeline as HTTP/1.1: fault abort and delay, a mirror the caller never sees, access log lines', async () => {
  for (const body of [
    { Kind: 'service-router', Name: 'pages', Routes: [
      { Match: { HTTP: { PathPrefix: '/abort' } }, Destination: { Nodemesh: { Fault: { AbortPercent: 100, AbortStatus: 418 } } } },
      { Match: { HTTP: { PathPrefix: '/delay' } }, Destination: { Nodemesh: { Fault: { DelayPercent: 100, Delay: '200ms' } } } },
      { Match: { HTTP: { PathPrefix: '/mirror' } }, Destination: { Nodemesh: { Mirror: { Service: 'pages-shadow', Percent: 100 } } } },
    ] },
    { Kind: 'service-router', Name: 'greeter', Routes: [{ Match: { HTTP: { PathExact: '/demo.Greeter/Say' } }, Destination: { Nodemesh: { Fault: { AbortPercent: 100, AbortStatus: 503 } } } }] },
  ]) assert.equal((await a.api('/v1/config', put(body))).status, 200);
  const session = h2connect(`http://127.0.0.1:${port.pages}`);
  const ask = (path: string) => new Promise<{ status: number; body: string; code?: string }>((resolve, reject) => {
    const r = session.request({ ':path': path });
    let status = 0;
    let code: string | undefined;
    let body = '';
    r.on('response', (h) => { status = Number(h[':status']); code = h['x-nodemesh-error'] as string | undefined; });
    r.setEncoding('utf8');
    r.on('data', (c: string) => { body += c; });
    r.on('end', () => resolve({ status, body, code }));
    r.on('error', reject);
    r.end();
  });
  const client = new Greeter(`127.0.0.1:${port.greeter}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Say(req: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
  };
  try {
    await waitFor(async () => assert.equal((await ask('/abort/x')).status, 418), 10_000);
    assert.equal((await ask('/abort/y')).code, 'FAULT_ABORT');
    const t0 = Date.now();
    assert.equal((await ask('/delay')).body, 'v1 /delay');
    assert.ok(Date.now() - t0 >= 200, 'held for the configured delay');
    const before = shadowSeen.length;
    const mirrored = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(`/mirror/${i}`)));
    assert.deepEqual([...new Set(mirrored.map((r) => r.status))], [200], 'the mirror\'s 500s never reach the caller');
    await waitFor(() => assert.equal(shadowSeen.length - before, 10), 5000);
    assert.ok(shadowSeen.slice(before).every((s) => /-shadow\/mirror\/\d$/.test(s)), shadowSeen.slice(before).join(','));
    // gRPC: the fault's 503 reaches the client as UNAVAILABLE, as Envoy maps it.
    const err = await waitFor(() => new Promise<grpc.ServiceError>((resolve, reject) => client.Say(Buffer.from('x'), new grpc.Metadata(), (e) => (e?.code === grpc.status.UNAVAILABLE ? resolve(e) : reject(new Error(`got ${e?.code ?? 'OK'}`))))), 10_000);
    assert.match(err.details, /fault filter abort/);
  } finally {
    client.close();
    session.close();
    await a.api('/v1/config/service-router/pages', { method: 'DELETE' });
    await a.api('/v1/config/service-router/greeter', { method: 'DELETE' });
  }
  const access = logLines.filter((l) => l.access === true);
  assert.ok(access.some((l) => l.destination === 'pages' && l.path === '/delay' && l.status === 200 && l.method === 'GET'), 'an access line for the h2c request');
  assert.ok(access.some((l) => l.destination === 'pages' && l.path === '/abort/x' && l.status === 418 && l.route === 'route-0'), 'an access line for the aborted one');
  assert.ok(access.some((l) => l.destination === 'greeter' && l.path === '/demo.Greeter/Say' && l.status === 503), 'an access line for the gRPC call');
});
