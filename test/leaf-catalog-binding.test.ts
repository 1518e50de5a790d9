// Leaves bound to the catalog: a leaf signed by a node's intermediate speaks only for services that node hosts, and is revoked when they go.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as tlsCreateServer, type TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { nodeAuthorityUri } from '../identity/authority-ids.js';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { createIntermediate, importPrivateKey, signLeaf } from '../identity/ca/x509-certs.js';
import { IdentityBinding } from '../identity/identity-binding.js';
import { ServiceTls } from '../identity/tls-identity.js';
import { TUNNEL_ALPN } from '../dataplane/tunnel/tunnel-frames.js';
import { TunnelSession, type TunnelStream } from '../dataplane/tunnel/tunnel-session.js';
import type { LeafSource, TrustSource } from '../identity/trust-sources.js';
import { Catalog } from '../catalog/catalog-store.js';
import { ChangeFeed } from '../lib/change-feed.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip, type App } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

const A = '127.0.16.1'; // node-a: the node an attacker holds
const B = '127.0.16.2'; // node-b: payments and api live here
const WEB = '127.0.16.11';
const PAYMENTS_APP = '127.0.16.21';
const API_APP = '127.0.16.22';
const FAKE_SERVER = '127.0.16.31';
const GRACE_MS = 1000;

interface Inter { certPem: string; keyPem: string; key: CryptoKey; caFile: string; caKeyFile: string }

let root: { certPem: string; keyPem: string; trustDomain: string };
let rootKey: CryptoKey;
const inters: Record<string, Inter> = {};
let a: TestAgent;
let b: TestAgent;
let payments: App;
let api: App;
let paymentsPort: number;

const json = async (x: TestAgent, path: string) => (await x.api(path)).json() as Promise<any>;
const svcUri = (service: string) => `spiffe://${root.trustDomain}/ns/default/dc/dc1/svc/${service}`;

/** A leaf for `service`, signed by `issuer` (node-a's intermediate key, say): what a compromised node can mint. */
async function mint(service: string, issuer: { certPem: string; key: CryptoKey }) {
  const leaf = await signLeaf({ issuerCertPem: issuer.certPem, issuerKey: issuer.key, spiffeId: svcUri(service), commonName: service, ttlMs: 3_600_000 });
  return { key: leaf.keyPem, cert: leaf.certPem + (issuer.certPem === root.certPem ? '' : issuer.certPem) };
}

async function intermediate(dir: string, node: string, uri?: string): Promise<Inter> {
  const inter = await createIntermediate({ issuerCertPem: root.certPem, issuerKey: rootKey, trustDomain: root.trustDomain, uri });
  const caFile = join(dir, `${node}-ca.pem`);
  const caKeyFile = join(dir, `${node}-ca-key.pem`);
  writeFileSync(caFile, inter.certPem + root.certPem);
  writeFileSync(caKeyFile, inter.keyPem, { mode: 0o600 });
  return { ...inter, key: (await importPrivateKey(inter.keyPem)).key, caFile, caKeyFile };
}

/** One mTLS connection to a public listener presenting `creds`; `say` writes and resolves with the echo. */
async function openTls(port: number, creds: { key: string; cert: string }) {
  const s: TLSSocket = tlsConnect({ host: B, port, ca: root.certPem, checkServerIdentity: () => undefined, ...creds });
  let closed = false;
  s.on('close', () => { closed = true; });
  s.on('error', () => undefined);
  await new Promise((r) => { s.once('secureConnect', r); s.once('close', r); });
  const say = (text: string) => new Promise<string>((resolve) => {
    let got = '';
    const on = (c: Buffer) => { got += c; if (got.length >= text.length) { s.off('data', on); resolve(got); } };
    s.on('data', on);
    s.once('close', () => resolve(got));
    s.write(text);
  });
  return { s, say, closed: () => closed };
}

/** Writes once on a fresh connection and resolves with whatever comes back before it closes ('' when refused). */
async function probe(port: number, creds: { key: string; cert: string }): Promise<string> {
  const c = await openTls(port, creds);
  if (c.closed()) return '';
  const reply = await c.say('probe');
  c.s.destroy();
  return reply;
}

