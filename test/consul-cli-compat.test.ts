// The real `consul` 1.8.7 CLI against a gossip-mode agent, as a Consul operator would drive it: sidecar registration
// from a file, KV's clear "not here", datacenters, maintenance mode, info, join and force-leave, node-meta filters, and a
// KV watch that backs off instead of spinning.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { poolCa, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const skip = consulMissing();
let a: TestAgent;
let b: TestAgent | undefined;

/** `consul ARGS` against agent a: exit code, stdout and stderr. */
async function consul(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await promisify(execFile)(CONSUL_BIN, args, { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` }, timeout: 20_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, out: x.stdout ?? '', err: x.stderr ?? '' };
  }
}

before(async () => {
  if (skip) return;
  a = await startTestAgent({ node: 'cli-a', bind: '127.0.22.1', nodeMeta: { zone: 'z1' }, ...await poolCa() });
});
after(async () => {
  await b?.stop().catch(() => undefined);
  await a?.stop();
});

test('consul services register: a definition with `connect { sidecar_service {} }` (the CLI sends "Check": {}) registers web and its sidecar', { skip }, async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'web.hcl'), 'service {\n  name = "web"\n  port = 8080\n  connect { sidecar_service {} }\n}\n');
  const r = await consul('services', 'register', join(dir, 'web.hcl'));
  assert.equal(r.code, 0, r.err);
  const services = await (await a.api('/v1/agent/services')).json() as Record<string, { Service: string }>;
  assert.ok(services.web && services['web-sidecar-proxy'], Object.keys(services).join(', '));
  const checks = await (await a.api('/v1/agent/checks')).json() as Record<string, { ServiceID: string }>;
  assert.ok(!Object.values(checks).some((c) => c.ServiceID === 'web'), 'the empty check is no check at all');
});

test('consul kv: a clear 501 that says where KV lives, never "No key exists"; the API answers with an index', { skip }, async () => {
  // The CLI prints the answer's text where its client passes it on (put); `kv get` and `kv export` show the code only.
  for (const [args, text] of [[['kv', 'get', 'app/config'], /Unexpected response code: 501/], [['kv', 'put', 'app/config', 'x'], /501[\s\S]*needs Consul's servers[\s\S]*--consul-addr/], [['kv', 'export'], /Unexpected response code: 501/]] as const) {
    const r = await consul(...args);
    assert.notEqual(r.code, 0, `consul ${args.join(' ')} fails`);
    assert.match(r.err, text, `consul ${args.join(' ')}: ${r.err}`);
    assert.doesNotMatch(r.out + r.err, /No key exists/);
  }
  const res = await a.api('/v1/session/list');
  assert.equal(res.status, 501);
  assert.equal(res.headers.get('x-consul-index'), '1');
  assert.equal(res.headers.get('x-nodemesh-error'), 'CONSENSUS_REQUIRED');
});

test('consul operator raft/autopilot and consul acl: a Consul-shaped refusal that says why and what to use instead', { skip }, async () => {
  for (const args of [['operator', 'raft', 'list-peers'], ['operator', 'autopilot', 'get-config']]) {
    const r = await consul(...args);
    assert.notEqual(r.code, 0, `consul ${args.join(' ')} fails`);
    assert.match(r.err, /501/, `consul ${args.join(' ')}: ${r.err}`);
  }
  const acl = await consul('acl', 'token', 'list');
  assert.notEqual(acl.code, 0);
  assert.match(acl.err, /401 \(ACL support disabled/, acl.err);
  const res = await a.api('/v1/operator/raft/configuration');
  assert.equal(res.status, 501);
  assert.match(await res.text(), /no servers[\s\S]*--consul-addr/);
  const policy = await a.api('/v1/acl/policies');
  assert.equal(policy.status, 401);
  assert.match(await policy.text(), /acl_token[\s\S]*operator_token/);
  // The keyring is not a server operation: still this agent's (this one has no gossip key, and says so).
  const keyring = await a.api('/v1/operator/keyring');
  assert.equal(keyring.status, 400);
  assert.doesNotMatch(await keyring.text(), /no servers/);
});

test('consul watch -type=keyprefix backs off on the 501 instead of spinning', { skip }, async () => {
  const count = async () => {
    const text = await (await a.api('/metrics')).text();
    return [...text.matchAll(/^nodemesh_http_requests_total\{[^}]*route="needs consensus"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };
  const before = await count();
  const w = spawn(CONSUL_BIN, ['watch', '-type=keyprefix', '-prefix=app/', 'true'], { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` }, stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 3000));
  w.kill();
  const made = (await count()) - before;
  assert.ok(made >= 1 && made <= 10, `the watch asked ${made} times in 3 s (it spun at ~500/s on a 404 without an index)`);
});

test('consul catalog datacenters, consul info and node-meta filters answer as Consul does', { skip }, async () => {
  assert.equal((await consul('catalog', 'datacenters')).out.trim(), 'dc1');
  const info = await consul('info');
  assert.equal(info.code, 0, info.err);
  assert.doesNotMatch(info.out, /%!/, 'every stat is a string');
  assert.match(info.out, /serf_lan:\s+members = 1/);
  assert.match((await consul('catalog', 'nodes', '-node-meta', 'zone=z1')).out, /cli-a/);
  assert.doesNotMatch((await consul('catalog', 'nodes', '-node-meta', 'zone=elsewhere')).out, /cli-a/);
  const self = await (await a.api('/v1/agent/self')).json() as { Member: { Port: number } };
  assert.equal(self.Member.Port, a.gossip.port, 'Member.Port is the port gossip really runs on');
  assert.equal(await (await a.api('/v1/status/leader')).json(), `127.0.22.1:${a.gossip.port}`, 'a leader address where something listens');
  assert.equal((await a.api('/v1/catalog/nodes?node-meta=zone')).status, 400, 'a malformed node-meta pair');
});

