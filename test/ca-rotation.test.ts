// CA rotation by config reload, and per-node intermediates: traffic keeps flowing, old roots stay trusted, chains are presented.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, test } from 'node:test';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { defaultConfig } from '../config/agent-config.js';
import { createIntermediate, importPrivateKey } from '../identity/ca/x509-certs.js';
import { nodeAuthorityUri } from '../identity/authority-ids.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';
import { freePort } from './helpers/free-port.js';

const BIND = '127.0.2.1';
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function echo(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => s.destroy()); s.pipe(s); });
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { server, port: (server.address() as { port: number }).port };
}


function roundTrip(from: string, port: number, data: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = connect({ host: '127.0.0.1', port, localAddress: from, allowHalfOpen: true }, () => s.end(data));
    s.on('data', (c) => { got += c; });
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
}

async function meshedPair(agent: TestAgent, prefix: string): Promise<number> {
  const app = await echo(`${prefix}.3`);
  const up = await freePort('127.0.0.1');
  await agent.api('/v1/agent/service/register', put({ Name: 'api', Address: `${prefix}.3`, Port: app.port, Connect: { SidecarService: {} } }));
  await agent.api('/v1/agent/service/register', put({ Name: 'web', Address: `${prefix}.2`, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal((await (await agent.api('/v1/health/connect/api?passing')).json() as unknown[]).length, 1));
  return up;
}

test('rotating the root by config reload: leaves re-issued under the new root, old root still trusted, no failed request', async () => {
  const dir = tempDir();
  const r1 = await CertificateAuthority.createRoot();
  const r2 = await CertificateAuthority.createRoot();
  writeFileSync(join(dir, 'ca.pem'), r1.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), r1.keyPem, { mode: 0o600 });
  const cfg = { bind: BIND, caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca-key.pem') };
  const agent = await startTestAgent(cfg);
  cleanups.push(() => agent.stop());
  const up = await meshedPair(agent, '127.0.2');
  const web = '127.0.2.2';
  assert.equal(await roundTrip(web, up, 'before'), 'before');

  // Steady traffic while the root changes underneath.
  let failures = 0;
  let sent = 0;
  let stop = false;
  const load = (async () => {
    while (!stop && sent < 2000) {
      sent++;
      if ((await roundTrip(web, up, `req-${sent}`)) !== `req-${sent}`) failures++;
    }
  })();
  // An open connection made under the old root keeps working after the rotation.
  const longLived = connect({ host: '127.0.0.1', port: up, localAddress: web });
  await new Promise((r) => longLived.once('connect', r));

  writeFileSync(join(dir, 'ca.pem'), r2.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), r2.keyPem, { mode: 0o600 });
  await agent.reload({ ...defaultConfig(), dev: true, ...cfg });
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await load;
  assert.ok(sent > 5, `load ran (${sent} requests)`);
  assert.equal(failures, 0, `${failures} of ${sent} requests failed during the rotation`);

  const reply = await new Promise<string>((resolve) => { longLived.once('data', (c) => resolve(String(c))); longLived.write('still here'); });
  assert.equal(reply, 'still here');
  longLived.destroy();

  const roots = await (await agent.api('/v1/agent/connect/ca/roots')).json() as { TrustDomain: string; Roots: { RootCert: string; Active: boolean }[] };
  assert.equal(roots.TrustDomain, r2.trustDomain);
  assert.deepEqual(roots.Roots.map((r) => [r.RootCert === r2.certPem, r.Active]), [[true, true], [false, false]], 'new root active, old one still listed as trusted');
  const leaf = await (await agent.api('/v1/agent/connect/ca/leaf/web')).json() as { CertPEM: string; ServiceURI: string };
  assert.ok(new X509Certificate(leaf.CertPEM).verify(new X509Certificate(r2.certPem).publicKey), 'leaf re-issued under the new root');
  assert.match(leaf.ServiceURI, new RegExp(`^spiffe://${r2.trustDomain}/`));
  assert.equal(await roundTrip(web, up, 'after'), 'after');
});

test('a per-node intermediate: the agent presents leaf + intermediate, and a peer trusting only the root accepts it', async () => {
  const dir = tempDir();
  const root = await CertificateAuthority.createRoot();
  const rootKey = (await importPrivateKey(root.keyPem)).key;
  // Named for its node (as `nodemesh ca issue-intermediate --node` makes it): leaves it signs speak only for that node's services.
  const inter = await createIntermediate({ issuerCertPem: root.certPem, issuerKey: rootKey, trustDomain: root.trustDomain, uri: nodeAuthorityUri(root.trustDomain, 'node-1') });
  writeFileSync(join(dir, 'ca.pem'), inter.certPem + root.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), inter.keyPem, { mode: 0o600 });
  const agent = await startTestAgent({ bind: '127.0.3.1', caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca-key.pem') });
  cleanups.push(() => agent.stop());
  const up = await meshedPair(agent, '127.0.3');
  assert.equal(await roundTrip('127.0.3.2', up, 'through the intermediate'), 'through the intermediate');

  const leaf = await (await agent.api('/v1/agent/connect/ca/leaf/web')).json() as { CertPEM: string; PrivateKeyPEM: string };
  assert.equal(leaf.CertPEM.match(/BEGIN CERTIFICATE/g)?.length, 2, 'leaf followed by the intermediate');
  const services = await (await agent.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  // A client that trusts only the root verifies the server's chain: the server sent the intermediate.
  const verified = await new Promise<boolean>((resolve) => {
    const s = tlsConnect({ host: '127.0.3.1', port: services['api-sidecar-proxy'].Port, ca: root.certPem, key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, checkServerIdentity: () => undefined }, () => {
      resolve(s.authorized);
      s.destroy();
    });
    s.on('error', () => resolve(false));
  });
  assert.equal(verified, true);
  const roots = await (await agent.api('/v1/agent/connect/ca/roots')).json() as { Roots: { IntermediateCerts: string[] | null }[] };
  assert.equal(roots.Roots[0].IntermediateCerts?.length, 1);
});

test('SIGHUP re-reads the config files: a replaced CA file becomes the active root; a broken one is refused and the agent keeps running', async () => {
  const { spawnAgent } = await import('./helpers/agent-process.js');
  const dir = tempDir();
  const r1 = await CertificateAuthority.createRoot();
  const r2 = await CertificateAuthority.createRoot();
  writeFileSync(join(dir, 'ca.pem'), r1.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), r1.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ ca_file: join(dir, 'ca.pem'), ca_key_file: join(dir, 'ca-key.pem'), bind: '127.0.4.1' }));
  const a = await spawnAgent(['--data-dir', join(dir, 'data'), '--config-file', join(dir, 'agent.json')]);
  const trustDomain = async () => ((await (await fetch(`${a.url}/v1/agent/connect/ca/roots`)).json()) as { TrustDomain: string }).TrustDomain;
  try {
    assert.equal(await trustDomain(), r1.trustDomain);
    writeFileSync(join(dir, 'agent.json'), '{"ca_file": ');
    a.proc.kill('SIGHUP');
    await waitFor(() => assert.match(a.output(), /reload refused: the new config is invalid/));
    assert.equal(await trustDomain(), r1.trustDomain);

    writeFileSync(join(dir, 'agent.json'), JSON.stringify({ ca_file: join(dir, 'ca.pem'), ca_key_file: join(dir, 'ca-key.pem'), bind: '127.0.4.1' }));
    writeFileSync(join(dir, 'ca.pem'), r2.certPem);
    writeFileSync(join(dir, 'ca-key.pem'), r2.keyPem, { mode: 0o600 });
    a.proc.kill('SIGHUP');
    await waitFor(async () => assert.equal(await trustDomain(), r2.trustDomain));
  } finally {
    a.proc.kill('SIGTERM');
    assert.equal(await a.exited, 0);
  }
});
