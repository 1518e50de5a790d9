// Names compare case-insensitively (intentions, catalog, data plane) and only canonical SPIFFE identities from real leaves are accepted.

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { Catalog } from '../catalog/catalog-store.js';
import type { ServiceRecord } from '../model/catalog-types.js';
import { generateKeyPair, importPrivateKey, privateKeyPem, signLeaf } from '../identity/ca/x509-certs.js';
import type { LeafSource, TrustSource } from '../identity/trust-sources.js';
import { isSpiffeSafe, parseServiceId } from '../identity/spiffe/spiffe-id.js';
import { ServiceTls } from '../identity/tls-identity.js';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { poolCredentials } from './helpers/pool-credentials.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip, type App } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

// Loopback addresses of this file's own: the agent's public listeners, and each workload.
const BIND = '127.0.31.1';
const API = '127.0.31.3';
const CALLER = '127.0.31.4';

let agent: TestAgent;
let app: App;
let caCert: string;
let caKey: CryptoKey;
let apiPublicPort: number;

before(async () => {
  // The test holds the CA key (ca_file/ca_key_file) so it can mint leaves the agent's CA never would.
  const { root } = await poolCredentials([]);
  caCert = root.certPem;
  caKey = (await importPrivateKey(root.keyPem)).key;
  // Allow by default: whatever is refused below is refused by an intention or by the identity checks, not by default.
  agent = await startTestAgent({ bind: BIND, caFile: root.caFile, caKeyFile: root.caKeyFile, defaultIntentionPolicy: 'allow' });
  app = await echoApp(API);
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'api', Address: API, Port: app.port, Connect: { SidecarService: {} } }));
  assert.equal(r.status, 200, await r.text());
  const r2 = await agent.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.31.2', Port: 1 }));
  assert.equal(r2.status, 200, await r2.text());
  const services = await (await agent.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  apiPublicPort = services['api-sidecar-proxy'].Port;
  await waitFor(async () => assert.equal((await (await agent.api('/v1/health/connect/api?passing')).json() as unknown[]).length, 1));
});

after(async () => {
  await agent.stop();
  await new Promise((r) => app.server.close(r));
});

const post = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body) });
const call = async (path: string, init?: RequestInit) => {
  const r = await agent.api(path, init);
  return { status: r.status, text: await r.text() };
};

// ---- (a) intentions and the catalog through the real API ----