/** A tunnel to a public listener presenting `creds`, and one stream on it. */
async function openTunnelStream(port: number, creds: { key: string; cert: string }) {
  const s: TLSSocket = tlsConnect({ host: B, port, ca: root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [TUNNEL_ALPN], ...creds });
  s.on('error', () => undefined);
  await new Promise((r) => s.once('secureConnect', r));
  assert.equal(s.alpnProtocol, TUNNEL_ALPN);
  const session = new TunnelSession(s, 'client');
  const stream: TunnelStream = session.open();
  let closed = false;
  stream.on('close', () => { closed = true; });
  await stream.acknowledged();
  const say = (text: string) => new Promise<string>((resolve) => {
    let got = '';
    const on = (c: Buffer) => { got += c; if (got.length >= text.length) { stream.off('data', on); resolve(got); } };
    stream.on('data', on);
    stream.write(text);
  });
  return { session, stream, say, closed: () => closed };
}

const deniedUnbound = async (x: TestAgent, destination: string) => {
  const text = await (await x.api('/metrics')).text();
  let n = 0;
  for (const m of text.matchAll(/^nodemesh_proxy_denied_total\{([^}]*)\} (\d+)/gm)) {
    if (m[1].includes(`destination="${destination}"`) && m[1].includes('reason="identity_unbound"')) n += Number(m[2]);
  }
  return n;
};

before(async () => {
  const dir = tempDir();
  root = await CertificateAuthority.createRoot();
  rootKey = (await importPrivateKey(root.keyPem)).key;
  for (const node of ['bind-a', 'bind-b']) inters[node] = await intermediate(dir, node, nodeAuthorityUri(root.trustDomain, node));
  payments = await echoApp(PAYMENTS_APP);
  api = await echoApp(API_APP);
  const common = { defaultIntentionPolicy: 'allow' as const, identityGraceMs: GRACE_MS };
  b = await startTestAgent({ node: 'bind-b', bind: B, serfLanPort: await freePort(B), caFile: inters['bind-b'].caFile, caKeyFile: inters['bind-b'].caKeyFile, ...common });
  a = await startTestAgent({ node: 'bind-a', bind: A, join: [`${B}:${b.gossip.port}`], caFile: inters['bind-a'].caFile, caKeyFile: inters['bind-a'].caKeyFile, ...common });
  const r = await b.api('/v1/agent/service/register', put({ Name: 'payments', Address: PAYMENTS_APP, Port: payments.port, Connect: { SidecarService: {} } }));
  assert.equal(r.status, 200, await r.text());
  paymentsPort = (await json(b, '/v1/agent/services'))['payments-sidecar-proxy'].Port;
  await waitFor(async () => assert.equal((await json(b, '/v1/health/connect/payments?passing')).length, 1), 15_000);
  // Both agents see both nodes: each node's entry came over gossip, signed by its own intermediate.
  await waitFor(async () => {
    for (const x of [a, b]) assert.deepEqual((await json(x, '/v1/catalog/nodes')).map((n: any) => n.Node), ['bind-a', 'bind-b']);
    assert.deepEqual((await json(a, '/v1/catalog/service/payments')).map((s: any) => s.Node), ['bind-b']);
  }, 20_000);
});

after(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  payments?.server.close();
  api?.server.close();
});

test('(a) the attack: a leaf for web signed with node-a\'s intermediate, node-a running no web, is refused by payments on node-b; nothing reaches the app', async () => {
  assert.deepEqual(await json(b, '/v1/catalog/service/web'), [], 'no web anywhere');
  const forged = await mint('web', inters['bind-a']);
  const bytes = payments.bytes;
  const conns = payments.connections;
  const refusals = await deniedUnbound(b, 'payments');
  assert.equal(await probe(paymentsPort, forged), '', 'plain mTLS connection refused');
  // The tunnel path too: the whole tunnel is refused before any stream.
  const s: TLSSocket = tlsConnect({ host: B, port: paymentsPort, ca: root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [TUNNEL_ALPN], ...forged });
  s.on('error', () => undefined);
  const session = new TunnelSession(s, 'client');
  let acked = false;
  if (await new Promise<boolean>((r) => { s.once('secureConnect', () => r(true)); s.once('close', () => r(false)); })) {
    try {
      await session.open().acknowledged();
      acked = true;
    } catch {
      acked = false; // refused: the tunnel closed before its first stream was taken
    }
  }
  assert.equal(acked, false, 'tunnel stream refused');
  session.close();
  assert.equal(payments.bytes, bytes, 'no byte reached payments');
  assert.equal(payments.connections, conns, 'no connection reached payments');
  await waitFor(async () => assert.equal(await deniedUnbound(b, 'payments'), refusals + 2, 'counted as identity_unbound'));
  // The control: a leaf of the same name signed by the root itself (a root-key holder) is accepted, as before.
  assert.equal(await probe(paymentsPort, await mint('web', { certPem: root.certPem, key: rootKey })), 'probe');
});

