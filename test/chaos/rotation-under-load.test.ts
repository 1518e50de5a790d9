// Chaos: rotate the CA root and then the gossip key across a pool of three agents while requests flow (keep-alive
// and a new connection per request) — zero failed requests, members alive throughout, replication still works.
// Agents on 127.0.92.1-3, workloads on 127.0.92.11+.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { allAlive, say, Stage, startPool, type ChaosAgent } from './chaos-cluster.js';
import { layMesh } from './mesh-setup.js';
import { RogueCaller, SteadyLoad } from './mesh-load.js';
import { CLI } from '../helpers/agent-process.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const S = 'rotation';
const stage = new Stage();
after(() => stage.end());

/** Changes keys in an agent's config file and has it reload (PUT /v1/agent/reload answers once it is applied). */
async function reconfigure(a: ChaosAgent, patch: Record<string, unknown>): Promise<void> {
  writeFileSync(a.configFile, JSON.stringify({ ...JSON.parse(readFileSync(a.configFile, 'utf8')) as object, ...patch }, null, 2));
  await a.call('PUT', '/v1/agent/reload');
}

test('CA root and gossip key rotated under load: zero failed requests, the pool stays whole', async () => {
  const { agents, secrets } = await startPool(stage, '127.0.92', ['rot-a', 'rot-b', 'rot-c']);
  const [a, b, c] = agents;
  const mesh = stage.keep(await layMesh('127.0.92', a, [b, c]), (m) => m.close());
  const keepAlive = stage.keep(new SteadyLoad(mesh.webIp, mesh.webPort, 6), (l) => l.stop());
  const fresh = stage.keep(new SteadyLoad(mesh.webIp, mesh.webPort, 2, 10 * 60_000, false), (l) => l.stop());
  const loads = [keepAlive, fresh];
  const rogue = stage.keep(new RogueCaller(mesh.rogueIp, mesh.roguePort), (r) => r.stop());
  await waitFor(() => assert.ok(fresh.stats().by['rot-b'] > 10 && fresh.stats().by['rot-c'] > 10, 'both instances serve'), 20_000);
  const t0 = Date.now();

  // CA: trust the next root everywhere, then switch each agent to it (the old one stays trusted), one at a time.
  const next = join(secrets.dir, 'ca-next');
  execFileSync(process.execPath, [CLI, 'ca', 'init', '--out', next], { stdio: 'ignore' });
  const nextPem = readFileSync(join(next, 'ca.pem'), 'utf8');
  for (const x of agents) await reconfigure(x, { ca_trusted_roots_file: join(next, 'ca.pem') });
  say(S, 'step 1: every agent trusts the next root as well');
  for (const x of agents) {
    await reconfigure(x, { ca_file: join(next, 'ca.pem'), ca_key_file: join(next, 'ca-key.pem'), ca_trusted_roots_file: secrets.caFile });
    await sleep(500);
  }
  say(S, 'step 2: every agent signs with the next root; the old one stays trusted');
  for (const x of agents) {
    const roots = await x.get<{ Roots: { RootCert: string; Active: boolean }[] }>('/v1/agent/connect/ca/roots');
    assert.equal(roots.Roots.find((r) => r.Active)?.RootCert.trim(), nextPem.trim(), `${x.name}'s active root`);
  }
  const leaf = await b.get<{ CertPEM: string }>('/v1/agent/connect/ca/leaf/api');
  assert.ok(new X509Certificate(leaf.CertPEM).verify(new X509Certificate(nextPem).publicKey), 'leaves are re-issued under the next root');
  await sleep(2000);
  const afterCa = Date.now();
  const ca = [keepAlive.stats(t0, afterCa), fresh.stats(t0, afterCa)];
  say(S, `CA rotation: keep-alive ${ca[0].sent} requests / ${ca[0].failed} failed; new connections ${ca[1].sent} / ${ca[1].failed} failed (${JSON.stringify(ca[1].by)})`);

  // Gossip key: install the new key everywhere, make it primary everywhere, then remove the old one.
  const k2 = randomBytes(32).toString('base64');
  for (const x of agents) await x.call('POST', '/v1/operator/keyring', { Key: k2 });
  for (const x of agents) await x.call('PUT', '/v1/operator/keyring', { Key: k2 });
  for (const x of agents) await x.call('DELETE', '/v1/operator/keyring', { Key: secrets.encrypt });
  say(S, 'gossip key: installed, made primary and the old key removed on every agent');
  for (const x of agents) {
    const rings = await x.get<{ Keys: Record<string, number>; PrimaryKeys: Record<string, number> }[]>('/v1/operator/keyring');
    assert.deepEqual(Object.keys(rings[0].Keys), [k2], `${x.name} holds only the new key`);
  }
  // Still one pool: members alive, a write on one agent reaches the others (gossip now under the new key).
  await sleep(3000);
  await allAlive(agents);
  const { ID } = await c.call<{ ID: string }>('POST', '/v1/connect/intentions', { SourceName: 'after-rotation', DestinationName: 'api', Action: 'deny' });
  const wrote = Date.now();
  for (const x of agents) await waitFor(async () => assert.ok((await x.get<{ ID: string }[]>('/v1/connect/intentions')).some((i) => i.ID === ID), `${x.name} has the intention`), 30_000);
  say(S, `after the key rotation: members all alive; an intention written on ${c.name} reached every agent in ${Date.now() - wrote} ms`);
  const afterKey = Date.now();
  const gk = [keepAlive.stats(afterCa, afterKey), fresh.stats(afterCa, afterKey)];
  say(S, `gossip key rotation: keep-alive ${gk[0].sent} requests / ${gk[0].failed} failed; new connections ${gk[1].sent} / ${gk[1].failed} failed`);

  for (const l of loads) await l.stop();
  await rogue.stop();
  const total = [keepAlive.stats(), fresh.stats()];
  say(S, `whole run: ${total[0].sent + total[1].sent} requests, ${total[0].failed + total[1].failed} failed (${[...total[0].errors, ...total[1].errors].join(', ') || 'none'}); rogue caller: ${rogue.attempts} attempts, ${rogue.breaches} got through`);
  assert.equal(total[0].failed + total[1].failed, 0, 'zero failed requests through both rotations');
  assert.equal(rogue.breaches, 0);
});
