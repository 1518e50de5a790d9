// The app learns its caller from X-Forwarded-Client-Cert set by the agent (never a forged one), and each denial counts under its own reason while a TCP check counts as none.
// One agent on 127.0.172.1; api's app 127.0.172.11 (protocol http, an L7 intention from web); web 127.0.172.21; other clients 127.0.172.3x.

import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { after, before, test } from 'node:test';
import { importPrivateKey, signLeaf } from '../identity/ca/x509-certs.js';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { poolCredentials } from './helpers/pool-credentials.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const BIND = '127.0.172.1';
const APP = '127.0.172.11';
const WEB = '127.0.172.21';
const WORKER = '127.0.172.22';
const RAW = '127.0.172.31';
const DIRECT = '127.0.172.32';

let agent: TestAgent;
let app: Server;
let caCert: string;
let caKey: CryptoKey;
let upstream = 0;
let workerUpstream = 0;
let publicPort = 0;
let td = '';
/** The X-Forwarded-Client-Cert lines (any spelling) of each request that reached the app, by path. */
const seen = new Map<string, string[]>();

const spiffe = (service: string) => `spiffe://${td}/ns/default/dc/dc1/svc/${service}`;
const derHash = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

before(async () => {
  const { root } = await poolCredentials([]);
  caCert = root.certPem;
  caKey = (await importPrivateKey(root.keyPem)).key;
  agent = await startTestAgent({ node: 'xfcc-1', bind: BIND, caFile: root.caFile, caKeyFile: root.caKeyFile, defaultIntentionPolicy: 'allow' });
  td = agent.ca.trustDomain;
  app = createServer((req, res) => {
    const xfcc: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'x-forwarded-client-cert') xfcc.push(req.rawHeaders[i + 1]);
    seen.set(req.url ?? '', xfcc);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`app saw ${req.url}`));
  });
  await new Promise<void>((r) => app.listen(0, APP, r));
  const reg = async (body: unknown) => {
    const r = await agent.api('/v1/agent/service/register', put(body));
    assert.equal(r.status, 200, await r.text());
  };
  assert.equal((await agent.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }))).status, 200);
  await reg({ Name: 'api', Address: APP, Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } });
  upstream = await freePort(WEB);
  await reg({ Name: 'web', Address: WEB, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: WEB, LocalBindPort: upstream }] } } } });
  // worker has no L7 intention: its connections to api are allowed whole (L4), so api's agent does not parse them.
  workerUpstream = await freePort(WORKER);
  await reg({ Name: 'worker', Address: WORKER, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: WORKER, LocalBindPort: workerUpstream }] } } } });
  const services = await (await agent.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  publicPort = services['api-sidecar-proxy'].Port;
  // web may call /ok/*; everything else from web is refused per request. admin is denied outright (L4).
  const l7 = await agent.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({
    SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/ok/' } }, { Action: 'deny', HTTP: { PathPrefix: '/' } }],
  }) });
  assert.equal(l7.status, 200, await l7.text());
  const l4 = await agent.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'admin', DestinationName: 'api', Action: 'deny' }) });
  assert.equal(l4.status, 200, await l4.text());
  await waitFor(async () => assert.equal((await viaMesh('/ok/ready', [])).status, 200), 15_000);
});

after(async () => {
  await agent?.stop().catch(() => undefined);
  await new Promise((r) => app?.close(r));
});

/** One HTTP/1.1 request written by hand (so duplicate and oddly spelled headers go out as given) over `sock`. */
function rawRequest(sock: Socket, path: string, extra: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => { got += c; });
    sock.on('error', reject);
    sock.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0);
      resolve({ status, body: got.slice(got.indexOf('\r\n\r\n') + 4) });
    });
    sock.write(`GET ${path} HTTP/1.1\r\nhost: api\r\n${extra.map((h) => `${h}\r\n`).join('')}connection: close\r\n\r\n`);
  });
}

/** A request from web through its upstream listener (the outbound L7 path, then the inbound one). */
function viaMesh(path: string, extra: string[]): Promise<{ status: number; body: string }> {
  const sock = connect({ host: WEB, port: upstream, localAddress: WEB });
  return rawRequest(sock, path, extra);
}

/** A request over mTLS straight to api's public listener, as a caller that skips its own agent would send it. */
function direct(leaf: { certPem: string; keyPem: string }, path: string, extra: string[]): Promise<{ status: number; body: string }> {
  const sock = tlsConnect({ socket: connect({ host: BIND, port: publicPort, localAddress: DIRECT }), ca: caCert, key: leaf.keyPem, cert: leaf.certPem, checkServerIdentity: () => undefined });
  return rawRequest(sock, path, extra);
}

const leafFor = (service: string) => signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: spiffe(service), commonName: service, ttlMs: 3_600_000 });

async function metrics(): Promise<string> {
  return (await agent.api('/metrics')).text();
}

