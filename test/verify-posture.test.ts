// `nodemesh verify` against real agents: a dev agent's warnings, a hardened agent all ok, a loosened CA key file failing.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { after, test } from 'node:test';
import { runCli, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { poolCredentials } from './helpers/pool-credentials.js';

const agents: TestAgent[] = [];
after(async () => { for (const a of agents) await a.stop(); });

test('a dev agent: warnings for plaintext gossip, no token and allow-by-default, exit 0', async () => {
  const a = await startTestAgent({ node: 'verify-dev', bind: '127.0.76.1' });
  agents.push(a);
  const r = await runCli(['--http-addr', a.url, 'verify'], { NODEMESH_HTTP_TOKEN: '' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^CHECK\s+STATUS\s+DETAIL$/m);
  assert.match(r.stdout, /^gossip encryption\s+WARN\s+gossip is plaintext/m);
  assert.match(r.stdout, /^API token\s+WARN\s+no acl_token/m);
  assert.match(r.stdout, /^default intention policy\s+WARN\s+allow/m);
  assert.match(r.stdout, /^CA private key file\s+OK\s+.*mode 600/m);
  assert.match(r.stdout, /\n0 failed, \d+ warning\(s\), \d+ ok\n$/);
});

test('an agent holding the pool\'s root key is warned that every such node is a policy authority', async () => {
  const { caFile, caKeyFile } = await sharedCa();
  const a = await startTestAgent({ node: 'verify-root', bind: '127.0.76.3', dev: false, aclToken: 'verify-token-456', encrypt: randomBytes(32).toString('base64'), defaultIntentionPolicy: 'deny', caFile, caKeyFile });
  agents.push(a);
  const json = await (await a.api('/v1/agent/posture')).json() as { Findings: { Check: string; Status: string; Detail: string }[] };
  const f = json.Findings.find((x) => x.Check === 'node authority');
  assert.equal(f?.Status, 'warn');
  assert.match(f!.Detail, /every node given this key is a policy authority/);
});

test('a hardened agent (its own node intermediate) is all ok; a CA key file readable by others fails verify with what to do', async () => {
  const token = 'verify-token-123';
  const { caFile, caKeyFile } = (await poolCredentials(['verify-prod'])).nodes['verify-prod'];
  const a = await startTestAgent({ node: 'verify-prod', bind: '127.0.76.2', dev: false, aclToken: token, encrypt: randomBytes(32).toString('base64'), defaultIntentionPolicy: 'deny', caFile, caKeyFile });
  agents.push(a);
  const cli = (...args: string[]) => runCli(['--http-addr', a.url, '--token', token, ...args], { NODEMESH_HTTP_TOKEN: '' });
  let r = await cli('--format', 'json', 'verify');
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout) as { Findings: { Check: string; Status: string }[]; Failed: number; Warnings: number };
  assert.deepEqual(json.Findings.filter((f) => f.Status !== 'ok'), []);
  assert.ok(json.Findings.some((f) => f.Check === 'gossip keyring file' && f.Status === 'ok'));
  chmodSync(caKeyFile, 0o644);
  r = await cli('verify');
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^CA private key file\s+FAIL\s+.*mode 644: chmod 600 /m);
  assert.match(r.stderr, /1 check\(s\) failed/);
});

test('protections waived in config are warnings that say so; verify still exits 0 for them', async () => {
  const a = await startTestAgent({ node: 'verify-waived', bind: '127.0.76.3', dev: false, waive: ['gossip_key', 'acl_token', 'ca_files'], defaultIntentionPolicy: 'deny' });
  agents.push(a);
  const r = await runCli(['--http-addr', a.url, 'verify'], { NODEMESH_HTTP_TOKEN: '' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^gossip encryption\s+WARN\s+gossip is plaintext \(waived in config: "waive": \["gossip_key"\]\)/m);
  assert.match(r.stdout, /^API token\s+WARN\s+no acl_token \(waived in config/m);
  assert.match(r.stdout, /^mesh CA\s+WARN\s+a CA of this agent's own \(waived in config: "waive": \["ca_files"\]\)/m);
});
