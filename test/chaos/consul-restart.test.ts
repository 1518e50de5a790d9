// Chaos: two agents in Consul mode carry traffic while the Consul server (a single-server cluster with a data dir,
// not -dev) is stopped and started again — zero failed requests, agents report degraded and then catch up.
// Consul on 127.0.94.100, agents on 127.0.94.1-2, workloads on 127.0.94.11+.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ChaosAgent, poolSecrets, say, Stage } from './chaos-cluster.js';
import { RogueCaller, SteadyLoad, workload } from './mesh-load.js';
import { consulMissing, startConsulDev } from '../helpers/consul-dev.js';
import { freePort } from '../helpers/free-port.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const S = 'consul restart';
const stage = new Stage();
after(() => stage.end());

const ready = async (a: ChaosAgent) => (await fetch(`${a.url}/v1/agent/ready`)).status;

test('the Consul server restarts under load: zero failed requests, degraded while it is away, caught up after', { skip: consulMissing() }, async () => {
  const consul = stage.keep(await startConsulDev('127.0.94.100', { persistent: true }), (c) => c.stop());
  const secrets = poolSecrets();
  const cfg = { consul_addr: consul.addr, encrypt: undefined, ca_file: undefined, ca_key_file: undefined };
  const [a, b] = [new ChaosAgent('cm-a', '127.0.94.1', secrets, cfg), new ChaosAgent('cm-b', '127.0.94.2', secrets, cfg)].map((x) => stage.keep(x, (y) => y.stop()));
  await a.start();
  await b.start();
  const api = stage.keep(await workload('127.0.94.11', 'cm-b'), (w) => w.close());
  await b.call('PUT', '/v1/agent/service/register', { Name: 'api', ID: 'api-b', Address: api.ip, Port: api.port, Connect: { SidecarService: {} } });
  const [webIp, rogueIp] = ['127.0.94.21', '127.0.94.22'];
  const [webPort, roguePort] = [await freePort(webIp), await freePort(rogueIp)];
  const upstream = (ip: string, port: number) => ({ Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: ip, LocalBindPort: port }] } } } });
  await a.call('PUT', '/v1/agent/service/register', { Name: 'web', Address: webIp, Port: 1, ...upstream(webIp, webPort) });
  await a.call('PUT', '/v1/agent/service/register', { Name: 'rogue', Address: rogueIp, Port: 1, ...upstream(rogueIp, roguePort) });
  // Consul without ACLs allows by default: deny everyone but web.
  for (const [src, action] of [['*', 'deny'], ['web', 'allow']]) {
    assert.equal((await consul.call('POST', '/v1/connect/intentions', { SourceName: src, DestinationName: 'api', Action: action })).status, 200);
  }
  await waitFor(async () => assert.equal((await a.get<unknown[]>('/v1/health/connect/api?passing')).length, 1), 30_000);
  const keepAlive = stage.keep(new SteadyLoad(webIp, webPort, 6), (l) => l.stop());
  const fresh = stage.keep(new SteadyLoad(webIp, webPort, 2, 10 * 60_000, false), (l) => l.stop());
  const loads = [keepAlive, fresh];
  await waitFor(() => assert.ok(fresh.stats().sent - fresh.stats().failed > 20, JSON.stringify(fresh.stats())), 30_000);
  const t0 = Date.now();
  const rogue = stage.keep(new RogueCaller(rogueIp, roguePort), (r) => r.stop());

  await consul.halt();
  const haltedAt = Date.now();
  say(S, 'stopped the Consul server (SIGTERM)');
  await waitFor(async () => {
    assert.equal(await ready(a), 503);
    assert.equal(await ready(b), 503);
  }, 30_000);
  const degradedText = await (await fetch(`${a.url}/v1/agent/ready`)).text();
  say(S, `both agents report degraded ${Date.now() - haltedAt} ms later: ${degradedText.trim().slice(0, 120)}`);
  await sleep(5000);
  const away = [keepAlive.stats(haltedAt, Date.now()), fresh.stats(haltedAt, Date.now())];
  say(S, `while Consul was away: keep-alive ${away[0].sent} requests / ${away[0].failed} failed, new connections ${away[1].sent} / ${away[1].failed} failed`);

  const restartAt = Date.now();
  await consul.start();
  say(S, `started the Consul server again on the same data (${Date.now() - restartAt} ms to a leader)`);
  await waitFor(async () => {
    assert.equal(await ready(a), 200);
    assert.equal(await ready(b), 200);
  }, 60_000);
  say(S, `both agents ready again ${Date.now() - restartAt} ms after the restart`);

  // Caught up: a new intention made in Consul now decides on the agent; a new instance registered through an agent is used.
  const td = (await consul.call('GET', '/v1/connect/ca/roots')).json<{ TrustDomain: string }>().TrustDomain;
  assert.equal((await consul.call('POST', '/v1/connect/intentions', { SourceName: 'audit', DestinationName: 'api', Action: 'allow' })).status, 200);
  await waitFor(async () => {
    const d = await b.call<{ Authorized: boolean }>('POST', '/v1/agent/connect/authorize', { Target: 'api', ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/audit` });
    assert.equal(d.Authorized, true);
  }, 30_000);
  const api2 = stage.keep(await workload('127.0.94.12', 'cm-a'), (w) => w.close());
  await a.call('PUT', '/v1/agent/service/register', { Name: 'api', ID: 'api-a', Address: api2.ip, Port: api2.port, Connect: { SidecarService: {} } });
  await waitFor(() => assert.ok((fresh.stats(Date.now() - 2000).by['cm-a'] ?? 0) > 5, 'the new instance takes connections'), 30_000);
  const listed = await consul.cli(['catalog', 'services']);
  assert.match(listed.out, /^api-sidecar-proxy$/m);
  say(S, `caught up ${Date.now() - restartAt} ms after the restart: an intention made in Consul decides on the agent, a new instance takes new connections; consul catalog services lists ${listed.out.trim().split('\n').length} services`);

  for (const l of loads) await l.stop();
  await rogue.stop();
  const total = [keepAlive.stats(t0), fresh.stats(t0)];
  say(S, `from the stop on: ${total[0].sent + total[1].sent} requests, ${total[0].failed + total[1].failed} failed (${[...total[0].errors, ...total[1].errors].join(', ') || 'none'}); rogue caller: ${rogue.attempts} attempts, ${rogue.breaches} got through`);
  assert.equal(total[0].failed + total[1].failed, 0, 'zero failed requests while Consul restarts');
  assert.equal(rogue.breaches, 0);
});