test('intentions differing only in case are one pair: 409 duplicate on create and on update; the check folds case', async () => {
  const deny = await call('/v1/connect/intentions', post({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }));
  assert.equal(deny.status, 200, deny.text);
  const { ID } = JSON.parse(deny.text) as { ID: string };
  try {
    const dup = await call('/v1/connect/intentions', post({ SourceName: 'WEB', DestinationName: 'Api', Action: 'allow' }));
    assert.equal(dup.status, 409, dup.text);
    assert.match(dup.text, /^duplicate intention found: DENY default\/web => default\/api/);

    // Updating another intention into the same pair (in another case) is a duplicate too.
    const other = await call('/v1/connect/intentions', post({ SourceName: 'db', DestinationName: 'api', Action: 'allow' }));
    assert.equal(other.status, 200, other.text);
    const otherId = (JSON.parse(other.text) as { ID: string }).ID;
    const moved = await call(`/v1/connect/intentions/${otherId}`, { method: 'PUT', body: JSON.stringify({ SourceName: 'wEb', DestinationName: 'API', Action: 'allow' }) });
    assert.equal(moved.status, 409, moved.text);
    assert.match(moved.text, /duplicate intention found/);
    await call(`/v1/connect/intentions/${otherId}`, { method: 'DELETE' });

    // The stored names keep the case they were written in; an intention may change its own case.
    const recased = await call(`/v1/connect/intentions/${ID}`, { method: 'PUT', body: JSON.stringify({ SourceName: 'Web', DestinationName: 'api', Action: 'deny' }) });
    assert.equal(recased.status, 200, recased.text);
    assert.equal((JSON.parse((await call(`/v1/connect/intentions/${ID}`)).text) as { SourceName: string }).SourceName, 'Web');

    // With a default of allow, only the deny intention can make this false.
    assert.deepEqual(JSON.parse((await call('/v1/connect/intentions/check?source=Web&destination=API')).text), { Allowed: false });
    assert.deepEqual(JSON.parse((await call('/v1/connect/intentions/check?source=WEB&destination=api')).text), { Allowed: false });
    const match = JSON.parse((await call('/v1/connect/intentions/match?by=destination&name=API')).text) as Record<string, { ID: string }[]>;
    assert.deepEqual(match.API.map((i) => i.ID), [ID]);
    assert.equal(agent.intentions.findExact('WEB', 'Api')?.ID, ID);

    const authz = JSON.parse((await call('/v1/agent/connect/authorize', post({ Target: 'API', ClientCertURI: `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/WEB` }))).text) as { Authorized: boolean; Reason: string };
    assert.equal(authz.Authorized, false);
    assert.match(authz.Reason, /^Matched intention: DENY default\/Web => default\/api/);
  } finally {
    await call(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  }
});

test('a name that cannot be a service name is refused with 400 and says which character', async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ SourceName: 'p\u0430yments', DestinationName: 'api' }, /SourceName: "p\\u0430yments" is not a valid service name \(character U\+0430 at offset 1 is not allowed\): use only ASCII letters, digits, '\.', '_' and '-', or '\*' alone/],
    [{ SourceName: 'web', DestinationName: '\uff57\uff45\uff42' }, /DestinationName: "\\uFF57\\uFF45\\uFF42" is not a valid service name \(character U\+FF57 at offset 0/],
    [{ SourceName: 'we\u200bb', DestinationName: 'api' }, /SourceName: "we\\u200Bb" is not a valid service name \(character U\+200B at offset 2/],
    [{ SourceName: 'web', DestinationName: 'api', SourceNS: 'def\u0430ult' }, /SourceNS: "def\\u0430ult" is not a valid namespace/],
    [{ SourceName: 'web', DestinationName: 'a:pi' }, /DestinationName: "a:pi" is not a valid service name \(character ':' \(U\+003A\) at offset 1/],
    [{ SourceName: '..', DestinationName: 'api' }, /SourceName: "\.\." is not a valid service name/],
    // Kelvin sign: Unicode lower-casing would make it 'k'; it is refused, not folded.
    [{ SourceName: '\u212Aafka', DestinationName: 'api' }, /character U\+212A at offset 0/],
  ];
  const before = (await call('/v1/connect/intentions')).text;
  for (const [names, want] of cases) {
    const r = await call('/v1/connect/intentions', post({ ...names, Action: 'allow' }));
    assert.equal(r.status, 400, `${JSON.stringify(names)}: ${r.text}`);
    assert.match(r.text, want);
  }
  assert.equal((await call('/v1/connect/intentions')).text, before, 'nothing was stored');
  // '*' alone is still a name pattern.
  const star = await call('/v1/connect/intentions', post({ SourceName: '*', DestinationName: 'nothing-here', Action: 'deny' }));
  assert.equal(star.status, 200, star.text);
  await call(`/v1/connect/intentions/${(JSON.parse(star.text) as { ID: string }).ID}`, { method: 'DELETE' });
});

test('catalog and health lookups find a service by its name in any case', async () => {
  const catalog = JSON.parse((await call('/v1/catalog/service/WEB')).text) as { ServiceName: string }[];
  assert.deepEqual(catalog.map((s) => s.ServiceName), ['web']);
  const health = JSON.parse((await call('/v1/health/service/Web')).text) as { Service: { Service: string } }[];
  assert.deepEqual(health.map((e) => e.Service.Service), ['web']);
  const connect = JSON.parse((await call('/v1/health/connect/API')).text) as { Service: { Service: string } }[];
  assert.deepEqual(connect.map((e) => e.Service.Service), ['api-sidecar-proxy']);
  const catConnect = JSON.parse((await call('/v1/catalog/connect/aPi')).text) as { ServiceName: string }[];
  assert.deepEqual(catConnect.map((s) => s.ServiceName), ['api-sidecar-proxy']);
  // A look-alike is another name: nothing.
  assert.deepEqual(JSON.parse((await call(`/v1/catalog/service/${encodeURIComponent('w\u0435b')}`)).text), []);
});

