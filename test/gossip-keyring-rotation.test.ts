// Live gossip-key rotation (/v1/operator/keyring, `nodemesh keyring`): a pool rotates K1 → K2 without losing a member, the keyring file keeps it, bad input changes nothing.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { poolCa, put, runCli, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); });

const newKey = (bytes = 32) => randomBytes(bytes).toString('base64');

async function agentAt(node: string, ip: string, extra: Parameters<typeof startTestAgent>[0] = {}): Promise<TestAgent> {
  const a = await startTestAgent({ node, bind: ip, ...await poolCa(), ...extra });
  cleanups.push(() => a.stop());
  return a;
}

const keyringCall = (a: TestAgent, method: string, body: unknown, headers: Record<string, string> = {}) =>
  a.api('/v1/operator/keyring', { method, headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

interface KeyringJson { WAN: boolean; Datacenter: string; Segment: string; Keys: Record<string, number>; PrimaryKeys: Record<string, number>; NumNodes: number }

async function keyring(a: TestAgent, headers: Record<string, string> = {}): Promise<KeyringJson[]> {
  const r = await a.api('/v1/operator/keyring', { headers });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json() as Promise<KeyringJson[]>;
}

/** The keys in Consul's shape, as this agent reports them: each counted once, NumNodes 1. */
const ringOf = (keys: string[], primary: string): KeyringJson[] => [{
  WAN: false, Datacenter: 'dc1', Segment: '', Keys: Object.fromEntries(keys.map((k) => [k, 1])), PrimaryKeys: { [primary]: 1 }, NumNodes: 1,
}];

const keyringFile = (a: TestAgent) => join(a.dataDir, 'serf', 'local.keyring');
const fileKeys = (a: TestAgent) => JSON.parse(readFileSync(keyringFile(a), 'utf8')) as string[];

const alive = async (a: TestAgent) => ((await (await a.api('/v1/agent/members')).json()) as { Name: string; Status: number }[])
  .filter((m) => m.Status === 1).map((m) => m.Name);

test('three agents rotate K1 → K2 (install, use, remove on each): members stay alive, replication keeps working, then only K2 joins', async () => {
  const K1 = newKey();
  const K2 = newKey(24);
  const a = await agentAt('rot-a', '127.0.93.1', { encrypt: K1 });
  const b = await agentAt('rot-b', '127.0.93.2', { encrypt: K1, join: [`127.0.93.1:${a.gossip.port}`] });
  const c = await agentAt('rot-c', '127.0.93.3', { encrypt: K1, join: [`127.0.93.1:${a.gossip.port}`] });
  const pool = [a, b, c];
  const names = ['rot-a', 'rot-b', 'rot-c'];
  for (const x of pool) await waitFor(async () => assert.deepEqual(await alive(x), names));
  const undecryptable = () => pool.map((x) => x.gossip.serf.memberlist.dropped.decrypt);
  const before = undecryptable();

  let round = 0;
  /** A service registered on one agent shows up in another's catalog: gossip still carries changes. */
  const replicates = async () => {
    round++;
    const from = pool[round % 3];
    const to = pool[(round + 1) % 3];
    assert.equal((await from.api('/v1/agent/service/register', put({ Name: `svc-${round}`, Port: 7000 + round }))).status, 200);
    // assert.ok always with a message: without one, a failing assert parses this file to quote it, stalling the agents' event loop.
    const name = `svc-${round}`;
    await waitFor(async () => assert.ok(name in (await (await to.api('/v1/catalog/services')).json() as object), `${name} not yet in ${to.local.nodeName}'s catalog`), 15_000);
  };
  await replicates();

  const step = async (method: string, key: string, expected: KeyringJson[]) => {
    for (const x of pool) {
      const r = await keyringCall(x, method, { Key: key });
      assert.equal(r.status, 200, `${method} on ${x.local.nodeName}: ${await r.clone().text()}`);
      assert.equal(await r.text(), '');
      assert.deepEqual(await keyring(x), expected);
    }
    for (const x of pool) assert.deepEqual(await alive(x), names);
    await replicates();
  };
  await step('POST', K2, ringOf([K1, K2], K1));
  await step('PUT', K2, ringOf([K2, K1], K2));
  await step('DELETE', K1, ringOf([K2], K2));
  // Every packet of the rotation was opened with a key its receiver had: no probe was lost to it.
  assert.deepEqual(undecryptable(), before);
  for (const x of pool) assert.deepEqual(fileKeys(x), [K2]);

  // Stopped if it starts after all, so a failure here cannot leave it running.
  const old = startTestAgent({ node: 'rot-old', bind: '127.0.93.4', encrypt: K1, join: [`127.0.93.1:${a.gossip.port}`] });
  await assert.rejects(old.then(async (x) => { await x.stop(); return x; }), /Failed to join any of 127\.0\.93\.1:/);
  const d = await agentAt('rot-new', '127.0.93.5', { encrypt: K2, join: [`127.0.93.1:${a.gossip.port}`] });
  for (const x of [...pool, d]) await waitFor(async () => assert.deepEqual(await alive(x), [...names, 'rot-new']));
  assert.ok(!(await alive(a)).includes('rot-old'), 'the agent with the old key is not a member');
});

test('every change is saved to the 0600 keyring file; a restarted agent uses the rotated keys, not `encrypt`', async () => {
  const K1 = newKey();
  const K2 = newKey(16);
  const dataDir = tempDir();
  const p = await startTestAgent({ node: 'persist-p', bind: '127.0.93.6', encrypt: K1, dataDir });
  cleanups.push(() => p.stop()); // stop() is idempotent: this only matters when an assertion fails first
  const saved = async (method: string, key: string, expected: string[]) => {
    assert.equal((await keyringCall(p, method, { Key: key })).status, 200);
    assert.deepEqual(fileKeys(p), expected);
    assert.equal(statSync(keyringFile(p)).mode & 0o777, 0o600);
  };
  await saved('POST', K2, [K1, K2]);
  await saved('PUT', K2, [K2, K1]);
  await saved('DELETE', K1, [K2]);
  await p.stop();

  // Restarted with the old `encrypt`: the keyring file wins, so it joins a K2-only agent and lists K2 alone.
  const q = await agentAt('persist-q', '127.0.93.7', { encrypt: K2 });
  const again = await agentAt('persist-p', '127.0.93.6', { encrypt: K1, dataDir, join: [`127.0.93.7:${q.gossip.port}`] });
  assert.deepEqual(await keyring(again), ringOf([K2], K2));
  await waitFor(async () => assert.deepEqual(await alive(q), ['persist-p', 'persist-q']));
});

test('bad input is a 400 that says what is wrong, no-ops succeed, and the keyring and its file stay as they were', async () => {
  const K1 = newKey();
  const K2 = newKey();
  const a = await agentAt('bad-a', '127.0.93.8', { encrypt: K1 });
  assert.equal((await keyringCall(a, 'POST', { Key: K2 })).status, 200);
  const ring = await keyring(a);
  const file = readFileSync(keyringFile(a), 'utf8');
  const cases: [string, unknown, RegExp][] = [
    ['POST', { Key: 'not base64!!' }, /Key is not valid base64.*nodemesh keygen/],
    ['POST', { Key: `${newKey(32).slice(0, -1)}` }, /Key is not valid base64/],
    ['POST', { Key: newKey(20) }, /Key is 20 bytes after base64 decoding, but a gossip key must be 16, 24 or 32 bytes/],
    ['POST', { Key: '' }, /Key is empty/],
    ['POST', { Key: newKey(), Extra: 1 }, /Request decode failed: json: unknown field "Extra"/],
    ['POST', { Key: 42 }, /Request decode failed: json: cannot unmarshal number into Go struct field \.Key of type string/],
    ['POST', {}, /Key is missing/],
    ['POST', 'not json', /Request decode failed/],
    ['DELETE', { Key: K1 }, /Removing the primary key is not allowed: make another installed key primary first/],
    ['PUT', { Key: newKey() }, /Requested key is not in the keyring: install it first/],
  ];
  for (const [method, body, message] of cases) {
    const r = await keyringCall(a, method, body);
    const text = await r.text();
    assert.equal(r.status, 400, `${method} ${JSON.stringify(body)}: ${text}`);
    assert.match(text, message);
  }
  // As memberlist: installing an installed key, using the primary one and removing an absent one change nothing, and succeed.
  for (const [method, key] of [['POST', K2], ['PUT', K1], ['DELETE', newKey()]]) assert.equal((await keyringCall(a, method, { Key: key })).status, 200);
  assert.deepEqual(await keyring(a), ring);
  assert.equal(readFileSync(keyringFile(a), 'utf8'), file);

  // Without encryption there is no keyring, and none is started at runtime.
  const plain = await agentAt('bad-plain', '127.0.93.9');
  for (const [method, body] of [['GET', undefined], ['POST', { Key: K1 }], ['PUT', { Key: K1 }], ['DELETE', { Key: K1 }]] as const) {
    const r = await plain.api('/v1/operator/keyring', { method, body: body === undefined ? undefined : JSON.stringify(body) });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /Gossip encryption is not enabled on this agent.*enabling encryption at runtime is not supported: set `encrypt` in the config.*restart/);
  }
  assert.ok(!existsSync(keyringFile(plain)), 'no keyring file is made for a plaintext agent');
  assert.equal(plain.gossip.serf.memberlist.cfg.keys.length, 0);
});

test('with an ACL token set, listing the keyring needs it as much as changing it', async () => {
  const TOKEN = 'keyring-token-0123456789';
  const K1 = newKey();
  const a = await agentAt('acl-a', '127.0.93.10', { encrypt: K1, aclToken: TOKEN });
  const list = await a.api('/v1/operator/keyring');
  assert.equal(list.status, 403);
  assert.match(await list.text(), /Permission denied: listing the gossip keyring returns the keys/);
  for (const method of ['POST', 'PUT', 'DELETE']) {
    assert.equal((await keyringCall(a, method, { Key: newKey() }, { 'X-Consul-Token': 'wrong' })).status, 403);
  }
  assert.deepEqual(await keyring(a, { 'X-Consul-Token': TOKEN }), ringOf([K1], K1));
  assert.equal((await keyringCall(a, 'POST', { Key: newKey() }, { Authorization: `Bearer ${TOKEN}` })).status, 200);
});

test('nodemesh keyring: list as a table and as JSON, install/use/remove exit 0, a bad key exits 1 with the reason', async () => {
  const TOKEN = 'cli-keyring-token';
  const K1 = newKey();
  const K2 = newKey();
  const a = await agentAt('cli-a', '127.0.93.11', { encrypt: K1, aclToken: TOKEN });
  const cli = (...args: string[]) => runCli(['keyring', ...args, '--http-addr', a.url, '--token', TOKEN]);

  const denied = await runCli(['keyring', 'list', '--http-addr', a.url]);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /agent answered 403: .*\(this needs a token: pass --token or set NODEMESH_HTTP_TOKEN\)/);

  const installed = await cli('install', K2);
  assert.equal(installed.code, 0, installed.stderr);
  assert.match(installed.stdout, /Key installed on the agent at .*Install it on every agent, then make it primary with 'nodemesh keyring use <key>'/);
  const table = await cli('list');
  assert.equal(table.code, 0, table.stderr);
  const pad = ' '.repeat(K1.length - 'KEY'.length);
  assert.equal(table.stdout, `KEY${pad}  PRIMARY\n${K1}  yes\n${K2}  no\n`);

  const used = await cli('use', K2);
  assert.equal(used.code, 0, used.stderr);
  assert.match(used.stdout, /Key is now primary.*remove the old key with 'nodemesh keyring remove <old-key>'/);
  const removed = await cli('remove', K1);
  assert.equal(removed.code, 0, removed.stderr);
  const json = await runCli(['--format', 'json', 'keyring', 'list', '--http-addr', a.url, '--token', TOKEN]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), ringOf([K2], K2));

  const bad = await cli('install', 'c2hvcnQ=');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /agent answered 400: Key is 5 bytes after base64 decoding, but a gossip key must be 16, 24 or 32 bytes.*nodemesh keygen/);
  const primary = await cli('remove', K2);
  assert.equal(primary.code, 1);
  assert.match(primary.stderr, /Removing the primary key is not allowed/);
  assert.deepEqual(fileKeys(a), [K2]);
});
