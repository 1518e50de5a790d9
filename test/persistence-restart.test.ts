// What the API acknowledged survives the agent: SIGKILL mid-flight or a clean SIGTERM, the services and checks come back.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { put, runCli, spawnAgent, tempDir, WAIVE_ALL } from './helpers/agent-process.js';

test('services and check states acknowledged before SIGKILL are back after restart', async () => {
  const dataDir = tempDir();
  const args = ['--data-dir', dataDir, '--node', 'persist-node'];
  let a = await spawnAgent(args);
  const acked: string[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${a.url}/v1/agent/service/register`, put({ Name: `svc-${i}`, Port: 1000 + i, Tags: [`t${i}`], Check: { TTL: '1h' } }));
      assert.equal(r.status, 200);
      acked.push(`svc-${i}`);
    }
    const pass = await fetch(`${a.url}/v1/agent/check/pass/service:svc-3?note=all-good`, put());
    assert.equal(pass.status, 200);
    await fetch(`${a.url}/v1/agent/service/deregister/svc-0`, put());
    acked.shift();
    // Keep writing while the agent is killed: whatever was acknowledged must survive.
    const inflight = Promise.allSettled(Array.from({ length: 20 }, async (_, i) => {
      const r = await fetch(`${a.url}/v1/agent/service/register`, put({ Name: `late-${i}`, Port: 2000 + i }));
      if (r.status === 200) acked.push(`late-${i}`);
    }));
    await new Promise((r) => setTimeout(r, 5));
    a.proc.kill('SIGKILL');
    await inflight;
    assert.equal(await a.exited, 'SIGKILL');

    // No temp file left in a state that could confuse the next start, and the key file is private.
    const state = join(dataDir, 'local-state.json');
    assert.equal(statSync(state).mode & 0o777, 0o600);
    JSON.parse(readFileSync(state, 'utf8'));

    a = await spawnAgent(args);
    const services = await (await fetch(`${a.url}/v1/agent/services`)).json() as Record<string, { Tags: string[] }>;
    for (const id of acked) assert.ok(services[id], `acknowledged ${id} lost after SIGKILL`);
    assert.equal(services['svc-0'], undefined, 'deregistered service came back');
    assert.deepEqual(services['svc-5'].Tags, ['t5']);
    const checks = await (await fetch(`${a.url}/v1/agent/checks`)).json() as Record<string, { Status: string; Output: string }>;
    assert.equal(checks['service:svc-3'].Status, 'passing');
    assert.equal(checks['service:svc-3'].Output, 'all-good');
    assert.equal(checks['service:svc-4'].Status, 'critical');
    const catalog = await (await fetch(`${a.url}/v1/catalog/service/svc-7`)).json() as { Node: string }[];
    assert.equal(catalog[0].Node, 'persist-node');
  } finally {
    a.proc.kill('SIGKILL');
    await a.exited;
  }
});

test('SIGTERM: in-flight blocking query is answered, state flushed, exit 0, node ID kept', async () => {
  const dataDir = tempDir();
  let a = await spawnAgent(['--data-dir', dataDir]);
  const r = await fetch(`${a.url}/v1/agent/service/register`, put({ Name: 'web', Port: 80 }));
  assert.equal(r.status, 200);
  const self1 = await (await fetch(`${a.url}/v1/agent/self`)).json() as { Config: { NodeID: string } };
  const idx = (await fetch(`${a.url}/v1/catalog/services`)).headers.get('x-consul-index');
  const parked = fetch(`${a.url}/v1/catalog/services?index=${idx}&wait=5m`);
  await new Promise((res) => setTimeout(res, 100));
  a.proc.kill('SIGTERM');
  const answered = await parked;
  assert.equal(answered.status, 200);
  assert.equal(await a.exited, 0);
  assert.match(a.output(), /agent stopped/);

  a = await spawnAgent(['--data-dir', dataDir]);
  try {
    const services = await (await fetch(`${a.url}/v1/agent/services`)).json() as Record<string, unknown>;
    assert.ok(services.web);
    const self2 = await (await fetch(`${a.url}/v1/agent/self`)).json() as { Config: { NodeID: string } };
    assert.equal(self2.Config.NodeID, self1.Config.NodeID);
    // Indexes never go backwards across a restart.
    const idx2 = Number((await fetch(`${a.url}/v1/catalog/services`)).headers.get('x-consul-index'));
    assert.ok(idx2 >= Number(idx));
  } finally {
    a.proc.kill('SIGTERM');
    assert.equal(await a.exited, 0);
  }
});

test('PUT /v1/agent/leave stops the agent with exit 0', async () => {
  const a = await spawnAgent(['--dev']);
  const r = await fetch(`${a.url}/v1/agent/leave`, put());
  assert.equal(r.status, 200);
  assert.equal(await a.exited, 0);
});

test('--dev without --data-dir says where state goes, and removes it at exit', async () => {
  const a = await spawnAgent(['--dev']);
  const m = /"dataDir":"([^"]+)"[^\n]*fresh temporary directory/.exec(a.output());
  assert.ok(m, a.output());
  assert.ok(statSync(m[1]).isDirectory());
  a.proc.kill('SIGINT');
  assert.equal(await a.exited, 0);
  assert.throws(() => statSync(m[1]));
});

test('a corrupt state file stops the start with a clear message, and is left for the operator', async () => {
  const dataDir = tempDir();
  writeFileSync(join(dataDir, 'local-state.json'), '{"format":1,"node":');
  const r = await runCli(['agent', '--data-dir', dataDir, '--http-port', '0', '--log-json', ...WAIVE_ALL]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not valid JSON.*move it away/);
  assert.equal(readFileSync(join(dataDir, 'local-state.json'), 'utf8'), '{"format":1,"node":');
  assert.ok(!readdirSync(dataDir).some((f) => f.endsWith('.tmp')));
});