test('an upstream written in another case reaches the service\'s instances', async () => {
  const port = await freePort('127.0.0.1');
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'caller', Address: CALLER, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'API', LocalBindPort: port }] } } } }));
  assert.equal(r.status, 200, await r.text());
  try {
    await waitFor(() => assert.ok(agent.dataPlane.listeners().outbound.includes(`127.0.0.1:${port}`), `upstream listener 127.0.0.1:${port} not open yet`));
    await waitFor(async () => assert.equal((await roundTrip(CALLER, port, 'case-blind')).reply.toString(), 'case-blind'));
  } finally {
    await agent.api('/v1/agent/service/deregister/caller', put());
  }
});

test('the catalog\'s name index follows every kind of change: register, rename, deregister, remote snapshot, node removal', () => {
  const catalog = new Catalog();
  const info = (Node: string) => ({ ID: '', Node, Address: '127.0.31.9', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} });
  const svc = (ID: string, Service: string, extra: Partial<ServiceRecord> = {}) => ({
    ID, Service, Tags: [], Meta: {}, Port: 1, Address: '', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false, ...extra,
  });
  const ids = (list: { service: ServiceRecord }[]) => list.map((e) => e.service.ID);
  catalog.upsertNode(info('n1'));
  catalog.mutate('n1', (tx) => {
    tx.putService(svc('web-1', 'Web', { Tags: ['v1'] }));
    tx.putService(svc('web-1-proxy', 'web-1-proxy', { Kind: 'connect-proxy', Proxy: { DestinationServiceName: 'WEB' } }));
    tx.putService(svc('pay', 'PAY', { Connect: { Native: true } }));
  });
  assert.deepEqual(ids(catalog.serviceNodes('web')), ['web-1']);
  assert.deepEqual(ids(catalog.serviceNodes('WEB', ['v1'])), ['web-1']);
  assert.deepEqual(ids(catalog.serviceNodes('wEb', ['v2'])), []);
  assert.deepEqual(ids(catalog.connectNodes('web')), ['web-1-proxy']);
  assert.deepEqual(ids(catalog.connectNodes('pay')), ['pay']);
  // Renamed in place: found under the new name only.
  catalog.mutate('n1', (tx) => { tx.putService(svc('web-1', 'api')); });
  assert.deepEqual(ids(catalog.serviceNodes('web')), []);
  assert.deepEqual(ids(catalog.serviceNodes('API')), ['web-1']);
  catalog.mutate('n1', (tx) => { tx.deleteService('web-1-proxy'); });
  assert.deepEqual(ids(catalog.connectNodes('web')), []);
  // A peer's snapshot replaces that node's records wholesale.
  catalog.applyRemote({ info: info('n2'), version: 1, createIndex: 0, modifyIndex: 0, services: [{ ...svc('w2', 'web'), CreateIndex: 1, ModifyIndex: 1 }], checks: [] });
  assert.deepEqual(ids(catalog.serviceNodes('Web')), ['w2']);
  catalog.applyRemote({ info: info('n2'), version: 2, createIndex: 0, modifyIndex: 0, services: [{ ...svc('w3', 'WEB'), CreateIndex: 1, ModifyIndex: 1 }], checks: [] });
  assert.deepEqual(ids(catalog.serviceNodes('web')), ['w3']);
  catalog.removeNode('n2');
  assert.deepEqual(ids(catalog.serviceNodes('web')), []);
  assert.deepEqual(ids(catalog.serviceNodes('api')), ['web-1']);
});

// ---- (b) canonical SPIFFE IDs ----

