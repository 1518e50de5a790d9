// `consul connect ca set-config` (Consul 1.8.7's CLI) against a nodemesh agent: a new intermediate under the trusted
// root replaces the agent's signing CA (files rewritten, leaves re-issued, traffic keeps flowing); a CA under a root the
// agent does not trust, a bad PEM, a key of another certificate, another provider, a missing token: 4xx, nothing changed.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { defaultConfig } from '../config/agent-config.js';
import { createIntermediate, importPrivateKey } from '../identity/ca/x509-certs.js';
import { nodeAuthorityUri } from '../identity/authority-ids.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { echoApp, roundTrip } from './helpers/tcp-apps.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const TOKEN = 'ca-config-token';
const OPERATOR = 'ca-config-operator';
const dir = tempDir();
let root: { certPem: string; keyPem: string; trustDomain: string };
let agent: TestAgent;
let app: Awaited<ReturnType<typeof echoApp>>;
let up: number;
const caFile = join(dir, 'ca.pem');
const caKeyFile = join(dir, 'ca-key.pem');
const auth = { 'X-Consul-Token': TOKEN };
const operator = { 'X-Consul-Token': OPERATOR };

const setConfig = (body: unknown, headers: Record<string, string> = operator) => agent.api('/v1/connect/ca/configuration', put(body, headers));
const leafIssuer = async () => new X509Certificate(((await (await agent.api('/v1/agent/connect/ca/leaf/web', { headers: auth })).json()) as { CertPEM: string }).CertPEM).issuer;
const intermediate = async (issuer: { certPem: string; keyPem: string; trustDomain: string }) => createIntermediate({
  issuerCertPem: issuer.certPem, issuerKey: (await importPrivateKey(issuer.keyPem)).key, trustDomain: issuer.trustDomain, uri: nodeAuthorityUri(issuer.trustDomain, 'node-1'),
});

before(async () => {
  root = await CertificateAuthority.createRoot();
  writeFileSync(caFile, root.certPem);
  writeFileSync(caKeyFile, root.keyPem, { mode: 0o600 });
  agent = await startTestAgent({ bind: '127.0.27.1', caFile, caKeyFile, aclToken: TOKEN, operatorToken: OPERATOR });
  app = await echoApp('127.0.27.3');
  up = await freePort('127.0.0.1');
  await agent.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.27.3', Port: app.port, Connect: { SidecarService: {} } }, auth));
  await agent.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.27.2', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up }] } } } }, auth));
  await waitFor(async () => assert.equal((await roundTrip('127.0.27.2', up, 'ping')).reply.toString(), 'ping', 'mesh carries traffic'), 10_000);
});
after(async () => {
  await agent?.stop();
  await new Promise((r) => app ? app.server.close(r) : r(undefined));
});

