// Agents in one gossip pool: --join, /v1/agent/members for the whole pool, keyring file, keygen, and a real serf agent as a member.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { poolCa, runCli, spawnAgent, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { serfAvailable, serfCli, serfMembers, startSerf } from './helpers/serf-agent.js';
import { waitFor } from './helpers/wait-for.js';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); });

async function agentAt(node: string, ip: string, extra: Record<string, unknown> = {}): Promise<TestAgent> {
  const a = await startTestAgent({ node, bind: ip, ...await poolCa(), ...extra });
  cleanups.push(() => a.stop());
  return a;
}

interface MemberJson { Name: string; Addr: string; Port: number; Status: number; Tags: Record<string, string>; DelegateCur: number }
const members = async (a: TestAgent) => (await (await a.api('/v1/agent/members')).json()) as MemberJson[];

test('three agents join through one seed; every agent lists all three alive with their tags', async () => {
  const seed = await agentAt('pool-1', '127.0.7.1');
  const b = await agentAt('pool-2', '127.0.7.2', { join: [`127.0.7.1:${seed.gossip.port}`] });
  const c = await agentAt('pool-3', '127.0.7.3', { join: [`127.0.7.1:${seed.gossip.port}`] });
  for (const a of [seed, b, c]) {
    await waitFor(async () => {
      const list = await members(a);
      assert.deepEqual(list.map((m) => [m.Name, m.Status]), [['pool-1', 1], ['pool-2', 1], ['pool-3', 1]]);
    });
  }
  const m1 = (await members(c)).find((m) => m.Name === 'pool-1')!;
  assert.equal(m1.Addr, '127.0.7.1');
  assert.equal(m1.Tags.dc, 'dc1');
  assert.equal(m1.Tags.http_port, String(seed.http.port));
  assert.equal(m1.DelegateCur, 5);
  // A graceful stop is a leave: the others see `left` (status 3), not failed.
  await b.stop();
  await waitFor(async () => assert.equal((await members(seed)).find((m) => m.Name === 'pool-2')?.Status, 3));
});

