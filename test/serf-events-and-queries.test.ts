// Events and queries across a mixed pool (two nodemesh agents and a real serf agent, one gossip key): `consul event`
// reaches every member, `serf event` reaches nodemesh's event list, `serf query` is acked by every member, and
// `serf keys -list` counts every member; a key change asked of nodemesh by a query is refused.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { poolCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { SERF, serfAvailable, serfCli, startSerf, type SerfAgent } from './helpers/serf-agent.js';
import { waitFor } from './helpers/wait-for.js';

const skip = !serfAvailable() || consulMissing() !== undefined;
const KEY = randomBytes(32).toString('base64');
let a: TestAgent;
let b: TestAgent;
let s: SerfAgent;

interface Ev { ID: string; Name: string; Payload: string | null; LTime: number }
const list = async (x: TestAgent, name?: string) => (await (await x.api(`/v1/event/list${name ? `?name=${name}` : ''}`)).json()) as Ev[];

before(async () => {
  if (skip) return;
  const ca = await poolCa();
  a = await startTestAgent({ node: 'ev-a', bind: '127.0.23.1', encrypt: KEY, ...ca });
  b = await startTestAgent({ node: 'ev-b', bind: '127.0.23.2', encrypt: KEY, join: [`127.0.23.1:${a.gossip.port}`], ...ca });
  s = await startSerf('ev-serf', '127.0.23.3', ['-encrypt', KEY]);
  await serfCli(s.rpc, 'join', `127.0.23.1:${a.gossip.port}`);
  await waitFor(async () => assert.equal((await (await a.api('/v1/agent/members')).json() as unknown[]).length, 3, 'three members'), 15_000);
});
after(async () => {
  await s?.stop();
  await b?.stop();
  await a?.stop();
});

test('consul event fires on one agent: every nodemesh agent lists it, the serf agent receives it', { skip }, async () => {
  const fired = await promisify(execFile)(CONSUL_BIN, ['event', '-name', 'deploy', 'v42'], { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` } });
  assert.match(fired.stdout, /Event ID: [0-9a-f-]{36}/);
  for (const x of [a, b]) {
    await waitFor(async () => {
      const [ev] = await list(x, 'deploy');
      assert.equal(ev?.Payload && Buffer.from(ev.Payload, 'base64').toString(), 'v42', `${x.gossip.serf.memberlist.cfg.name} lists deploy`);
    }, 10_000);
  }
  await waitFor(() => assert.match(s.output(), /Received event: user-event: consul:event:deploy/, 'serf got it'), 10_000);
});

test('serf event from the serf agent reaches nodemesh\'s event list as it was sent', { skip }, async () => {
  await serfCli(s.rpc, 'event', 'hello', 'from-serf');
  await waitFor(async () => {
    const [ev] = await list(b, 'hello');
    assert.equal(ev?.Payload && Buffer.from(ev.Payload, 'base64').toString(), 'from-serf', 'b lists serf\'s event');
  }, 10_000);
});

test('a blocking /v1/event/list returns when the next event arrives, with a new index', { skip }, async () => {
  const first = await a.api('/v1/event/list?name=wake');
  const index = first.headers.get('x-consul-index')!;
  const waiting = a.api(`/v1/event/list?name=wake&index=${index}&wait=10s`);
  await new Promise((r) => setTimeout(r, 200));
  await b.api('/v1/event/fire/wake', { method: 'PUT', body: 'now' });
  const r = await waiting;
  assert.notEqual(r.headers.get('x-consul-index'), index);
  assert.equal(((await r.json()) as Ev[]).length, 1);
});

test('serf query is acked by every member; serf keys -list counts the key on all three; a key change by query is refused', { skip }, async () => {
  const q = await serfCli(s.rpc, 'query', '-timeout', '3s', 'who-is-there', 'x');
  assert.match(q, /Total Acks: 3/, q);
  const keys = await serfCli(s.rpc, 'keys', '-list');
  assert.match(keys, new RegExp(`${KEY.replace(/[+/]/g, (c) => `\\${c}`)}\\s+\\[3/3\\]`), keys);
  // serf prints the members' refusals on stdout and exits 1.
  const install = await promisify(execFile)(SERF, ['keys', `-rpc-addr=${s.rpc}`, '-install', randomBytes(32).toString('base64')]).then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '');
  assert.match(install, /nodemesh changes its gossip keyring through its own API/, install);
});
