// The Connect HTTP API: intentions endpoints, authorize, CA roots and leaves, with Consul's shapes and texts.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
before(async () => { agent = await startTestAgent({ defaultIntentionPolicy: 'deny' }); });
after(async () => { await agent.stop(); });

const post = (body: unknown): RequestInit => ({ method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
const json = async (path: string, init?: RequestInit) => {
  const r = await agent.api(path, init);
  return { status: r.status, body: await r.text(), headers: r.headers };
};

test('create, read, update, delete intentions with Consul\'s answers', async () => {
  let r = await json('/v1/connect/intentions', post({ SourceName: 'web', DestinationName: 'db', Action: 'allow', Description: 'd', Meta: { k: 'v' } }));
  assert.equal(r.status, 200);
  const { ID } = JSON.parse(r.body);
  r = await json(`/v1/connect/intentions/${ID}`);
  const got = JSON.parse(r.body);
  assert.equal(got.SourceNS, 'default');
  assert.equal(got.SourceType, 'consul');
  assert.equal(got.Precedence, 9);
  assert.equal(typeof got.Hash, 'string');
  // A client may PUT back what it GOT (read-only fields included); the whole intention is replaced.
  r = await json(`/v1/connect/intentions/${ID}`, { method: 'PUT', body: JSON.stringify({ ...got, Description: undefined, Meta: undefined, Action: 'deny' }) });
  assert.equal(r.status, 200, r.body);
  const updated = JSON.parse((await json(`/v1/connect/intentions/${ID}`)).body);
  assert.equal(updated.Action, 'deny');
  assert.equal(updated.Description, '');
  r = await json('/v1/connect/intentions', { method: 'PUT', body: '{}' });
  assert.equal(r.status, 405);
  r = await json('/v1/connect/intentions/00000000-0000-0000-0000-000000000000');
  assert.deepEqual([r.status, r.body], [404, 'Intention not found']);
  r = await json('/v1/connect/intentions/xyz');
  assert.deepEqual([r.status, r.body], [400, 'Bad request: failed intention lookup: index error: UUID must be 36 characters']);
  r = await json('/v1/connect/intentions/00000000-0000-0000-0000-000000000000', { method: 'PUT', body: JSON.stringify({ SourceName: 'a', DestinationName: 'b', Action: 'allow' }) });
  assert.deepEqual([r.status, r.body], [404, "Cannot modify non-existent intention: '00000000-0000-0000-0000-000000000000'"]);
  r = await json(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  assert.equal(r.status, 200);
  r = await json(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  assert.deepEqual([r.status, r.body], [404, `Cannot delete non-existent intention: '${ID}'`]);
});

test('bad intention bodies are 4xx with Consul\'s texts and change nothing', async () => {
  const before = (await json('/v1/connect/intentions')).body;
  const cases: [unknown, number, RegExp][] = [
    ['not json', 400, /^Request decode failed/],
    [{ SourceName: 'a', DestinationName: 'b', Action: 'allow', Bogus: 1 }, 400, /unknown field "Bogus"/],
    [{ SourceName: 'a', DestinationName: 'b', Action: 'ALLOW' }, 400, /Action must be set to 'allow' or 'deny'/],
    [{ SourceName: 'a*', DestinationName: 'b', Action: 'allow' }, 400, /wildcard character '\*' cannot be used with partial values/],
    [{ ID: '00000000-0000-0000-0000-000000000000', SourceName: 'a', DestinationName: 'b', Action: 'allow' }, 400, /^ID must be empty when creating a new intention$/],
    [{ SourceName: 'a', DestinationName: 'b', Action: 'allow', DefaultPort: 'x' }, 400, /cannot unmarshal string/],
  ];
  for (const [body, status, text] of cases) {
    const r = await json('/v1/connect/intentions', post(body));
    assert.equal(r.status, status, r.body);
    assert.match(r.body, text);
  }
  assert.equal((await json('/v1/connect/intentions')).body, before);
});

test('match, check and authorize', async () => {
  const { ID } = JSON.parse((await json('/v1/connect/intentions', post({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }))).body);
  let r = await json('/v1/connect/intentions/match?by=destination&name=api&name=other');
  const m = JSON.parse(r.body);
  assert.equal(m.api.length, 1);
  assert.deepEqual(m.other, []);
  r = await json('/v1/connect/intentions/match?name=api');
  assert.deepEqual([r.status, r.body], [400, "required query parameter 'by' not set"]);
  r = await json('/v1/connect/intentions/match?by=sideways&name=api');
  assert.deepEqual([r.status, r.body], [400, "'by' parameter must be one of 'source' or 'destination'"]);
  r = await json('/v1/connect/intentions/check?source=web&destination=api');
  assert.deepEqual(JSON.parse(r.body), { Allowed: false });
  r = await json('/v1/connect/intentions/check?source=web');
  assert.deepEqual([r.status, r.body], [400, "required query parameter 'destination' not set"]);
  r = await json('/v1/connect/intentions/check?source=web&destination=api&source-type=bogus');
  assert.deepEqual([r.status, r.body], [400, 'unsupported SourceType: "bogus"']);

  const td = agent.ca.trustDomain;
  r = await json('/v1/agent/connect/authorize', post({ Target: 'api', ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/web` }));
  assert.deepEqual(JSON.parse(r.body), { Authorized: false, Reason: `Matched intention: DENY default/web => default/api (ID: ${ID}, Precedence: 9)` });
  r = await json('/v1/agent/connect/authorize', post({ Target: 'api', ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/cache` }));
  assert.deepEqual(JSON.parse(r.body), { Authorized: false, Reason: 'Default behavior configured by default_intention_policy (deny)' });
  for (const [body, text] of [
    [{ ClientCertURI: 'spiffe://x/ns/default/dc/dc1/svc/web' }, 'Bad request: Target service must be specified'],
    [{ Target: 'api', ClientCertURI: 'https://x' }, 'Bad request: ClientCertURI not a valid Connect identifier'],
    [{ Target: 'api', ClientCertURI: `spiffe://${td}/agent/client/dc/dc1/id/n1` }, 'Bad request: ClientCertURI not a valid Service identifier'],
  ] as const) {
    r = await json('/v1/agent/connect/authorize', post(body));
    assert.deepEqual([r.status, r.body], [400, text]);
  }
});

test('CA roots and leaf certificates look like Consul\'s; the root key is 0600 in the data dir', async () => {
  const roots = JSON.parse((await json('/v1/agent/connect/ca/roots')).body);
  assert.match(roots.TrustDomain, /^[0-9a-f-]{36}\.consul$/);
  assert.equal(roots.Roots.length, 1);
  const root = roots.Roots[0];
  assert.equal(roots.ActiveRootID, root.ID);
  assert.match(root.ID, /^([0-9a-f]{2}:){19}[0-9a-f]{2}$/);
  assert.equal(root.Name, 'Consul CA Root Cert');
  assert.equal(root.Active, true);
  assert.equal(root.PrivateKeyType, 'ec');
  assert.equal(root.PrivateKeyBits, 256);
  const rootCert = new X509Certificate(root.RootCert);
  assert.equal(rootCert.ca, true);
  assert.equal(rootCert.subjectAltName, `URI:spiffe://${roots.TrustDomain}`);
  assert.ok(new Date(rootCert.validTo).getTime() - Date.now() > 9 * 365 * 86_400_000, 'root valid ~10 years');
  assert.deepEqual(JSON.parse((await json('/v1/connect/ca/roots')).body).Roots[0].ID, root.ID);
  assert.equal(statSync(join(agent.dataDir, 'ca', 'root-key.pem')).mode & 0o777, 0o600);

  // Leaves only for this node's services: none for a name registered nowhere here.
  const notHere = await json('/v1/agent/connect/ca/leaf/web');
  assert.equal(notHere.status, 403);
  assert.match(notHere.body, /no service "web" is registered on this node .*register it here first/);
  assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'web', Port: 8080 }))).status, 200);
  const r = await json('/v1/agent/connect/ca/leaf/web');
  const leaf = JSON.parse(r.body);
  assert.equal(leaf.Service, 'web');
  assert.equal(leaf.ServiceURI, `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/web`);
  assert.match(leaf.PrivateKeyPEM, /^-----BEGIN EC PRIVATE KEY-----/);
  const cert = new X509Certificate(leaf.CertPEM);
  assert.equal(cert.subjectAltName, `URI:${leaf.ServiceURI}`);
  assert.ok(cert.verify(rootCert.publicKey));
  assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(leaf.PrivateKeyPEM)));
  assert.deepEqual(cert.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const life = Date.parse(leaf.ValidBefore) - Date.parse(leaf.ValidAfter);
  assert.equal(life, 72 * 3_600_000);
  assert.ok(Date.parse(leaf.ValidAfter) < Date.now() - 55_000, 'backdated a minute');
  assert.equal(r.headers.get('x-consul-index'), String(leaf.ModifyIndex));

  // Blocking on ?index returns when the leaf is renewed.
  const pending = json(`/v1/agent/connect/ca/leaf/web?index=${leaf.ModifyIndex}&wait=30s`);
  await new Promise((res) => setTimeout(res, 100));
  await agent.leaves.sign('web');
  const renewed = JSON.parse((await pending).body);
  assert.notEqual(renewed.SerialNumber, leaf.SerialNumber);
});
