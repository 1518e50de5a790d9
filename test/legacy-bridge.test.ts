// VM legacy bridge: an agent configured from a config dir bridges an external TCP service (no agent there) into the mesh.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { put, spawnAgent, startTestAgent, tempDir, type AgentChild, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

// The legacy database: a plain TCP server on its own loopback address, with no agent beside it.
const LEGACY = '127.0.12.201';
const VM_AGENT = '127.0.12.1';
const POD_AGENT = '127.0.12.2';
const WEB = '127.0.12.12';

const stops: (() => Promise<unknown>)[] = [];
after(async () => { for (const s of stops.reverse()) await s().catch(() => undefined); });

test('a VM agent bridges an external TCP service from its config dir; a workload on another agent reaches it over mTLS; a deny stops it', async () => {
  const legacy = await echoApp(LEGACY);
  stops.push(() => new Promise((r) => legacy.server.close(r)));
  const dir = tempDir();
  const root = await CertificateAuthority.createRoot();
  writeFileSync(join(dir, 'ca.pem'), root.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), root.keyPem, { mode: 0o600 });
  const configDir = join(dir, 'nodemesh.d');
  mkdirSync(configDir);
  writeFileSync(join(configDir, '00-agent.json'), JSON.stringify({ ca_file: join(dir, 'ca.pem'), ca_key_file: join(dir, 'ca-key.pem'), default_intention_policy: 'allow' }));
  writeFileSync(join(configDir, 'legacy-db.json'), JSON.stringify({
    service: { name: 'legacy-db', address: LEGACY, port: legacy.port, connect: { bridge: true } },
  }));

  const vm: AgentChild = await spawnAgent(['--node', 'vm-1', '--bind', VM_AGENT, '--data-dir', join(dir, 'data'), '--config-dir', configDir]);
  stops.push(async () => { vm.proc.kill('SIGTERM'); await vm.exited; });
  const vmGossip = Number(/"gossip":"[^"]*:(\d+)"/.exec(vm.output())![1]);
  const pod: TestAgent = await startTestAgent({ node: 'k8s-node-1', bind: POD_AGENT, join: [`${VM_AGENT}:${vmGossip}`], caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca-key.pem'), defaultIntentionPolicy: 'allow' });
  stops.push(() => pod.stop());

  // The bridged service is in the catalog, marked as such, with a TCP check on the external address.
  const services = await (await fetch(`${vm.url}/v1/agent/services`)).json() as Record<string, { Meta: Record<string, string>; Address: string; Kind?: string; Proxy?: { LocalServiceAddress: string } }>;
  assert.equal(services['legacy-db'].Meta['external-source'], 'nodemesh-bridge');
  assert.equal(services['legacy-db-sidecar-proxy'].Proxy?.LocalServiceAddress, LEGACY);
  await waitFor(async () => assert.equal(((await (await pod.api('/v1/health/connect/legacy-db?passing')).json()) as unknown[]).length, 1), 20_000);

  const up = await freePort('127.0.0.1');
  await pod.api('/v1/agent/service/register', put({ Name: 'web', Address: WEB, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'legacy-db', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal((await roundTrip(WEB, up, 'SELECT 1')).reply.toString(), 'SELECT 1'), 10_000);
  assert.equal(legacy.connections > 0, true);
  const before = legacy.connections;

  await pod.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'legacy-db', Action: 'deny' }) });
  // The intention reaches the VM agent by gossip; from then on the bridge refuses web.
  await waitFor(async () => assert.equal((await roundTrip(WEB, up, 'DROP TABLE')).reply.length, 0), 10_000);
  const after = legacy.connections;
  for (let i = 0; i < 3; i++) assert.equal((await roundTrip(WEB, up, 'again')).reply.length, 0);
  assert.equal(legacy.connections, after, 'a denied caller never reaches the legacy service');
  assert.ok(after >= before);
});

test('a bridge needs the external address and port, and cannot be a proxy: 400 with what is missing, nothing stored', async () => {
  const a = await startTestAgent({ node: 'bridge-bad', bind: '127.0.12.5' });
  stops.push(() => a.stop());
  for (const [body, text] of [
    [{ Name: 'nowhere', Port: 5432, Connect: { Bridge: true } }, /needs the external service's Address/],
    [{ Name: 'portless', Address: '127.0.12.202', Connect: { Bridge: true } }, /needs the external service's Port/],
    [{ Name: 'p', Kind: 'connect-proxy', Port: 21000, Address: '127.0.12.202', Proxy: { DestinationServiceName: 'x' }, Connect: { Bridge: true } }, /not for a proxy/],
    [{ Name: 'typo', Address: '127.0.12.202', Port: 1, Connect: { Bridge: 'yes' } }, /Request decode failed/],
  ] as const) {
    const r = await a.api('/v1/agent/service/register', put(body));
    assert.equal(r.status, 400);
    assert.match(await r.text(), text);
  }
  assert.deepEqual(await (await a.api('/v1/agent/services')).json(), {});
});
