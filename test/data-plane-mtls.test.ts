// The L4 mTLS data plane over real TCP/TLS on loopback: upstream → agent → public listener → app, intentions enforced live.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as tlsCreateServer, type TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { importPrivateKey, signLeaf } from '../identity/ca/x509-certs.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { sleep, waitFor } from './helpers/wait-for.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip, type App } from './helpers/tcp-apps.js';

// Each workload has its own loopback address; the agent's public listeners are on its own bind address,
// apart from the 127.0.0.1 ones other test files' agents use.
const BIND = '127.0.1.1';
const WEB = '127.0.0.2';
const API = '127.0.0.3';
const ADMIN = '127.0.0.4';
const IMPOSTOR = '127.0.0.5';
const STRANGER = '127.0.0.9';

let agent: TestAgent;
let api: App;
let imp: App;
let upstreamApi: number;
let sharedPort: number;
let secretPort: number;
let caDir: string;
let caKey: CryptoKey;
let caCert: string;
let apiPublicPort: number;

before(async () => {
  // The test holds the CA key (given through ca_file/ca_key_file) so it can mint bad certificates.
  caDir = tempDir();
  const root = await CertificateAuthority.createRoot();
  writeFileSync(join(caDir, 'ca.pem'), root.certPem);
  writeFileSync(join(caDir, 'ca-key.pem'), root.keyPem, { mode: 0o600 });
  caCert = root.certPem;
  caKey = (await importPrivateKey(root.keyPem)).key;
  agent = await startTestAgent({ bind: BIND, caFile: join(caDir, 'ca.pem'), caKeyFile: join(caDir, 'ca-key.pem'), defaultIntentionPolicy: 'allow' });
  api = await echoApp(API);
  imp = await echoApp(IMPOSTOR);
  upstreamApi = await freePort('127.0.0.1');
  sharedPort = await freePort('127.0.0.1');
  secretPort = await freePort('127.0.0.1');
  const reg = async (body: unknown) => {
    const r = await agent.api('/v1/agent/service/register', put(body));
    assert.equal(r.status, 200, await r.text());
  };
  await reg({ Name: 'api', Address: API, Port: api.port, Connect: { SidecarService: {} } });
  await reg({
    Name: 'web', Address: WEB, Port: 1,
    Connect: { SidecarService: { Proxy: { Upstreams: [
      { DestinationName: 'api', LocalBindPort: upstreamApi },
      { DestinationName: 'api', LocalBindAddress: '127.0.0.1', LocalBindPort: sharedPort },
      { DestinationName: 'secret', LocalBindPort: secretPort },
    ] } } },
  });
  // admin shares web's second listener: the two are told apart by source address.
  await reg({
    Name: 'admin', Address: ADMIN, Port: 1,
    Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: '127.0.0.1', LocalBindPort: sharedPort }] } } },
  });
  const services = await (await agent.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  apiPublicPort = services['api-sidecar-proxy'].Port;
  // Wait until the api sidecar's listener is open and its checks pass, so it is a healthy endpoint.
  await waitFor(async () => {
    const h = await (await agent.api('/v1/health/connect/api?passing')).json() as unknown[];
    assert.equal(h.length, 1);
  });
});

after(async () => {
  await agent.stop();
  for (const s of [api.server, imp.server]) await new Promise((r) => s.close(r));
});

test('web reaches api through its upstream port, over mTLS, with half-close preserved', async () => {
  const before = api.connections;
  const r = await roundTrip(WEB, upstreamApi, 'hello over the mesh');
  assert.equal(r.error, undefined);
  // The client shut down its write side first and still got the whole reply (Consul's proxy loses it).
  assert.equal(r.reply.toString(), 'hello over the mesh');
  assert.equal(api.connections, before + 1);
});