/** The sum of a counter's series whose labels include every given `name="value"`. */
function sum(text: string, metric: string, labels: Record<string, string>): number {
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^${metric}\\{([^}]*)\\} (\\d+)$`, 'gm'))) {
    if (Object.entries(labels).every(([k, v]) => m[1].split(',').includes(`${k}="${v}"`))) n += Number(m[2]);
  }
  return n;
}

const FORGERIES: [string, string[]][] = [
  ['none sent', []],
  ['one in canonical case', ['X-Forwarded-Client-Cert: By=spiffe://evil/x;URI=spiffe://evil/ns/default/dc/dc1/svc/admin']],
  ['one in lower case', ['x-forwarded-client-cert: URI=spiffe://forged/ns/default/dc/dc1/svc/admin']],
  ['one in odd case', ['X-FORWARDED-client-CERT: Hash=00;URI=spiffe://forged/ns/default/dc/dc1/svc/admin']],
  ['two of them', ['x-forwarded-client-cert: URI=spiffe://a/ns/default/dc/dc1/svc/admin', 'X-Forwarded-Client-Cert: URI=spiffe://b/ns/default/dc/dc1/svc/admin']],
  ['an empty one', ['X-Forwarded-Client-Cert:']],
];

test('through the mesh, the app gets exactly one X-Forwarded-Client-Cert naming the caller, whatever the caller sent', async () => {
  const leaf = await (await agent.api('/v1/agent/connect/ca/leaf/web')).json() as { CertPEM: string };
  const want = `By=${spiffe('api')};Hash=${derHash(leaf.CertPEM)};URI=${spiffe('web')}`;
  for (const [i, [what, extra]] of FORGERIES.entries()) {
    const path = `/ok/mesh-${i}`;
    const r = await viaMesh(path, extra);
    assert.equal(r.status, 200, `${what}: ${r.body}`);
    assert.deepEqual(seen.get(path), [want], `${what}: one header, from the verified peer`);
  }
});

test('the caller\'s own agent drops a caller-supplied header too (seen where the callee\'s agent does not parse the connection)', async () => {
  await waitFor(async () => assert.equal((await rawRequest(connect({ host: WORKER, port: workerUpstream, localAddress: WORKER }), '/worker-ready', [])).status, 200), 15_000);
  for (const [i, [what, extra]] of FORGERIES.entries()) {
    const path = `/worker-${i}`;
    const r = await rawRequest(connect({ host: WORKER, port: workerUpstream, localAddress: WORKER }), path, extra);
    assert.equal(r.status, 200, `${what}: ${r.body}`);
    assert.deepEqual(seen.get(path), [], `${what}: nothing of the caller's reaches the app`);
  }
});

test('straight to the public listener (skipping the caller\'s agent), a forged header is still replaced', async () => {
  const leaf = await leafFor('web');
  const want = `By=${spiffe('api')};Hash=${derHash(leaf.certPem)};URI=${spiffe('web')}`;
  for (const [i, [what, extra]] of FORGERIES.entries()) {
    const path = `/ok/direct-${i}`;
    const r = await direct(leaf, path, extra);
    assert.equal(r.status, 200, `${what}: ${r.body}`);
    assert.deepEqual(seen.get(path), [want], `${what}: one header, from the verified peer`);
  }
});

test('a TCP connect-and-close to the public listener is a probe, not a denial; the agent\'s own check is told apart', async () => {
  const before = await metrics();
  const denied = sum(before, 'nodemesh_proxy_denied_total', { destination: 'api' });
  const probes = sum(before, 'nodemesh_proxy_probes_total', { destination: 'api', source: 'unknown' });
  for (let i = 0; i < 3; i++) {
    const s = connect({ host: BIND, port: publicPort, localAddress: RAW });
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.end();
  }
  await waitFor(async () => assert.equal(sum(await metrics(), 'nodemesh_proxy_probes_total', { destination: 'api', source: 'unknown' }), probes + 3), 20_000);
  // The sidecar's own "Connect Sidecar Listening" check connects every 10 s: counted as this agent's, and as no denial.
  await waitFor(async () => assert.ok(sum(await metrics(), 'nodemesh_proxy_probes_total', { destination: 'api', source: 'agent_check' }) >= 1), 30_000);
  assert.equal(sum(await metrics(), 'nodemesh_proxy_denied_total', { destination: 'api' }), denied, 'no denial counted for any probe');
});

test('a TLS client without a certificate counts as no_client_cert', async () => {
  const n = () => metrics().then((t) => sum(t, 'nodemesh_proxy_denied_total', { destination: 'api', reason: 'no_client_cert' }));
  const was = await n();
  const opts: ConnectionOptions = { socket: connect({ host: BIND, port: publicPort, localAddress: DIRECT }), ca: caCert, checkServerIdentity: () => undefined };
  await new Promise<void>((resolve) => {
    const s = tlsConnect(opts, () => s.write('GET / HTTP/1.1\r\n\r\n'));
    s.on('error', () => undefined);
    s.on('close', () => resolve());
    s.resume();
  });
  await waitFor(async () => assert.equal(await n(), was + 1));
  assert.equal(sum(await metrics(), 'nodemesh_proxy_denied_total', { destination: 'api', reason: 'tls_handshake' }), 0, 'not a failed handshake');
});

test('an L4 deny counts as intention, an L7 deny as l7_permission', async () => {
  const l4 = () => metrics().then((t) => sum(t, 'nodemesh_proxy_denied_total', { source: 'admin', destination: 'api', reason: 'intention' }));
  const l7 = () => metrics().then((t) => sum(t, 'nodemesh_proxy_denied_total', { source: 'web', destination: 'api', reason: 'l7_permission' }));
  const l4Was = await l4();
  const l7Was = await l7();
  const r = await direct(await leafFor('admin'), '/ok/admin', []).catch(() => ({ status: 0, body: '' }));
  assert.equal(r.status, 0, 'the connection is closed without an answer');
  assert.equal(seen.has('/ok/admin'), false);
  await waitFor(async () => assert.equal(await l4(), l4Was + 1));
  const denied = await viaMesh('/private', []);
  assert.equal(denied.status, 403);
  assert.equal(seen.has('/private'), false);
  await waitFor(async () => assert.equal(await l7(), l7Was + 1));
});