test('?filter with Consul\'s expression language: consul catalog nodes -filter, and the agent\'s and health lists', { skip }, async () => {
  assert.match((await consul('catalog', 'nodes', '-filter', 'Meta.zone == z1')).out, /cli-a/);
  const none = await consul('catalog', 'nodes', '-filter', 'Meta.zone == elsewhere');
  assert.doesNotMatch(none.out, /cli-a/);
  const bad = await consul('catalog', 'nodes', '-filter', 'Meta.zone ===');
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /Failed to create boolean expression evaluator/);
  const services = await (await a.api(`/v1/agent/services?filter=${encodeURIComponent('Service == web and "web" not in Tags')}`)).json() as Record<string, unknown>;
  assert.deepEqual(Object.keys(services), ['web']);
  const health = await (await a.api(`/v1/health/service/web-sidecar-proxy?filter=${encodeURIComponent('Service.Proxy.DestinationServiceName == web')}`)).json() as unknown[];
  assert.equal(health.length, 1);
});

test('consul maint: node and service maintenance as Consul\'s critical checks, listed, then lifted', { skip }, async () => {
  await a.api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'db', Port: 5432 }) });
  assert.equal((await consul('maint', '-enable', '-reason', 'kernel upgrade')).code, 0);
  assert.equal((await consul('maint', '-enable', '-service', 'db')).code, 0);
  const listed = (await consul('maint')).out;
  assert.match(listed, /Node:[\s\S]*Reason:\s+kernel upgrade/);
  assert.match(listed, /Service:[\s\S]*ID:\s+db[\s\S]*Reason:\s+Maintenance mode is enabled for this service/);
  assert.deepEqual(await (await a.api('/v1/health/service/db?passing')).json(), [], 'out of healthy answers');
  assert.equal((await consul('maint', '-disable')).code, 0);
  assert.equal((await consul('maint', '-disable', '-service', 'db')).code, 0);
  assert.equal(((await (await a.api('/v1/health/service/db?passing')).json()) as unknown[]).length, 1);
  const unknown = await consul('maint', '-enable', '-service', 'nope');
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /No service registered with ID "nope"/);
  assert.equal((await a.api('/v1/agent/maintenance', { method: 'PUT' })).status, 400, '?enable is required');
});

test('consul join brings a second agent in; consul force-leave takes a failed member out of the pool and the catalog', { skip }, async () => {
  b = await startTestAgent({ node: 'cli-b', bind: '127.0.22.2', ...await poolCa() });
  const joined = await consul('join', `127.0.22.2:${b.gossip.port}`);
  assert.equal(joined.code, 0, joined.err);
  await waitFor(async () => assert.match((await consul('members')).out, /cli-b\s+127\.0\.22\.2:\d+\s+alive/, 'b is a member'), 10_000);
  // b fails without leaving: its gossip stops.
  await b.gossip.shutdown();
  await waitFor(async () => assert.match((await consul('members')).out, /cli-b\s+\S+\s+failed/, 'b failed'), 20_000);
  const forced = await consul('force-leave', 'cli-b');
  assert.equal(forced.code, 0, forced.err);
  await waitFor(async () => assert.match((await consul('members')).out, /cli-b\s+\S+\s+left/, 'b left'), 10_000);
  await waitFor(async () => assert.equal((await (await a.api('/v1/catalog/node/cli-b')).json()), null, 'b is gone from the catalog'), 10_000);
  const none = await consul('force-leave', 'nobody');
  assert.notEqual(none.code, 0);
  assert.match(none.err, /No node found with name 'nobody'/);
});

test('consul intention create/check/delete, consul config write/read and consul watch -type=services against the pool', { skip }, async () => {
  const made = await consul('intention', 'create', '-deny', 'web', 'db');
  assert.equal(made.code, 0, made.err);
  assert.match((await consul('intention', 'check', 'web', 'db')).out, /Denied/);
  assert.match((await consul('intention', 'check', 'web', 'other')).out, /Allowed/, 'dev mode allows by default');
  assert.equal((await consul('intention', 'delete', 'web', 'db')).code, 0);
  const dir = tempDir();
  writeFileSync(join(dir, 'db.hcl'), 'Kind = "service-defaults"\nName = "db"\nProtocol = "tcp"\n');
  const wrote = await consul('config', 'write', join(dir, 'db.hcl'));
  assert.equal(wrote.code, 0, wrote.err);
  assert.match((await consul('config', 'read', '-kind', 'service-defaults', '-name', 'db')).out, /"Protocol": "tcp"/);
  // A watch prints the current services at once and keeps blocking: its first answer is enough here.
  await a.api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'cache', Port: 6379 }) });
  const w = spawn(CONSUL_BIN, ['watch', '-type=services'], { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` } });
  let out = '';
  w.stdout.on('data', (c: Buffer) => { out += c; });
  try {
    await waitFor(() => assert.match(out, /"cache"/, 'the watch printed the services'), 10_000);
  } finally {
    w.kill();
  }
});