test('a deny intention stops new connections and closes an open one; allowing again works', async () => {
  // An open, idle connection.
  const open = connect({ host: '127.0.0.1', port: upstreamApi, localAddress: WEB });
  await new Promise((r) => open.once('connect', r));
  open.write('ping');
  await new Promise((r) => open.once('data', r));
  let closed = false;
  open.on('close', () => { closed = true; });
  open.on('error', () => undefined);

  const created = await agent.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }) });
  assert.equal(created.status, 200);
  const { ID } = await created.json() as { ID: string };
  await waitFor(() => assert.ok(closed, 'open connection was not revoked'), 5000);

  const bytesBefore = api.bytes;
  const connsBefore = api.connections;
  const denied = await roundTrip(WEB, upstreamApi, 'should not arrive');
  assert.equal(denied.reply.length, 0);
  assert.equal(api.bytes, bytesBefore, 'a denied connection must not deliver a byte to the app');
  assert.equal(api.connections, connsBefore);

  const check = await (await agent.api('/v1/connect/intentions/check?source=web&destination=api')).json();
  assert.deepEqual(check, { Allowed: false });

  await agent.api(`/v1/connect/intentions/${ID}`, { method: 'PUT', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'allow' }) });
  const again = await roundTrip(WEB, upstreamApi, 'back again');
  assert.equal(again.reply.toString(), 'back again');
  await agent.api(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
});

test('a shared upstream listener tells callers apart by source address; an unknown source is refused', async () => {
  assert.equal((await roundTrip(WEB, sharedPort, 'from web')).reply.toString(), 'from web');
  assert.equal((await roundTrip(ADMIN, sharedPort, 'from admin')).reply.toString(), 'from admin');
  const created = await agent.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'admin', DestinationName: 'api', Action: 'deny' }) });
  const { ID } = await created.json() as { ID: string };
  try {
    assert.equal((await roundTrip(ADMIN, sharedPort, 'x')).reply.length, 0, 'admin is denied');
    assert.equal((await roundTrip(WEB, sharedPort, 'still fine')).reply.toString(), 'still fine', 'web is unaffected');
    const bytes = api.bytes;
    assert.equal((await roundTrip(STRANGER, sharedPort, 'who am i')).reply.length, 0);
    assert.equal(api.bytes, bytes);
  } finally {
    await agent.api(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  }
});

/** Tries the api's public listener directly with the given client TLS options; resolves with what came back. */
function directTls(opts: { key?: string; cert?: string }): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s: TLSSocket = tlsConnect({ host: BIND, port: apiPublicPort, ca: caCert, checkServerIdentity: () => undefined, ...opts }, () => s.write('probe'));
    s.on('data', (c) => { got += c; });
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
    setTimeout(() => s.destroy(), 3000).unref();
  });
}