test('(c) a leaf signed by node-a\'s intermediate for a service registered only on node-b is refused', async () => {
  assert.deepEqual((await json(b, '/v1/catalog/service/payments')).map((s: any) => s.Node), ['bind-b']);
  const bytes = payments.bytes;
  assert.equal(await probe(paymentsPort, await mint('payments', inters['bind-a'])), '');
  assert.equal(payments.bytes, bytes);
  // node-b's own intermediate may speak for payments (case-insensitively: the name folds).
  assert.equal(await probe(paymentsPort, await mint('Payments', inters['bind-b'])), 'probe');
});

test('an intermediate that names no node is refused, whatever the catalog says', async () => {
  const unnamed = await intermediate(tempDir(), 'unnamed');
  const bytes = payments.bytes;
  assert.equal(await probe(paymentsPort, await mint('payments', unnamed)), '');
  assert.equal(payments.bytes, bytes);
});

test('(b) the same kind of leaf once web IS registered on node-a is accepted', async () => {
  const r = await a.api('/v1/agent/service/register', put({ Name: 'web', Address: WEB, Port: 1 }));
  assert.equal(r.status, 200, await r.text());
  await waitFor(async () => assert.deepEqual((await json(b, '/v1/catalog/service/web')).map((s: any) => s.Node), ['bind-a']), 15_000);
  const leaf = await mint('web', inters['bind-a']);
  await waitFor(async () => assert.equal(await probe(paymentsPort, leaf), 'probe'), 5000);
  // …and still not one of node-b's intermediate: web is on node-a only.
  assert.equal(await probe(paymentsPort, await mint('web', inters['bind-b'])), '');
});

test('(e) legitimate cross-node traffic through sidecars: web on node-a reaches api on node-b through its upstream', async () => {
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: API_APP, Port: api.port, Connect: { SidecarService: {} } }));
  const up = await freePort('127.0.0.1');
  const r = await a.api('/v1/agent/service/register', put({ Name: 'web', Address: WEB, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up }] } } } }));
  assert.equal(r.status, 200, await r.text());
  await waitFor(async () => assert.equal((await json(a, '/v1/health/connect/api?passing')).length, 1), 15_000);
  await waitFor(async () => assert.equal((await roundTrip(WEB, up, 'across nodes')).reply.toString(), 'across nodes'), 15_000);
  assert.ok(api.connections > 0);
});

test('(d) a leaf taken while web was on node-a: its open connection and tunnel stream close once web is deregistered and the grace passes; new ones are refused', async () => {
  if ((await json(a, '/v1/agent/services')).web === undefined) {
    await a.api('/v1/agent/service/register', put({ Name: 'web', Address: WEB, Port: 1 }));
  }
  await waitFor(async () => assert.equal((await json(b, '/v1/catalog/service/web')).length, 1), 15_000);
  const leafRes = await a.api('/v1/agent/connect/ca/leaf/web');
  assert.equal(leafRes.status, 200);
  const leaf = await leafRes.json() as { CertPEM: string; PrivateKeyPEM: string };
  const creds = { key: leaf.PrivateKeyPEM, cert: leaf.CertPEM };
  const conn = await openTls(paymentsPort, creds);
  assert.equal(await conn.say('ping'), 'ping', 'the leaf works while web is on node-a');
  const tunnel = await openTunnelStream(paymentsPort, creds);
  assert.equal(await tunnel.say('tunnelled'), 'tunnelled');
  const refusals = await deniedUnbound(b, 'payments');

  const r = await a.api('/v1/agent/service/deregister/web', put());
  assert.equal(r.status, 200);
  await waitFor(async () => assert.deepEqual(await json(b, '/v1/catalog/service/web'), []), 15_000);
  await waitFor(() => {
    assert.ok(conn.closed(), 'open connection revoked');
    assert.ok(tunnel.closed(), 'open tunnel stream revoked');
  }, 15_000);
  assert.ok(await deniedUnbound(b, 'payments') >= refusals + 2, 'revocations counted as identity_unbound');
  const bytes = payments.bytes;
  assert.equal(await probe(paymentsPort, creds), '', 'a new connection with the leaf is refused');
  assert.equal(payments.bytes, bytes);
});

