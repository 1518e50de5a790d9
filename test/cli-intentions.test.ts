// The intention, ca and connect CLI verbs against a real agent: output, exit codes and errors.

import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCli, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
let cli: (...args: string[]) => ReturnType<typeof runCli>;
before(async () => {
  agent = await startTestAgent({ defaultIntentionPolicy: 'deny' });
  cli = (...args) => runCli(['--http-addr', agent.url, ...args], { NODEMESH_HTTP_TOKEN: '' });
});
after(async () => { await agent.stop(); });

test('create, duplicate, replace, list, match, get, check, delete', async () => {
  let r = await cli('intention', 'create', 'web', 'db');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Created: web => db (allow)\n');
  r = await cli('intention', 'create', '--deny', 'web', 'db');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^nodemesh: Error creating intention "web => db \(deny\)": agent answered 409: duplicate intention found: ALLOW default\/web => default\/db/);
  r = await cli('intention', 'create', '--deny', '--replace', 'web', 'db');
  assert.equal(r.code, 0, r.stderr);
  r = await cli('intention', 'create', '*', 'db');
  assert.equal(r.code, 0);

  r = await cli('intention', 'list');
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^ID\s+SOURCE\s+ACTION\s+DESTINATION\s+PRECEDENCE$/);
  assert.match(lines[1], /\sweb\s+deny\s+db\s+9$/);
  assert.match(lines[2], /\s\*\s+allow\s+db\s+8$/);
  r = await cli('intention', 'match', 'db');
  assert.equal(r.stdout, 'web => db (deny)\n* => db (allow)\n');
  r = await cli('--format', 'json', 'intention', 'get', 'web', 'db');
  assert.equal(JSON.parse(r.stdout).Action, 'deny');

  r = await cli('intention', 'check', 'web', 'db');
  assert.deepEqual([r.code, r.stdout], [1, 'Denied\n']);
  r = await cli('intention', 'check', 'api', 'db');
  assert.deepEqual([r.code, r.stdout], [0, 'Allowed\n']);
  r = await cli('intention', 'check', 'api', 'nothing-matches');
  assert.deepEqual([r.code, r.stdout], [1, 'Denied\n'], 'default policy deny');

  r = await cli('intention', 'delete', 'web', 'db');
  assert.deepEqual([r.code, r.stdout], [0, 'Intention deleted.\n']);
  r = await cli('intention', 'get', 'web', 'db');
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'nodemesh: Error: Intention with source "web" and destination "db" not found.\n');
  r = await cli('intention', 'get', 'not-a-uuid');
  assert.equal(r.code, 2);
  r = await cli('intention', 'create', '--allow', '--deny', 'a', 'b');
  assert.equal(r.code, 2);
});

test('connect check explains the decision with the certificates behind it', async () => {
  for (const name of ['api', 'db']) await cli('services', 'register', '--name', name, '--port', '9000');
  let r = await cli('connect', 'check', 'api', 'db');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Source leaf\s+spiffe:\/\/[0-9a-f-]+\.consul\/ns\/default\/dc\/dc1\/svc\/api/m);
  assert.match(r.stdout, /^Chain\s+both leaves verify/m);
  assert.match(r.stdout, /^Intentions\s+Matched intention: ALLOW default\/\* => default\/db/m);
  assert.match(r.stdout, /^Result\s+ALLOWED/m);
  r = await cli('--format', 'json', 'connect', 'check', 'cache', 'other');
  assert.equal(r.code, 1);
  const j = JSON.parse(r.stdout);
  assert.equal(j.allowed, false);
  assert.match(j.reason, /default_intention_policy \(deny\)/);
  assert.equal(j.source.onThisNode, false, 'no leaf for a service on no node here');
  r = await cli('connect', 'check', 'cache', 'db');
  assert.match(r.stdout, /^Source leaf\s+spiffe:\/\/\S+\/svc\/cache\s+\(not on this node/m);
  assert.match(r.stdout, /^Chain\s+the leaf held here verifies/m);
});

