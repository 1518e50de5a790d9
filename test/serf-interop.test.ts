// Interop with the real `serf agent` (Debian's serf 0.9.4): joins both ways, tags, graceful leave, failure, encryption.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { SerfNode } from '../membership/serf-layer.js';
import { serfAvailable, serfCli, serfMembers, startSerf, type SerfAgent } from './helpers/serf-agent.js';
import { waitFor } from './helpers/wait-for.js';

const run = serfAvailable();
const quiet = process.env.NODEMESH_TEST_LOG ? { debug: console.log, info: console.log, warn: console.log } : { debug: () => undefined, info: () => undefined, warn: () => undefined };
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); });

async function serf(name: string, ip: string, extra: string[] = []): Promise<SerfAgent> {
  const s = await startSerf(name, ip, extra);
  cleanups.push(() => s.stop());
  return s;
}

async function node(name: string, ip: string, tags: Record<string, string>, keys?: Buffer[]): Promise<SerfNode> {
  const n = new SerfNode({ name, bindAddr: ip, port: 7946, keys }, tags, quiet);
  await n.start();
  cleanups.push(() => n.shutdown());
  return n;
}

const statusOf = async (rpc: string, name: string) => (await serfMembers(rpc)).find((m) => m.name === name)?.status;

test('nodemesh joins a serf pool: serf lists it alive with its tags; nodemesh lists serf; a graceful leave shows `left`', { skip: !run }, async () => {
  const s = await serf('go-a', '127.0.5.10', ['-tag', 'role=go']);
  const n = await node('mesh-a', '127.0.5.11', { role: 'nodemesh', dc: 'dc1', http: '8500' });
  assert.equal(await n.join([s.bind]), 1);
  await waitFor(async () => {
    const m = (await serfMembers(s.rpc)).find((x) => x.name === 'mesh-a');
    assert.equal(m?.status, 'alive');
    assert.deepEqual(m?.tags, { role: 'nodemesh', dc: 'dc1', http: '8500' });
    assert.equal(m?.addr, '127.0.5.11:7946');
  });
  assert.deepEqual(n.members().find((x) => x.name === 'go-a'), { name: 'go-a', addr: '127.0.5.10', port: 7946, tags: { role: 'go' }, status: 'alive' });
  // Still alive after several probe rounds: we answer serf's pings.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await statusOf(s.rpc, 'mesh-a'), 'alive');
  await n.leave();
  await waitFor(async () => assert.equal(await statusOf(s.rpc, 'mesh-a'), 'left'));
  assert.doesNotMatch(s.output(), /\[ERR\]/);
});

test('serf joins a nodemesh node; when the node dies without leaving, serf marks it failed', { skip: !run }, async () => {
  const n = await node('mesh-b', '127.0.5.21', { role: 'nodemesh' });
  const s = await serf('go-b', '127.0.5.20');
  await serfCli(s.rpc, 'join', '127.0.5.21:7946');
  await waitFor(async () => assert.equal(await statusOf(s.rpc, 'mesh-b'), 'alive'));
  await waitFor(() => assert.equal(n.members().find((x) => x.name === 'go-b')?.status, 'alive'));
  await n.shutdown(); // as kill -9: no leave, no more answers
  await waitFor(async () => assert.equal(await statusOf(s.rpc, 'mesh-b'), 'failed'), 20_000);
});

test('with the same --encrypt key both sides interoperate; with different keys they do not', { skip: !run }, async () => {
  const key = randomBytes(32);
  const s = await serf('go-c', '127.0.5.30', [`-encrypt=${key.toString('base64')}`]);
  const good = await node('mesh-c', '127.0.5.31', { role: 'nodemesh' }, [key]);
  assert.equal(await good.join([s.bind]), 1);
  await waitFor(async () => assert.equal(await statusOf(s.rpc, 'mesh-c'), 'alive'));
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await statusOf(s.rpc, 'mesh-c'), 'alive', 'encrypted probes are answered');

  const wrong = await node('mesh-d', '127.0.5.32', { role: 'nodemesh' }, [randomBytes(32)]);
  assert.equal(await wrong.join([s.bind]), 0);
  const plain = await node('mesh-e', '127.0.5.33', { role: 'nodemesh' });
  assert.equal(await plain.join([s.bind]), 0);
  await new Promise((r) => setTimeout(r, 1000));
  const names = (await serfMembers(s.rpc)).map((m) => m.name);
  assert.ok(!names.includes('mesh-d') && !names.includes('mesh-e'), `serf must not list wrongly keyed nodes: ${names}`);
});
