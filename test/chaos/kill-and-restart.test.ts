// Chaos: SIGKILL an agent in the middle of acknowledged writes and under load, start it again on the same data —
// no acknowledged write is lost anywhere, traffic leaves the dead node, the node and its services come back.
// Agents on 127.0.90.1-3, workloads on 127.0.90.11+.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { memberStatus, say, Stage, startPool, type ChaosAgent } from './chaos-cluster.js';
import { layMesh } from './mesh-setup.js';
import { RogueCaller, SteadyLoad } from './mesh-load.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const S = 'kill -9';
const stage = new Stage();
after(() => stage.end());

interface Acked { services: string[]; intentions: Map<string, string>; entries: Map<string, string> }

/** Writes to `a` one after another until it stops answering; every acknowledged write is recorded; resolves with when and why it stopped. */
async function writeUntilDead(a: ChaosAgent, tag: string, acked: Acked): Promise<{ at: number; why: string }> {
  for (let i = 0; ; i++) {
    try {
      if (i % 3 === 0) {
        await a.call('PUT', '/v1/agent/service/register', { Name: 'ledger', ID: `ledger-${tag}-${i}`, Address: '127.0.90.30', Port: 2000 + i });
        acked.services.push(`ledger-${tag}-${i}`);
      } else if (i % 3 === 1) {
        const action = i % 2 ? 'allow' : 'deny';
        const { ID } = await a.call<{ ID: string }>('POST', '/v1/connect/intentions', { SourceName: `src-${tag}-${i}`, DestinationName: 'ledger', Action: action });
        acked.intentions.set(ID, action);
      } else {
        await a.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: `cfg-${tag}-${i}`, Protocol: 'http' });
        acked.entries.set(`cfg-${tag}-${i}`, 'http');
      }
    } catch (e) {
      return { at: Date.now(), why: (e as Error).message }; // the agent is gone: this write was never acknowledged
    }
  }
}

async function assertHasAll(a: ChaosAgent, acked: Acked, checkServices: 'local' | 'catalog'): Promise<void> {
  const ids = checkServices === 'local'
    ? Object.keys(await a.get<Record<string, unknown>>('/v1/agent/services'))
    : (await a.get<{ ServiceID: string }[]>('/v1/catalog/service/ledger')).map((s) => s.ServiceID);
  const missing = acked.services.filter((id) => !ids.includes(id));
  assert.deepEqual(missing, [], `${a.name} lost acknowledged registrations`);
  const intentions = new Map((await a.get<{ ID: string; Action: string }[]>('/v1/connect/intentions')).map((i) => [i.ID, i.Action]));
  for (const [id, action] of acked.intentions) assert.equal(intentions.get(id), action, `${a.name}: acknowledged intention ${id}`);
  const entries = new Map((await a.get<{ Name: string; Protocol: string }[]>('/v1/config/service-defaults')).map((e) => [e.Name, e.Protocol]));
  for (const [name, p] of acked.entries) assert.equal(entries.get(name), p, `${a.name}: acknowledged config entry ${name}`);
}