// ---- the outbound side, on one ServiceTls: the server's leaf must be bound too ----

test('outbound: a server leaf for api signed by node X\'s intermediate is accepted only while the catalog lists api on X', async () => {
  const catalog = new Catalog();
  const trust: TrustSource = { feed: new ChangeFeed(), index: 1, trustDomain: root.trustDomain, pems: () => [root.certPem], rootsView: () => { throw new Error('unused'); } };
  const binding = new IdentityBinding(catalog, trust, { graceMs: GRACE_MS });
  const tls = new ServiceTls(trust, {} as LeafSource, binding);
  const node = (name: string) => catalog.upsertNode({ ID: name, Node: name, Address: '127.0.16.99', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} });
  node('bind-a');
  node('bind-b');
  const server = await mint('api', inters['bind-a']);
  const srv = tlsCreateServer({ key: server.key, cert: server.cert }, (s) => s.end('hi'));
  await new Promise<void>((r) => srv.listen(0, FAKE_SERVER, r));
  const port = (srv.address() as { port: number }).port;
  const dial = () => new Promise<string>((resolve) => {
    const s = tlsConnect({ host: FAKE_SERVER, port, ca: root.certPem, checkServerIdentity: tls.serverCheck('api', 'web') });
    s.once('secureConnect', () => { s.destroy(); resolve('ok'); });
    s.once('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
  try {
    catalog.mutate('bind-b', (tx) => tx.putService({ ID: 'api', Service: 'api', Tags: [], Meta: {}, Port: 1, Address: '', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false }));
    assert.equal(await dial(), 'IDENTITY_UNBOUND', 'api is on bind-b, not on bind-a whose intermediate signed the server leaf');
    // A sidecar on bind-a for API (any case) makes bind-a a host of api.
    catalog.mutate('bind-a', (tx) => tx.putService({
      Kind: 'connect-proxy', ID: 'api-sidecar-proxy', Service: 'api-sidecar-proxy', Tags: [], Meta: {}, Port: 2, Address: '',
      Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false, Proxy: { DestinationServiceName: 'API' },
    }));
    assert.equal(await dial(), 'ok');
    assert.equal(binding.holds({ node: 'BIND-A', service: 'api' }), true, 'node names fold too');
  } finally {
    binding.close();
    srv.close();
  }
});

test('binding: a service that leaves a node stays good for the grace, then not; coming back within it keeps it', () => {
  let now = 1_000_000;
  const catalog = new Catalog();
  const trust: TrustSource = { feed: new ChangeFeed(), index: 1, trustDomain: 'td', pems: () => [], rootsView: () => { throw new Error('unused'); } };
  catalog.upsertNode({ ID: 'n1', Node: 'n1', Address: '127.0.16.98', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} });
  const binding = new IdentityBinding(catalog, trust, { graceMs: 1000, now: () => now });
  const svc = { ID: 'web', Service: 'web', Tags: [], Meta: {}, Port: 1, Address: '', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false };
  const web = { node: 'n1', service: 'web' };
  try {
    assert.equal(binding.holds(web), false, 'nothing registered yet: no grace either');
    catalog.mutate('n1', (tx) => tx.putService(svc));
    assert.equal(binding.holds(web), true);
    catalog.mutate('n1', (tx) => tx.deleteService('web'));
    assert.equal(binding.holds(web), true, 'just left'); // (the agent looks at every catalog change within a tick)
    now += 999;
    assert.equal(binding.holds(web), true, 'within the grace');
    now += 1;
    assert.equal(binding.holds(web), false, 'grace over');
    catalog.mutate('n1', (tx) => tx.putService(svc));
    assert.equal(binding.holds(web), true);
    catalog.mutate('n1', (tx) => tx.deleteService('web'));
    assert.equal(binding.holds(web), true, 'just left');
    now += 500;
    catalog.mutate('n1', (tx) => tx.putService(svc));
    assert.equal(binding.holds(web), true);
    now += 5000;
    assert.equal(binding.holds(web), true, 'back within the grace: never lapsed');
    catalog.removeNode('n1');
    assert.equal(binding.holds(web), true, 'the node left: grace starts');
    now += 1000;
    assert.equal(binding.holds(web), false, 'the node left and the grace passed');
  } finally {
    binding.close();
  }
});