test('parseServiceId takes only the canonical spelling', () => {
  const td = '11111111-2222-3333-4444-555555555555.consul';
  const good = `spiffe://${td}/ns/default/dc/dc1/svc/web`;
  assert.deepEqual(parseServiceId(good), { trustDomain: td, namespace: 'default', datacenter: 'dc1', service: 'web', uri: good });
  assert.equal(parseServiceId(`spiffe://${td}/ns/default/dc/dc1/svc/Web.v2_x-y`)?.service, 'Web.v2_x-y', 'service names keep their case');
  const refused: [string, string][] = [
    ['query', `${good}?x=1`],
    ['empty query', `${good}?`],
    ['fragment', `${good}#frag`],
    ['userinfo', `spiffe://user@${td}/ns/default/dc/dc1/svc/web`],
    ['userinfo with password', `spiffe://u:p@${td}/ns/default/dc/dc1/svc/web`],
    ['port', `spiffe://${td}:443/ns/default/dc/dc1/svc/web`],
    ['empty port', `spiffe://${td}:/ns/default/dc/dc1/svc/web`],
    ['percent-encoded service', `spiffe://${td}/ns/default/dc/dc1/svc/%77eb`],
    ['percent-encoded slash', `spiffe://${td}/ns/default/dc/dc1%2Fsvc/web`],
    ['percent-encoded trust domain', `spiffe://%31${td}/ns/default/dc/dc1/svc/web`],
    ['empty segment', `spiffe://${td}/ns//dc/dc1/svc/web`],
    ['double slash', `spiffe://${td}//ns/default/dc/dc1/svc/web`],
    ['dot segment', `spiffe://${td}/ns/default/dc/dc1/./svc/web`],
    ['dot-dot segment', `spiffe://${td}/ns/default/dc/dc1/svc/evil/../web`],
    ['service "."', `spiffe://${td}/ns/default/dc/dc1/svc/.`],
    ['service ".."', `spiffe://${td}/ns/default/dc/dc1/svc/..`],
    ['namespace ".."', `spiffe://${td}/ns/../dc/dc1/svc/web`],
    ['trailing slash', `${good}/`],
    ['upper-case trust domain', `spiffe://${td.toUpperCase()}/ns/default/dc/dc1/svc/web`],
    ['one upper-case letter in the trust domain', `spiffe://${td.replace('consul', 'Consul')}/ns/default/dc/dc1/svc/web`],
    ['upper-case scheme', `SPIFFE://${td}/ns/default/dc/dc1/svc/web`],
    ['mixed-case scheme', `Spiffe://${td}/ns/default/dc/dc1/svc/web`],
    ['other scheme', `https://${td}/ns/default/dc/dc1/svc/web`],
    ['no authority slashes', `spiffe:${td}/ns/default/dc/dc1/svc/web`],
    ['empty trust domain', 'spiffe:///ns/default/dc/dc1/svc/web'],
    ['trust domain with dot-dot', 'spiffe://a..b/ns/default/dc/dc1/svc/web'],
    ['leading space', ` ${good}`],
    ['trailing newline', `${good}\n`],
    ['backslash', `spiffe://${td}\\ns/default/dc/dc1/svc/web`],
    ['upper-case path keyword', `spiffe://${td}/NS/default/dc/dc1/svc/web`],
    ['extra segment', `spiffe://${td}/ns/default/dc/dc1/svc/web/extra`],
    ['missing segment', `spiffe://${td}/ns/default/svc/web`],
    ['agent ID', `spiffe://${td}/agent/client/dc/dc1/id/node-1`],
    ['trust domain only', `spiffe://${td}`],
    ['Cyrillic in service', `spiffe://${td}/ns/default/dc/dc1/svc/p\u0430yments`],
    ['fullwidth service', `spiffe://${td}/ns/default/dc/dc1/svc/\uff57\uff45\uff42`],
    ['zero-width in service', `spiffe://${td}/ns/default/dc/dc1/svc/we\u200bb`],
    ['too long', `spiffe://${td}/ns/default/dc/dc1/svc/${'a'.repeat(2100)}`],
    ['empty string', ''],
  ];
  for (const [what, uri] of refused) assert.equal(parseServiceId(uri), undefined, `${what}: ${JSON.stringify(uri)}`);
  assert.equal(isSpiffeSafe('..'), false, 'no leaf for a dot segment');
  assert.equal(isSpiffeSafe('web'), true);
});

// ---- (c) leaf certificates on a real public listener ----

/** A leaf like signLeaf's, but with the constraints and URI SANs the test chooses. */
async function customLeaf(opts: { ca: boolean; uris: string[] }): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const issuer = new x509.X509Certificate(caCert);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    subject: 'CN=custom-leaf',
    issuer: issuer.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(opts.ca, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement | (opts.ca ? x509.KeyUsageFlags.keyCertSign : 0), true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(opts.uris.map((value) => ({ type: 'url' as const, value }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export()),
    ],
  });
  return { certPem: `${cert.toString('pem').trimEnd()}\n`, keyPem: await privateKeyPem(keys.privateKey) };
}

/** Connects to the api's public listener with a client certificate, sends and half-closes; resolves with what the app echoed back. */
function directTls(leaf: { certPem: string; keyPem: string }): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s: TLSSocket = tlsConnect({ host: BIND, port: apiPublicPort, ca: caCert, key: leaf.keyPem, cert: leaf.certPem, checkServerIdentity: () => undefined }, () => s.end('probe'));
    s.on('data', (c) => { got += c; });
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
  });
}

