// Chaos: cut one agent off from the other two (iptables DROP between their loopback addresses), write conflicting
// updates on both sides, heal — both sides converge and the last writer wins everywhere (no split brain).
// Agents on 127.0.91.1-3, workloads on 127.0.91.11+.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { allAlive, memberStatus, say, Stage, startPool, type ChaosAgent } from './chaos-cluster.js';
import { layMesh } from './mesh-setup.js';
import { RogueCaller, SteadyLoad } from './mesh-load.js';
import { Partition, partitionUnavailable } from './partition.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const S = 'partition';
const partition = new Partition();
const stage = new Stage();
after(() => stage.end());

const intention = async (a: ChaosAgent, id: string) => (await a.get<{ Action: string; Description: string }>(`/v1/connect/intentions/${id}`));

test('a partition heals: members alive again, conflicting writes settle on the last writer on every agent, traffic flows', async () => {
  const why = partitionUnavailable();
  assert.equal(why, undefined, why);
  const { agents } = await startPool(stage, '127.0.91', ['part-a', 'part-b', 'part-c']);
  const [a, b, c] = agents;
  const mesh = stage.keep(await layMesh('127.0.91', a, [a, b]), (m) => m.close());
  const p = (await a.call<{ ID: string }>('POST', '/v1/connect/intentions', { SourceName: 'batch', DestinationName: 'api', Action: 'allow' })).ID;
  const q = (await a.call<{ ID: string }>('POST', '/v1/connect/intentions', { SourceName: 'report', DestinationName: 'api', Action: 'allow' })).ID;
  await a.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'part', Protocol: 'http' });
  // Both intentions on every agent before the cut (gossip does not promise p arrives before q: a lost packet waits
  // for push/pull), else a side may rightly answer 404 for one it never had.
  for (const x of agents) {
    for (const id of [p, q]) await waitFor(async () => assert.equal((await intention(x, id)).Action, 'allow', `${x.name} holds intention ${id}`), 40_000);
  }
  // A patient caller (30 s): a connection held on the far side must be closed by the mesh, not left to time out.
  const load = stage.keep(new SteadyLoad(mesh.webIp, mesh.webPort, 8, 10 * 60_000, true, 30_000), (l) => l.stop());
  const rogue = stage.keep(new RogueCaller(mesh.rogueIp, mesh.roguePort), (r) => r.stop());
  await waitFor(() => assert.ok(mesh.apps.get('part-a')!.hits > 50 && mesh.apps.get('part-b')!.hits > 50, 'both instances serve'), 20_000);

  const cutAt = Date.now();
  stage.keep(partition, (p) => p.heal()).cut([a.ip], [b.ip, c.ip]);
  say(S, `cut ${a.name} (${a.ip}) off from ${b.name} and ${c.name} with iptables DROP both ways`);
  await waitFor(async () => {
    const fromA = await memberStatus(a);
    const fromB = await memberStatus(b);
    assert.equal(fromA[b.name], 4);
    assert.equal(fromA[c.name], 4);
    assert.equal(fromB[a.name], 4);
  }, 60_000);
  const splitAt = Date.now();
  say(S, `both sides see the other failed ${splitAt - cutAt} ms after the cut`);

  // Conflicting writes on both sides; for each key the later one must win everywhere after the heal.
  await a.call('PUT', `/v1/connect/intentions/${p}`, { SourceName: 'batch', DestinationName: 'api', Action: 'allow', Description: 'minority side, earlier' });
  await b.call('PUT', `/v1/connect/intentions/${q}`, { SourceName: 'report', DestinationName: 'api', Action: 'deny', Description: 'majority side, earlier' });
  await a.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'part', Protocol: 'http2' });
  await sleep(20);
  await b.call('PUT', `/v1/connect/intentions/${p}`, { SourceName: 'batch', DestinationName: 'api', Action: 'deny', Description: 'majority side, later' });
  await a.call('PUT', `/v1/connect/intentions/${q}`, { SourceName: 'report', DestinationName: 'api', Action: 'allow', Description: 'minority side, later' });
  await c.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'part', Protocol: 'grpc' });
  await a.call('PUT', '/v1/agent/service/register', { Name: 'only-a', Port: 3001 });
  await b.call('PUT', '/v1/agent/service/register', { Name: 'only-b', Port: 3002 });
  await sleep(2000);
  const during = load.stats(cutAt, Date.now());
  // Requests caught by the cut started before it: count every request that was still open at the cut or began after.
  const hit = load.outcomes.filter((o) => !o.ok && o.end >= cutAt);
  const errors = [...new Set(hit.map((o) => o.err ?? '?'))];
  say(S, `during the partition: ${during.sent} requests started, ${hit.length} failed (${errors.join(', ') || 'none'}; the last ${hit.length ? Math.max(...hit.map((o) => o.end)) - cutAt : '-'} ms after the cut), served by ${JSON.stringify(during.by)}`);
  assert.equal((await intention(a, p)).Action, 'allow', 'the sides really were apart');

  partition.heal();
  const healAt = Date.now();
  say(S, `healed ${healAt - cutAt} ms after the cut`);
  await waitFor(() => allAlive(agents), 90_000);
  const membersAt = Date.now();
  await waitFor(async () => {
    for (const x of agents) {
      assert.equal((await intention(x, p)).Description, 'majority side, later', `${x.name}: intention ${p}`);
      assert.equal((await intention(x, q)).Description, 'minority side, later', `${x.name}: intention ${q}`);
      assert.equal((await x.get<{ Protocol: string }>('/v1/config/service-defaults/part')).Protocol, 'grpc', x.name);
      const services = await x.get<Record<string, string[]>>('/v1/catalog/services');
      assert.ok('only-a' in services && 'only-b' in services, `${x.name} lists both sides' services`);
    }
  }, 90_000);
  const convergedAt = Date.now();
  say(S, `after the heal: members all alive in ${membersAt - healAt} ms; intentions, config entries and catalog identical on all three in ${convergedAt - healAt} ms (last writer won on both keys)`);

  // Open keep-alive connections stay on the instance they had; new connections use both sides again.
  await waitFor(async () => assert.equal((await a.get<unknown[]>('/v1/health/connect/api?passing')).length, 2), 30_000);
  const steadyFrom = Date.now();
  const fresh = new SteadyLoad(mesh.webIp, mesh.webPort, 4, 60_000, false);
  await sleep(3000);
  await fresh.stop();
  const healed = load.stats(steadyFrom, Date.now());
  const f = fresh.stats();
  say(S, `after convergence: keep-alive load ${healed.sent} requests, ${healed.failed} failed; new connections ${f.sent}, ${f.failed} failed, served by ${JSON.stringify(f.by)}`);
  await load.stop();
  await rogue.stop();
  say(S, `rogue caller: ${rogue.attempts} attempts, ${rogue.breaches} got through`);
  // Callers whose connections were on the far side are let go (reset) once it is declared failed, not kept
  // waiting for the whole partition (without that, their requests hung until the heal, or until TCP gave up).
  const heldThrough = load.outcomes.filter((o) => o.start < cutAt && o.end >= healAt);
  assert.equal(heldThrough.length, 0, `${heldThrough.length} request(s) open at the cut were held until the heal`);
  assert.equal(healed.failed + f.failed, 0);
  assert.ok((f.by['part-b'] ?? 0) > 0, 'new connections reach the other side again');
  assert.equal(rogue.breaches, 0, 'a caller no intention allows must never reach a workload');
});