test('negative matrix on the public listener: nothing reaches the app', async () => {
  const td = agent.ca.trustDomain;
  const svcUri = `spiffe://${td}/ns/default/dc/dc1/svc/web`;
  const other = await CertificateAuthority.createRoot();
  const otherKey = (await importPrivateKey(other.keyPem)).key;
  const fromOtherCa = await signLeaf({ issuerCertPem: other.certPem, issuerKey: otherKey, spiffeId: `spiffe://${other.trustDomain}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
  const expired = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: svcUri, commonName: 'web', ttlMs: 60_000, notBefore: new Date(Date.now() - 3_600_000) });
  const noUri = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: '', commonName: 'web', ttlMs: 3_600_000, dnsNames: ['web.example'] });
  const good = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: svcUri, commonName: 'web', ttlMs: 3_600_000 });

  const bytes = api.bytes;
  const conns = api.connections;
  assert.equal(await directTls({}), '', 'no client certificate');
  assert.equal(await directTls({ key: fromOtherCa.keyPem, cert: fromOtherCa.certPem }), '', 'certificate from another CA');
  assert.equal(await directTls({ key: expired.keyPem, cert: expired.certPem }), '', 'expired certificate');
  assert.equal(await directTls({ key: noUri.keyPem, cert: noUri.certPem }), '', 'certificate without a SPIFFE URI');
  const plain = await new Promise<string>((resolve) => {
    let got = '';
    const s = connect({ host: BIND, port: apiPublicPort }, () => s.write('GET / HTTP/1.0\r\n\r\n'));
    s.on('data', (c) => { got += c; });
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
  });
  assert.doesNotMatch(plain, /GET/, 'plaintext must not be echoed by the app');
  assert.equal(api.bytes, bytes, 'no byte reached the app');
  assert.equal(api.connections, conns, 'no connection reached the app');
  // The control: a valid certificate of the same CA gets through.
  assert.equal(await directTls({ key: good.keyPem, cert: good.certPem }), 'probe');
});

test('a peer that connects and leaves without a handshake (a TCP health check) is closed, not kept half-open', async () => {
  let closedByAgent = 0;
  await Promise.all(Array.from({ length: 10 }, () => new Promise<void>((resolve) => {
    const s = connect({ host: BIND, port: apiPublicPort, localAddress: STRANGER, allowHalfOpen: true }, () => s.end());
    s.on('error', () => undefined);
    s.on('end', () => { closedByAgent++; });
    s.on('close', () => resolve());
  })));
  assert.equal(closedByAgent, 10, 'the agent ended its side of every such connection');
});

test('one source address gets at most 64 unfinished handshakes; the agent\'s own traffic and other sources still get in', async () => {
  const FLOOD = '127.0.0.10';
  const held: Socket[] = [];
  let refused = 0;
  const tlsDenials = () => agent.api('/metrics').then((r) => r.text()).then((t) => Number(/nodemesh_proxy_denied_total\{[^}]*destination="api",reason="tls_handshake"\} (\d+)/.exec(t)?.[1] ?? 0));
  const tlsBefore = await tlsDenials();
  // 64 connections that never say a word stay (each until its handshake timeout); the rest are closed at once.
  for (let i = 0; i < 80; i++) {
    const s = connect({ host: BIND, port: apiPublicPort, localAddress: FLOOD });
    s.on('error', () => undefined);
    s.on('close', () => { refused++; });
    held.push(s);
    await new Promise((r) => s.once('connect', r));
  }
  await waitFor(() => assert.equal(refused, 16));
  assert.equal(await tlsDenials(), tlsBefore, 'a refused connection is not counted again as a failed handshake');
  assert.equal((await roundTrip(WEB, upstreamApi, 'during the flood')).reply.toString(), 'during the flood');
  assert.match(await (await agent.api('/metrics')).text(), /nodemesh_proxy_denied_total\{[^}]*reason="pending_per_source"[^}]*\} 16/);
  for (const s of held) s.destroy();
  await waitFor(() => assert.deepEqual(agent.dataPlane.sourceLimits.of(FLOOD), { pending: 0, open: 0 }, 'every refused, abandoned and closed connection is accounted for'));
  // Once they are gone, the address is welcome again.
  await waitFor(async () => {
    const s = connect({ host: BIND, port: apiPublicPort, localAddress: FLOOD });
    s.on('error', () => undefined);
    const closedSoon = await new Promise<boolean>((resolve) => {
      s.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 200);
    });
    s.destroy();
    assert.equal(closedSoon, false);
  });
});

test('an instance presenting another service\'s certificate is refused (impostor)', async () => {
  const evil = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/evil`, commonName: 'evil', ttlMs: 3_600_000 });
  let decrypted = 0;
  const impostor = tlsCreateServer({ key: evil.keyPem, cert: evil.certPem, ca: caCert, requestCert: true }, (s) => {
    s.on('data', (c: Buffer) => { decrypted += c.length; });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => impostor.listen(0, IMPOSTOR, r));
  const port = (impostor.address() as { port: number }).port;
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'secret-proxy', Kind: 'connect-proxy', Address: IMPOSTOR, Port: port, Proxy: { DestinationServiceName: 'secret' } }));
  assert.equal(r.status, 200);
  try {
    await waitFor(async () => assert.equal((await (await agent.api('/v1/health/connect/secret?passing')).json() as unknown[]).length, 1));
    const got = await roundTrip(WEB, secretPort, 'my secret');
    assert.equal(got.reply.length, 0);
    await sleep(100);
    assert.equal(decrypted, 0, 'the impostor must not receive the payload');
  } finally {
    await agent.api('/v1/agent/service/deregister/secret-proxy', put());
    await new Promise((res) => impostor.close(res));
  }
});