test('SIGKILL during acknowledged writes and under load: nothing acknowledged is lost, traffic moves, the node comes back', async () => {
  const { agents } = await startPool(stage, '127.0.90', ['chaos-a', 'chaos-b', 'chaos-c']);
  const [a, b, c] = agents;
  const mesh = stage.keep(await layMesh('127.0.90', a, [b, c]), (m) => m.close());
  const load = stage.keep(new SteadyLoad(mesh.webIp, mesh.webPort, 8), (l) => l.stop());
  const rogue = stage.keep(new RogueCaller(mesh.rogueIp, mesh.roguePort), (r) => r.stop());
  await waitFor(() => assert.ok(mesh.apps.get('chaos-b')!.hits > 50 && mesh.apps.get('chaos-c')!.hits > 50, 'both instances serve'), 20_000);

  // Two writers on the victim, killed while both have a write in flight.
  const onVictim: Acked = { services: [], intentions: new Map(), entries: new Map() };
  const writers = [writeUntilDead(c, 'w1', onVictim), writeUntilDead(c, 'w2', onVictim)];
  await sleep(1500);
  const killedAt = Date.now();
  await c.kill9();
  for (const w of await Promise.all(writers)) assert.ok(w.at >= killedAt, `a writer stopped before the kill: ${w.why}`);
  say(S, `killed ${c.name} with SIGKILL after it acknowledged ${onVictim.services.length} registrations, ${onVictim.intentions.size} intentions, ${onVictim.entries.size} config entries (two writers in flight)`);

  // While it is down, the others keep taking writes that it must learn when it is back.
  const elsewhere: Acked = { services: [], intentions: new Map(), entries: new Map() };
  for (let i = 0; i < 5; i++) {
    const { ID } = await a.call<{ ID: string }>('POST', '/v1/connect/intentions', { SourceName: `while-down-${i}`, DestinationName: 'ledger', Action: 'deny' });
    elsewhere.intentions.set(ID, 'deny');
  }
  await b.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'while-down', Protocol: 'grpc' });
  elsewhere.entries.set('while-down', 'grpc');

  await waitFor(async () => assert.equal((await memberStatus(a))[c.name], 4), 30_000);
  const failedAt = Date.now();
  // The kill window: requests still in flight at the kill, or started before the failure was known.
  const inWindow = load.outcomes.filter((o) => o.end >= killedAt && o.start < failedAt);
  const lost = inWindow.filter((o) => !o.ok);
  say(S, `${a.name} marked ${c.name} failed ${failedAt - killedAt} ms after the kill; meanwhile ${inWindow.length} requests, ${lost.length} failed (in flight on the dead node: ${[...new Set(lost.map((o) => o.err))].join(', ') || 'none'}), last failure ${lost.length ? `${Math.max(...lost.map((o) => o.end)) - killedAt} ms` : '-'} after the kill`);
  await sleep(3000);
  const afterFailed = load.stats(failedAt, Date.now());
  say(S, `after the failure was known: ${afterFailed.sent} requests, ${afterFailed.failed} failed, served by ${JSON.stringify(afterFailed.by)}`);
  assert.equal(afterFailed.failed, 0, 'no request may fail once the dead node is known');

  const restartAt = Date.now();
  await c.start(); // no --join: it rejoins its last peers from its snapshot
  await waitFor(async () => {
    assert.equal((await memberStatus(a))[c.name], 1);
    assert.equal((await memberStatus(c))[a.name], 1);
  }, 30_000);
  const rejoined = Date.now();
  await assertHasAll(c, onVictim, 'local');
  say(S, `${c.name} restarted and rejoined in ${rejoined - restartAt} ms; every write it acknowledged before the kill is in its state`);
  const all: Acked = {
    services: onVictim.services,
    intentions: new Map([...onVictim.intentions, ...elsewhere.intentions]),
    entries: new Map([...onVictim.entries, ...elsewhere.entries]),
  };
  for (const x of agents) await waitFor(() => assertHasAll(x, all, 'catalog'), 45_000);
  say(S, `all three agents hold every acknowledged write (${all.services.length} registrations, ${all.intentions.size} intentions, ${all.entries.size} config entries) ${Date.now() - restartAt} ms after the restart`);

  // Keep-alive connections stay where they are (L4); new connections spread over both instances again.
  await waitFor(async () => assert.equal((await a.get<unknown[]>('/v1/health/connect/api?passing')).length, 2), 30_000);
  const fresh = new SteadyLoad(mesh.webIp, mesh.webPort, 4, 60_000, false);
  await waitFor(() => assert.ok((fresh.stats().by[c.name] ?? 0) > 20, 'the restarted instance serves'), 30_000);
  await fresh.stop();
  const f = fresh.stats();
  say(S, `${c.name}'s api instance takes new connections again ${Date.now() - restartAt} ms after the restart (fresh connections: ${JSON.stringify(f.by)}, ${f.failed} failed)`);
  assert.equal(f.failed, 0);
  await load.stop();
  await rogue.stop();
  const total = load.stats();
  const outside = load.outcomes.filter((o) => !o.ok && (o.end < killedAt || o.start >= failedAt)).map((o) => `${o.err} at ${o.start - killedAt} ms`);
  say(S, `load: ${total.sent} requests, ${total.failed} failed; outside the kill window: ${outside.join(', ') || 'none'}; rogue caller: ${rogue.attempts} attempts, ${rogue.breaches} got through`);
  assert.deepEqual(outside, [], 'requests fail only while the dead node is not yet known');
  assert.equal(rogue.breaches, 0, 'a caller no intention allows must never reach a workload');
  assert.ok(total.sent > 1000, 'the load ran');
});