/** How many inbound connections to api the agent refused for a bad client identity (its own check, after the handshake). */
async function identityDenials(): Promise<number> {
  const text = await (await agent.api('/metrics')).text();
  return Number(/^nodemesh_proxy_denied_total\{direction="inbound",source="unknown",destination="api",reason="identity"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

test('the public listener refuses a CA leaf, a leaf with two URI SANs, and non-canonical URIs; nothing reaches the app', async () => {
  const td = agent.ca.trustDomain;
  const web = `spiffe://${td}/ns/default/dc/dc1/svc/web`;
  const leaves: [string, { certPem: string; keyPem: string }][] = [
    ['a leaf with CA:TRUE', await customLeaf({ ca: true, uris: [web] })],
    ['a leaf with two URI SANs', await customLeaf({ ca: false, uris: [web, `spiffe://${td}/ns/default/dc/dc1/svc/admin`] })],
    ['a second URI SAN of another trust domain', await customLeaf({ ca: false, uris: [web, 'spiffe://elsewhere.consul/ns/default/dc/dc1/svc/web'] })],
    ['an upper-case trust domain', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td.toUpperCase()}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 })],
    ['a /./ segment', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td}/ns/default/dc/dc1/./svc/web`, commonName: 'web', ttlMs: 3_600_000 })],
    ['a /../ segment', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td}/ns/default/dc/dc1/svc/x/../web`, commonName: 'web', ttlMs: 3_600_000 })],
    ['an upper-case scheme', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `SPIFFE://${td}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 })],
    ['a port', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td}:8443/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 })],
    ['a query', await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `${web}?admin=1`, commonName: 'web', ttlMs: 3_600_000 })],
  ];
  const bytes = app.bytes;
  const conns = app.connections;
  for (const [what, leaf] of leaves) {
    const denials = await identityDenials();
    assert.equal(await directTls(leaf), '', `${what}: nothing comes back`);
    // Refused by the agent's identity check (after a handshake the chain passed), not by TLS itself.
    await waitFor(async () => assert.equal(await identityDenials(), denials + 1, `${what}: refused as a bad identity`));
  }
  assert.equal(app.bytes, bytes, 'no byte reached the app');
  assert.equal(app.connections, conns, 'no connection reached the app');
  // The control: a canonical leaf of the same CA gets through.
  const good = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: web, commonName: 'web', ttlMs: 3_600_000 });
  assert.equal(await directTls(good), 'probe');
});

test('a client identity in another case meets the intention written in lower case on the public listener', async () => {
  const td = agent.ca.trustDomain;
  const upper = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td}/ns/default/dc/dc1/svc/WEB`, commonName: 'web', ttlMs: 3_600_000 });
  assert.equal(await directTls(upper), 'probe', 'allowed by default before the intention');
  const created = await call('/v1/connect/intentions', post({ SourceName: 'web', DestinationName: 'API', Action: 'deny' }));
  assert.equal(created.status, 200, created.text);
  try {
    const bytes = app.bytes;
    await waitFor(async () => assert.equal(await directTls(upper), '', 'svc/WEB is denied by web → API'));
    assert.equal(app.bytes, bytes);
  } finally {
    await call(`/v1/connect/intentions/${(JSON.parse(created.text) as { ID: string }).ID}`, { method: 'DELETE' });
  }
});

test('the server check refuses a CA leaf and a leaf with two URI SANs, and says why', async () => {
  const td = agent.ca.trustDomain;
  const trust = { index: 1, trustDomain: td, pems: () => [caCert] } as unknown as TrustSource;
  const check = new ServiceTls(trust, {} as LeafSource).serverCheck('web');
  const peer = (pem: string) => new X509Certificate(pem).toLegacyObject() as unknown as PeerCertificate;
  const web = `spiffe://${td}/ns/default/dc/dc1/svc/web`;
  assert.match(String(check('h', peer((await customLeaf({ ca: true, uris: [web] })).certPem))), /it is a CA/);
  assert.match(String(check('h', peer((await customLeaf({ ca: false, uris: [web, web] })).certPem))), /2 URI SANs/);
  const dotted = await signLeaf({ issuerCertPem: caCert, issuerKey: caKey, spiffeId: `spiffe://${td}/ns/default/./dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
  assert.match(String(check('h', peer(dotted.certPem))), /not a canonical spiffe:/);
});