test('ca init writes a root and a 0600 key, and will not overwrite them', async () => {
  const dir = join(tempDir(), 'ca');
  let r = await runCli(['ca', 'init', '--out', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /trust domain [0-9a-f-]{36}\.consul/);
  assert.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
  assert.match(readFileSync(join(dir, 'ca.pem'), 'utf8'), /BEGIN CERTIFICATE/);
  r = await runCli(['ca', 'init', '--out', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /EEXIST/);
});

test('ca issue-intermediate: a per-node intermediate the agent then presents as its chain', async () => {
  const dir = tempDir();
  assert.equal((await runCli(['ca', 'init', '--out', join(dir, 'root')])).code, 0);
  const r = await runCli(['ca', 'issue-intermediate', '--ca-file', join(dir, 'root', 'ca.pem'), '--ca-key-file', join(dir, 'root', 'ca-key.pem'), '--node', 'n1', '--out', join(dir, 'n1')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(statSync(join(dir, 'n1', 'n1-ca-key.pem')).mode & 0o777, 0o600);
  // The intermediate names its node: another node's agent refuses to start with it.
  await assert.rejects(startTestAgent({ node: 'n9', bind: '127.0.17.1', caFile: join(dir, 'n1', 'n1-ca.pem'), caKeyFile: join(dir, 'n1', 'n1-ca-key.pem') }),
    (e: Error & { code?: string }) => e.code === 'AUTHORITY_CREDENTIAL_INVALID' && /node n1's intermediate, but this agent is node n9/.test(e.message));
  const a = await startTestAgent({ node: 'n1', bind: '127.0.17.1', caFile: join(dir, 'n1', 'n1-ca.pem'), caKeyFile: join(dir, 'n1', 'n1-ca-key.pem') });
  try {
    const roots = await (await a.api('/v1/agent/connect/ca/roots')).json() as { Roots: { IntermediateCerts: string[] | null; RootCert: string }[] };
    assert.equal(roots.Roots[0].RootCert, readFileSync(join(dir, 'root', 'ca.pem'), 'utf8'));
    assert.equal(roots.Roots[0].IntermediateCerts?.length, 1);
  } finally {
    await a.stop();
  }
  const bad = await runCli(['ca', 'issue-intermediate', '--ca-file', join(dir, 'nope.pem'), '--ca-key-file', join(dir, 'nope'), '--node', 'n2', '--out', dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /cannot load the root CA/);
});

test('ca issue-policy: a policy writer\'s credential; the agent holding it signs policy, a bad one stops the start with what to do', async () => {
  const dir = tempDir();
  assert.equal((await runCli(['ca', 'init', '--out', join(dir, 'root')])).code, 0);
  const r = await runCli(['--format', 'json', 'ca', 'issue-policy', '--ca-file', join(dir, 'root', 'ca.pem'), '--ca-key-file', join(dir, 'root', 'ca-key.pem'), '--name', 'ops', '--out', join(dir, 'pol')]);
  assert.equal(r.code, 0, r.stderr);
  const files = JSON.parse(r.stdout) as { policyCertFile: string; policyKeyFile: string };
  assert.equal(statSync(files.policyKeyFile).mode & 0o777, 0o600);
  const n1 = await runCli(['ca', 'issue-intermediate', '--ca-file', join(dir, 'root', 'ca.pem'), '--ca-key-file', join(dir, 'root', 'ca-key.pem'), '--node', 'w1', '--out', join(dir, 'w1')]);
  assert.equal(n1.code, 0, n1.stderr);
  const a = await startTestAgent({ node: 'w1', bind: '127.0.17.2', policyPort: 0, caFile: join(dir, 'w1', 'w1-ca.pem'), caKeyFile: join(dir, 'w1', 'w1-ca-key.pem'), policyCertFile: files.policyCertFile, policyKeyFile: files.policyKeyFile });
  try {
    const c = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'db', Action: 'deny' }) });
    assert.equal(c.status, 200);
    const { ID } = await c.json() as { ID: string };
    assert.ok(a.intentions.record(ID)?.sig, 'the record is signed by the policy key');
    const posture = ((await (await a.api('/v1/agent/posture')).json()) as { Findings: { Check: string; Status: string }[] }).Findings;
    assert.equal(posture.find((f) => f.Check === 'policy writer')?.Status, 'warn', 'no operator_token: warned');
  } finally {
    await a.stop();
  }
  // Another node's intermediate as the policy credential: refused at start.
  await assert.rejects(startTestAgent({ node: 'w1', bind: '127.0.17.2', caFile: join(dir, 'w1', 'w1-ca.pem'), caKeyFile: join(dir, 'w1', 'w1-ca-key.pem'), policyCertFile: join(dir, 'w1', 'w1-ca.pem'), policyKeyFile: join(dir, 'w1', 'w1-ca-key.pem') }),
    /not a policy credential/);
});