test('rotating both leaves in the middle of a transfer drops nothing; new connections use the new leaves', async () => {
  const payload = randomBytes(8 * 1024 * 1024);
  const want = createHash('sha256').update(payload).digest('hex');
  const before = { web: agent.leaves.current('web')?.SerialNumber, api: agent.leaves.current('api')?.SerialNumber };
  const result = await new Promise<string>((resolve, reject) => {
    const hash = createHash('sha256');
    let received = 0;
    const s = connect({ host: '127.0.0.1', port: upstreamApi, localAddress: WEB, allowHalfOpen: true });
    s.on('data', (c: Buffer) => { hash.update(c); received += c.length; });
    s.on('end', () => resolve(hash.digest('hex')));
    s.on('error', reject);
    s.once('connect', async () => {
      const chunk = 64 * 1024;
      for (let off = 0; off < payload.length; off += chunk) {
        if (!s.write(payload.subarray(off, off + chunk))) await new Promise((r) => s.once('drain', r));
        if (off === 2 * 1024 * 1024) {
          await Promise.all([agent.leaves.sign('web'), agent.leaves.sign('api')]);
        }
      }
      s.end();
    });
    void received;
  });
  assert.equal(result, want);
  assert.notEqual(agent.leaves.current('web')?.SerialNumber, before.web);
  assert.notEqual(agent.leaves.current('api')?.SerialNumber, before.api);
  assert.equal((await roundTrip(WEB, upstreamApi, 'after rotation')).reply.toString(), 'after rotation');
});

test('listeners follow the catalog: deregistering closes the upstream listener, registering opens it', async () => {
  const port = await freePort('127.0.0.1');
  await agent.api('/v1/agent/service/register', put({ Name: 'late', Address: '127.0.0.6', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: port }] } } } }));
  await waitFor(() => assert.ok(agent.dataPlane.listeners().outbound.includes(`127.0.0.1:${port}`), `upstream listener not open: ${JSON.stringify(agent.dataPlane.listeners())}`));
  const first = await roundTrip('127.0.0.6', port, 'new listener');
  assert.equal(first.reply.toString(), 'new listener', `round trip through the new listener failed: ${first.error ?? 'closed without a reply'}`);
  await agent.api('/v1/agent/service/deregister/late', put());
  await waitFor(() => assert.ok(!agent.dataPlane.listeners().outbound.includes(`127.0.0.1:${port}`), `upstream listener still open: ${JSON.stringify(agent.dataPlane.listeners())}`));
  const refused = await roundTrip('127.0.0.6', port, 'x');
  assert.ok(refused.error?.includes('ECONNREFUSED'), `expected ECONNREFUSED, got ${refused.error ?? `a reply of ${refused.reply.length} bytes`}`);
});