test('--join that reaches nobody fails the start with a clear message; --retry-join keeps trying', async () => {
  const r = await runCli(['agent', '--dev', '--http-port', '0', '--serf-lan-port', '0', '--bind', '127.0.7.9', '--join', '127.0.7.250:1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Failed to join any of 127\.0\.7\.250:1/);
  const late = await agentAt('late-seed', '127.0.7.11');
  const retrying = await agentAt('retrier', '127.0.7.10', { retryJoin: [`127.0.7.11:${late.gossip.port}`] });
  await waitFor(async () => assert.equal((await members(retrying)).length, 2));
});

test('a join name is tried at every address it resolves to, and an agent never counts joining itself', async () => {
  const seed = await agentAt('dns-seed', '127.0.0.1');
  const b = await agentAt('dns-b', '127.0.7.31', { join: [`localhost:${seed.gossip.port}`] });
  await waitFor(async () => assert.deepEqual((await members(b)).map((m) => m.Name), ['dns-b', 'dns-seed']));
  const port = await freePort('127.0.7.32');
  const lonely = await spawnAgent(['--dev', '--node', 'self-joiner', '--bind', '127.0.7.32', '--serf-lan-port', String(port), '--retry-join', `127.0.7.32:${port}`]);
  cleanups.push(async () => { lonely.proc.kill('SIGTERM'); await lonely.exited; });
  await waitFor(() => assert.match(lonely.output(), /retry-join: no address answered yet/));
  assert.doesNotMatch(lonely.output(), /joined the gossip pool/);
});

test('/v1/agent/ready: 200 for an agent alone by config; 503 with the reason until a joining agent has synced with a peer', async () => {
  const alone = await agentAt('ready-alone', '127.0.7.41');
  const r1 = await alone.api('/v1/agent/ready');
  assert.equal(r1.status, 200);
  assert.deepEqual(await r1.json(), { Ready: true });
  const port = await freePort('127.0.7.42');
  const waiting = await agentAt('ready-wait', '127.0.7.43', { retryJoin: [`127.0.7.42:${port}`] });
  const r2 = await waiting.api('/v1/agent/ready');
  assert.equal(r2.status, 503);
  assert.match(((await r2.json()) as { Reasons: string[] }).Reasons.join(), /catalog not yet synced with any peer \(joining 127\.0\.7\.42:\d+\)/);
  await agentAt('ready-late', '127.0.7.42', { serfLanPort: port });
  await waitFor(async () => assert.equal((await waiting.api('/v1/agent/ready')).status, 200), 15_000);
});

test('a restarted agent rejoins its last peers from the snapshot; after a graceful leave only with --rejoin-after-leave', async () => {
  const seed = await agentAt('snap-seed', '127.0.7.21');
  const dataDir = tempDir();
  // A fixed gossip port, as in production (8301): memberlist keeps a live node's address until it is declared dead.
  const base = ['--node', 'snap-b', '--bind', '127.0.7.22', '--data-dir', dataDir, '--serf-lan-port', String(await freePort('127.0.7.22'))];
  const peersOf = async (url: string) => ((await (await fetch(`${url}/v1/agent/members`)).json()) as MemberJson[]).filter((m) => m.Status === 1).map((m) => m.Name);
  let b = await spawnAgent([...base, '--join', `127.0.7.21:${seed.gossip.port}`]);
  cleanups.push(async () => { b.proc.kill('SIGKILL'); }); // whichever run of b is current, should an assertion fail
  await waitFor(async () => assert.deepEqual(await peersOf(b.url), ['snap-b', 'snap-seed']));
  // The crash comes once the snapshot holds the peer (it is written as the pool changes, not in the join's reply).
  await waitFor(() => assert.match(readFileSync(join(dataDir, 'serf', 'peers.json'), 'utf8'), /127\.0\.7\.21:/, 'peers snapshot written'));
  b.proc.kill('SIGKILL');
  await b.exited;

  // Crashed, restarted with no --join: the peers snapshot brings it back.
  b = await spawnAgent(base);
  await waitFor(async () => assert.deepEqual(await peersOf(b.url), ['snap-b', 'snap-seed']), 10_000);
  b.proc.kill('SIGTERM');
  await b.exited;

  // Left gracefully: a plain restart stays out, and says how to rejoin.
  b = await spawnAgent(base);
  await waitFor(() => assert.match(b.output(), /not rejoining previous members \(set rejoin_after_leave or --rejoin-after-leave/), 10_000);
  assert.deepEqual(await peersOf(b.url), ['snap-b']);
  b.proc.kill('SIGTERM');
  await b.exited;

  b = await spawnAgent([...base, '--rejoin-after-leave']);
  cleanups.push(async () => { b.proc.kill('SIGTERM'); await b.exited; });
  await waitFor(async () => assert.deepEqual(await peersOf(b.url), ['snap-b', 'snap-seed']), 10_000);
});

test('a damaged peers snapshot is ignored with a warning; the agent starts alone', async () => {
  const dataDir = tempDir();
  mkdirSync(join(dataDir, 'serf'));
  for (const junk of ['{not json', '{"left":false,"peers":["127.0.7.250:8301; rm -rf /"]}', '[]']) {
    writeFileSync(join(dataDir, 'serf', 'peers.json'), junk);
    const b = await spawnAgent(['--node', 'snap-junk', '--bind', '127.0.7.25', '--data-dir', dataDir]);
    await waitFor(() => assert.match(b.output(), /gossip peers snapshot ignored/));
    assert.equal(((await (await fetch(`${b.url}/v1/agent/members`)).json()) as MemberJson[]).length, 1);
    b.proc.kill('SIGTERM');
    await b.exited;
  }
});

test('--encrypt: the key is kept in a 0600 keyring file and used again after a restart; keygen makes keys', async () => {
  const k = await runCli(['keygen']);
  assert.equal(k.code, 0);
  const key = k.stdout.trim();
  assert.equal(Buffer.from(key, 'base64').length, 32);
  const bad = await runCli(['agent', '--dev', '--http-port', '0', '--encrypt', 'not-a-key']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid value for "encrypt".*keygen/);

  const dir = tempDir();
  let a = await spawnAgent(['--data-dir', dir, '--bind', '127.0.7.20', '--encrypt', key]);
  a.proc.kill('SIGTERM');
  assert.equal(await a.exited, 0);
  const ring = join(dir, 'serf', 'local.keyring');
  assert.equal(statSync(ring).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(ring, 'utf8')), [key]);
  // Restarted without --encrypt, it still speaks encrypted gossip: a keyless agent cannot join it.
  a = await spawnAgent(['--data-dir', dir, '--bind', '127.0.7.20']);
  try {
    const port = Number(/"gossip":"127\.0\.7\.20:(\d+)"/.exec(a.output())?.[1]);
    const plain = await runCli(['agent', '--dev', '--http-port', '0', '--serf-lan-port', '0', '--bind', '127.0.7.21', '--join', `127.0.7.20:${port}`]);
    assert.equal(plain.code, 1);
    const keyed = await agentAt('keyed', '127.0.7.22', { encrypt: key, join: [`127.0.7.20:${port}`] });
    assert.equal((await members(keyed)).length, 2);
  } finally {
    a.proc.kill('SIGTERM');
    await a.exited;
  }
});

test('a real serf agent joins the pool: serf lists the agents alive with tags, the agents list serf; a stopped agent is `left` in serf', { skip: !serfAvailable() }, async () => {
  const a = await agentAt('mesh-x', '127.0.7.30');
  const s = await startSerf('serf-x', '127.0.7.31', ['-tag', 'role=legacy']);
  cleanups.push(() => s.stop());
  await serfCli(s.rpc, 'join', `127.0.7.30:${a.gossip.port}`);
  await waitFor(async () => {
    const m = (await serfMembers(s.rpc)).find((x) => x.name === 'mesh-x');
    assert.equal(m?.status, 'alive');
    assert.equal(m?.tags.dc, 'dc1');
  });
  await waitFor(async () => assert.deepEqual((await members(a)).map((m) => [m.Name, m.Status, m.Tags.role]), [['mesh-x', 1, 'node'], ['serf-x', 1, 'legacy']]));
  const list = await runCli(['members', '--http-addr', a.url]);
  assert.match(list.stdout, /^serf-x\s+127\.0\.7\.31:7946\s+alive\s+role=legacy$/m);
  // A second agent and a burst of catalog changes: nodemesh's own messages fly, to nodemesh peers only.
  const b = await agentAt('mesh-y', '127.0.7.32', { join: [`127.0.7.30:${a.gossip.port}`] });
  for (let i = 0; i < 20; i++) await b.api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: `svc-${i}`, Port: 1000 + i }) });
  await waitFor(async () => assert.ok('svc-19' in (await (await a.api('/v1/catalog/services')).json() as object), 'a learns b\'s services'), 15_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.doesNotMatch(s.output(), /unknown type|\[WARN\] serf/, 'serf never receives a message it does not know');
  await a.stop();
  await waitFor(async () => assert.equal((await serfMembers(s.rpc)).find((x) => x.name === 'mesh-x')?.status, 'left'));
});
