// Who may read the API: token-only reads on a non-loopback API (acl_default_policy), probes' paths always open, and no
// data-dir or key path to a caller without the token.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfig } from '../config/config-load.js';
import { startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';

const TOKEN = 'read-access-token';
const agents: TestAgent[] = [];
after(async () => { for (const a of agents) await a.stop().catch(() => undefined); });

const load = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => loadConfig({ flags, configFiles: [], configDirs: [], env });

test('acl_default_policy: deny by default on a non-loopback API, allow on loopback; deny without a token is a config error', () => {
  const dataDir = tempDir();
  assert.equal(load({ data_dir: dataDir, client: '0.0.0.0', acl_token: TOKEN }).aclDefaultPolicy, 'deny');
  assert.equal(load({ data_dir: dataDir, client: '127.0.0.1', acl_token: TOKEN }).aclDefaultPolicy, 'allow');
  assert.equal(load({ data_dir: dataDir, client: '127.0.0.1', acl_token: TOKEN, acl_default_policy: 'deny' }).aclDefaultPolicy, 'deny');
  assert.throws(() => load({ data_dir: dataDir, client: '127.0.0.1', acl_default_policy: 'deny' }), /acl_default_policy "deny" needs acl_token/);
  assert.throws(() => load({ data_dir: dataDir, acl_default_policy: 'maybe' }), /invalid value for "acl_default_policy"/);
});

test('with reads denied: catalog, intentions, members, metrics need the token; ready and status stay open for probes', async () => {
  const a = await startTestAgent({ node: 'reads-deny', bind: '127.0.174.1', aclToken: TOKEN, aclDefaultPolicy: 'deny' });
  agents.push(a);
  for (const path of ['/v1/catalog/services', '/v1/connect/intentions', '/v1/agent/members', '/v1/agent/metrics', '/v1/agent/self', '/v1/agent/posture', '/v1/health/service/x']) {
    const r = await a.api(path);
    assert.equal(r.status, 403, `${path} without the token`);
    assert.match(await r.text(), /reads need the agent's ACL token/);
    assert.equal((await a.api(path, { headers: { 'X-Consul-Token': TOKEN } })).status, 200, `${path} with the token`);
  }
  assert.equal((await a.api('/v1/catalog/services', { headers: { 'X-Consul-Token': 'wrong-token-123' } })).status, 403);
  assert.equal((await a.api('/v1/agent/ready')).status, 200);
  assert.equal((await a.api('/v1/status/leader')).status, 200);
});

test('self and posture name no data dir or key path to a caller without the token', async () => {
  const dataDir = tempDir();
  const a = await startTestAgent({ node: 'reads-open', bind: '127.0.174.2', aclToken: TOKEN, dataDir });
  agents.push(a);
  const self = async (h: Record<string, string> = {}) => (await (await a.api('/v1/agent/self', { headers: h })).json() as { DebugConfig: { DataDir: string } }).DebugConfig.DataDir;
  assert.equal(await self({ 'X-Consul-Token': TOKEN }), dataDir);
  assert.doesNotMatch(await self(), new RegExp(dataDir));
  const posture = async (h: Record<string, string> = {}) => JSON.stringify(await (await a.api('/v1/agent/posture', { headers: h })).json());
  assert.match(await posture({ 'X-Consul-Token': TOKEN }), new RegExp(dataDir));
  const open = await posture();
  assert.doesNotMatch(open, new RegExp(dataDir), 'no data dir');
  assert.doesNotMatch(open, /root-key\.pem|\.pem/, 'no key path');
  assert.match(open, /redacted: needs the ACL token/);
});
