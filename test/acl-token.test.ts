// API writes need the agent's ACL token when one is set: three ways to send it; wrong or missing ones get 403 and change nothing.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { put, runCli, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';

const TOKEN = 'test-token-0123456789';
let agent: TestAgent;
before(async () => { agent = await startTestAgent({ aclToken: TOKEN }); });
after(async () => { await agent.stop(); });

const services = async () => Object.keys(await (await agent.api('/v1/agent/services')).json() as object).sort();

test('writes without a token, or with a wrong one, are 403 and change nothing', async () => {
  const attempts: Record<string, string>[] = [{}, { 'X-Consul-Token': 'wrong' }, { Authorization: 'Bearer wrong' }, { 'X-Consul-Token': `${TOKEN}x` }];
  for (const headers of attempts) {
    const r = await agent.api('/v1/agent/service/register', put({ Name: 'web' }, headers));
    assert.equal(r.status, 403);
    assert.match(await r.text(), /Permission denied/);
  }
  assert.equal((await agent.api('/v1/agent/service/register?token=nope', put({ Name: 'web' }))).status, 403);
  assert.equal((await agent.api('/v1/agent/leave', put())).status, 403);
  assert.deepEqual(await services(), []);
});

test('the token is accepted in X-Consul-Token, ?token= and Authorization: Bearer', async () => {
  assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'a' }, { 'X-Consul-Token': TOKEN }))).status, 200);
  assert.equal((await agent.api(`/v1/agent/service/register?token=${TOKEN}`, put({ Name: 'b' }))).status, 200);
  assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'c' }, { Authorization: `Bearer ${TOKEN}` }))).status, 200);
  assert.deepEqual(await services(), ['a', 'b', 'c']);
});

test('a refused deregistration leaves the service in place', async () => {
  assert.equal((await agent.api('/v1/agent/service/deregister/a', put())).status, 403);
  assert.ok((await services()).includes('a'));
});

test('reads need no token', async () => {
  assert.equal((await agent.api('/v1/catalog/services')).status, 200);
  assert.equal((await agent.api('/v1/health/service/a')).status, 200);
});

test('without a token, a non-loopback --client is refused at start; a token from env allows it', async () => {
  let r = await runCli(['agent', '--dev', '--client', '0.0.0.0', '--http-port', '0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /without an ACL token/);
  r = await runCli(['agent', '--data-dir', tempDir(), '--client', '0.0.0.0', '--http-port', '0', '--acl-token', 'short']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /acl_token.*at least 8/);
});
