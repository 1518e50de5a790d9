// Secrets stay secret: a hardened agent at trace level, put through leaf issue, CA reload, gossip-key rotation,
// intentions and bad requests, never writes a private key, the gossip keys or the ACL token to its log, and no
// API answer but the token-guarded leaf (and keyring) endpoints carries them. Agent on 127.0.97.1.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { put, sharedCa, spawnAgent, tempDir } from './helpers/agent-process.js';

test('a hardened agent at trace level never logs or serves a private key, a gossip key or the token', async () => {
  const dir = tempDir();
  const { caFile, caKeyFile } = await sharedCa();
  const token = randomBytes(16).toString('hex');
  const k1 = randomBytes(32).toString('base64');
  const k2 = randomBytes(32).toString('base64');
  const cfg = join(dir, 'agent.json');
  writeFileSync(cfg, JSON.stringify({ ca_file: caFile, ca_key_file: caKeyFile, encrypt: k1, acl_token: token, log_level: 'trace' }), { mode: 0o600 });
  const a = await spawnAgent(['--node', 'secrets', '--bind', '127.0.97.1', '--data-dir', join(dir, 'data'), '--config-file', cfg], {}, { autoWaive: false });
  try {
    const auth = { 'X-Consul-Token': token };
    const call = async (path: string, init: RequestInit = {}) => {
      const r = await fetch(`${a.url}${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string> ?? {}) } });
      return { status: r.status, text: await r.text() };
    };
    assert.equal((await call('/v1/agent/service/register', put({ Name: 'api', Port: 9000, Connect: { SidecarService: {} } }))).status, 200);
    const leaf = await call('/v1/agent/connect/ca/leaf/api');
    const leafKey = /PRIVATE KEY-----\\n([A-Za-z0-9+/]{40})/.exec(leaf.text)?.[1];
    assert.ok(leafKey, 'the local leaf endpoint, with the token, is the one place a key is served');
    assert.equal((await fetch(`${a.url}/v1/agent/connect/ca/leaf/api`)).status, 403, 'not without the token');
    assert.equal((await call('/v1/operator/keyring', { method: 'POST', body: JSON.stringify({ Key: k2 }) })).status, 200);
    assert.equal((await call('/v1/operator/keyring', { method: 'PUT', body: JSON.stringify({ Key: k2 }) })).status, 200);
    assert.equal((await call('/v1/agent/reload', { method: 'PUT' })).status, 200);
    await call('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'allow' }) });
    await call('/v1/operator/keyring', { method: 'POST', body: JSON.stringify({ Key: 'bm90IGEga2V5' }) });
    await fetch(`${a.url}/v1/agent/service/register?token=wrong-${token.slice(0, 4)}`, { method: 'PUT', body: '{}' });

    const caKey = readFileSync(caKeyFile, 'utf8');
    const keyBody = caKey.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    for (const path of ['/v1/agent/self', '/v1/agent/posture', '/metrics', '/v1/agent/services', '/v1/catalog/nodes', '/v1/agent/members']) {
      const r = await call(path);
      assert.equal(r.status, 200, path);
      for (const [name, secret] of [['a private key', 'PRIVATE KEY'], ['gossip key 1', k1], ['gossip key 2', k2], ['the token', token], ['the CA key', keyBody.slice(0, 40)]]) {
        assert.ok(!r.text.includes(secret), `${path} carries ${name}`);
      }
    }
    a.proc.kill('SIGTERM');
    assert.equal(await a.exited, 0);
    const log = a.output();
    assert.ok(log.length > 2000, 'trace logging was on');
    for (const [name, secret] of [['a private key', 'PRIVATE KEY'], ['gossip key 1', k1], ['gossip key 2', k2], ['the token', token], ['the CA key', keyBody.slice(0, 40)], ['the leaf key', leafKey]]) {
      assert.ok(!log.includes(secret), `the log holds ${name}`);
    }
  } finally {
    a.proc.kill('SIGKILL');
  }
});