test('bad set-config requests are 4xx with a message that says what to do, and change nothing', async () => {
  const other = await CertificateAuthority.createRoot();
  const inter = await intermediate(root);
  const before = { cert: readFileSync(caFile, 'utf8'), issuer: await leafIssuer() };
  const cases: [string, unknown, number, RegExp, Record<string, string>?][] = [
    ['no token', { Provider: 'consul', Config: { RootCert: inter.certPem + root.certPem, PrivateKey: inter.keyPem } }, 403, /token/i, {}],
    ['the node\'s token (not the operator\'s)', { Provider: 'consul', Config: { RootCert: inter.certPem + root.certPem, PrivateKey: inter.keyPem } }, 403, /operator token/i, auth],
    // An attacker's root ahead of the trusted one: it would have been trusted as a root of its own.
    ['a root of its own ahead of the trusted one', { Provider: 'consul', Config: { RootCert: other.certPem + root.certPem, PrivateKey: other.keyPem } }, 400, /one root, last/],
    ['another provider', { Provider: 'vault', Config: {} }, 400, /--consul-addr/],
    ['no key given', { Provider: 'consul', Config: { LeafCertTTL: '72h0m0s' } }, 400, /RootCert and Config.PrivateKey/],
    ['garbage PEM', { Provider: 'consul', Config: { RootCert: 'not a cert', PrivateKey: inter.keyPem } }, 400, /no PEM certificate/],
    ['the key of another certificate', { Provider: 'consul', Config: { RootCert: inter.certPem + root.certPem, PrivateKey: other.keyPem } }, 400, /key does not belong/],
    ['an intermediate without its root', { Provider: 'consul', Config: { RootCert: inter.certPem, PrivateKey: inter.keyPem } }, 400, /append the root/],
    ['an intermediate followed by another root', { Provider: 'consul', Config: { RootCert: inter.certPem + other.certPem, PrivateKey: inter.keyPem } }, 400, /not signed by the one after it/],
    ['a root no peer trusts', { Provider: 'consul', Config: { RootCert: other.certPem, PrivateKey: other.keyPem } }, 400, /ca_trusted_roots_file/],
    ['a different leaf TTL', { Provider: 'consul', Config: { LeafCertTTL: '1h0m0s', RootCert: inter.certPem + root.certPem, PrivateKey: inter.keyPem } }, 400, /leaf_cert_ttl/],
    ['an unknown field', { Provider: 'consul', Config: { RootCert: inter.certPem + root.certPem, PrivateKey: inter.keyPem, Color: 'red' } }, 400, /unknown field/i],
  ];
  for (const [what, body, status, text, headers] of cases) {
    const r = await setConfig(body, headers);
    assert.equal(r.status, status, what);
    assert.match(await r.text(), text, what);
  }
  assert.equal((await agent.api('/v1/connect/ca/configuration', { method: 'PUT', body: '{"Provider":', headers: operator })).status, 400, 'truncated JSON');
  assert.equal(readFileSync(caFile, 'utf8'), before.cert, 'CA file untouched');
  assert.equal(await leafIssuer(), before.issuer, 'leaves untouched');
  assert.equal((await roundTrip('127.0.27.2', up, 'still')).reply.toString(), 'still');
});

test('consul connect ca set-config with a new intermediate under the trusted root: files replaced (key 0600), leaves re-issued, traffic flows', { skip: consulMissing() }, async () => {
  const inter = await intermediate(root);
  const file = join(dir, 'set-config.json');
  writeFileSync(file, JSON.stringify({ Provider: 'consul', Config: { RootCert: inter.certPem + root.certPem, PrivateKey: inter.keyPem } }));
  const env = { ...process.env, CONSUL_HTTP_ADDR: agent.url, CONSUL_HTTP_TOKEN: OPERATOR };
  const out = await promisify(execFile)(CONSUL_BIN, ['connect', 'ca', 'set-config', '-config-file', file], { env });
  assert.match(out.stdout, /Configuration updated!/);
  assert.equal(readFileSync(caFile, 'utf8'), inter.certPem + root.certPem);
  assert.equal(statSync(caKeyFile).mode & 0o777, 0o600);
  await waitFor(async () => assert.equal(await leafIssuer(), new X509Certificate(inter.certPem).subject, 'leaf signed by the new intermediate'), 10_000);
  assert.equal((await roundTrip('127.0.27.2', up, 'after')).reply.toString(), 'after');
  const got = await promisify(execFile)(CONSUL_BIN, ['connect', 'ca', 'get-config'], { env });
  assert.match(got.stdout, /"Provider": "consul"/);
});

test('a new root is taken once the agent trusts it (ca_trusted_roots_file and a reload), and then signs the leaves', async () => {
  const next = await CertificateAuthority.createRoot();
  const body = { Provider: 'consul', Config: { RootCert: next.certPem, PrivateKey: next.keyPem } };
  assert.equal((await setConfig(body)).status, 400, 'not trusted yet');
  const trusted = join(dir, 'trusted.pem');
  writeFileSync(trusted, next.certPem);
  await agent.reload({ ...defaultConfig(), dev: true, bind: '127.0.27.1', caFile, caKeyFile, aclToken: TOKEN, caTrustedRootsFile: trusted });
  const r = await setConfig(body);
  assert.equal(r.status, 200, await r.text());
  await waitFor(async () => assert.equal(await leafIssuer(), new X509Certificate(next.certPem).subject, 'leaf signed by the new root'), 10_000);
  assert.equal((await roundTrip('127.0.27.2', up, 'new root')).reply.toString(), 'new root');
});