test('data-plane metrics: connections, denials by reason, bytes, handshake time, leaf expiry', async () => {
  await roundTrip(WEB, upstreamApi, 'count me');
  const text = await (await agent.api('/metrics')).text();
  assert.match(text, /^nodemesh_proxy_connections_total\{direction="outbound",source="web",destination="api"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_connections_total\{direction="inbound",source="web",destination="api"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_denied_total\{direction="inbound",source="web",destination="api",reason="intention"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_denied_total\{direction="inbound",source="web",destination="api",reason="revoked"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_denied_total\{direction="outbound",source="unknown",destination="api",reason="attribution"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_bytes_total\{direction="outbound",source="web",destination="api",flow="tx"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_proxy_handshake_seconds_count\{source="web",destination="api"\} [1-9]\d*$/m);
  assert.match(text, /^nodemesh_leaf_cert_expiry_seconds\{service="web"\} \d+/m);
});

test('old TLS versions and non-AEAD suites are refused on the public listener', async () => {
  const good = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
  const attempt = (extra: Record<string, unknown>) => new Promise<string>((resolve) => {
    const s = tlsConnect({ host: BIND, port: apiPublicPort, ca: caCert, key: good.keyPem, cert: good.certPem, checkServerIdentity: () => undefined, ...extra }, () => {
      resolve(`connected ${s.getProtocol()} ${s.getCipher().name}`);
      s.destroy();
    });
    s.on('error', (e) => resolve(`refused: ${e.message}`));
  });
  assert.match(await attempt({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }), /^refused/);
  assert.match(await attempt({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256' }), /^refused/, 'CBC suite');
  assert.match(await attempt({ maxVersion: 'TLSv1.2' }), /^connected TLSv1\.2 ECDHE-ECDSA-AES(128|256)-GCM-SHA(256|384)$/);
  assert.match(await attempt({}), /^connected TLSv1\.3 /);
});

test('a dead instance is skipped: the dial times out and the next instance serves the connection', async () => {
  // A listener that accepts TCP and never answers the TLS handshake.
  const hung = createServer(() => undefined);
  await new Promise<void>((r) => hung.listen(0, '127.0.0.7', r));
  const hungPort = (hung.address() as { port: number }).port;
  const port = await freePort('127.0.0.1');
  await agent.api('/v1/agent/service/register', put({ Name: 'api-hung-proxy', Kind: 'connect-proxy', Address: '127.0.0.7', Port: hungPort, Proxy: { DestinationServiceName: 'api' } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'caller', Address: '127.0.0.8', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: port, Config: { connect_timeout_ms: 300 } }] } } } }));
  try {
    await waitFor(async () => assert.equal((await (await agent.api('/v1/health/connect/api?passing')).json() as unknown[]).length, 2));
    await waitFor(() => assert.ok(agent.dataPlane.listeners().outbound.includes(`127.0.0.1:${port}`), "the caller's upstream listener is open"));
    // Round robin puts the hung instance first for some of these; every one must still get through.
    for (let i = 0; i < 4; i++) assert.equal((await roundTrip('127.0.0.8', port, `try ${i}`)).reply.toString(), `try ${i}`);
  } finally {
    await agent.api('/v1/agent/service/deregister/caller', put());
    await agent.api('/v1/agent/service/deregister/api-hung-proxy', put());
    hung.close();
  }
});

test('a second trusted root cannot mint identities in the first root\'s trust domain; percent-encoded names pass for nothing', async () => {
  const other = await CertificateAuthority.createRoot();
  const otherKey = (await importPrivateKey(other.keyPem)).key;
  const rootsFile = join(caDir, 'extra-roots.pem');
  writeFileSync(rootsFile, other.certPem);
  const { defaultConfig } = await import('../config/agent-config.js');
  const base = { ...defaultConfig(), dev: true, node: 'node-1', bind: BIND, caFile: join(caDir, 'ca.pem'), caKeyFile: join(caDir, 'ca-key.pem') };
  await agent.reload({ ...base, caTrustedRootsFile: rootsFile });
  try {
    const forged = await signLeaf({ issuerCertPem: other.certPem, issuerKey: otherKey, spiffeId: `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
    const own = await signLeaf({ issuerCertPem: other.certPem, issuerKey: otherKey, spiffeId: `spiffe://${other.trustDomain}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
    const bytes = api.bytes;
    assert.equal(await directTls({ key: forged.keyPem, cert: forged.certPem }), '', 'foreign root, our trust domain: refused');
    assert.equal(api.bytes, bytes);
    assert.equal(await directTls({ key: own.keyPem, cert: own.certPem }), 'probe', 'foreign root, its own trust domain: accepted (it is trusted)');
  } finally {
    await agent.reload(base);
  }
  const encoded = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/%77eb`, commonName: 'x', ttlMs: 3_600_000 });
  assert.equal(await directTls({ key: encoded.keyPem, cert: encoded.certPem }), '', '%77eb is not web');
  const r = await agent.api('/v1/agent/connect/ca/leaf/%2577eb');
  assert.equal(r.status, 400);
  assert.match(await r.text(), /letters, digits/);
});
