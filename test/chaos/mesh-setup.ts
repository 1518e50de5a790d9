// Chaos mesh layout: `api` instances behind some agents, a `web` caller allowed to reach them, a `rogue` caller
// that no intention allows — each workload on its own loopback address.

import assert from 'node:assert/strict';
import type { ChaosAgent } from './chaos-cluster.js';
import { workload, type Workload } from './mesh-load.js';
import { freePort } from '../helpers/free-port.js';
import { waitFor } from '../helpers/wait-for.js';

export interface Mesh { apps: Map<string, Workload>; webIp: string; webPort: number; rogueIp: string; roguePort: number; close(): Promise<void> }

/** `api` on each of `hosts` (app at `${prefix}.1N`), `web` and `rogue` on `caller`; web → api allowed. */
export async function layMesh(prefix: string, caller: ChaosAgent, hosts: ChaosAgent[]): Promise<Mesh> {
  const apps = new Map<string, Workload>();
  for (const [i, h] of hosts.entries()) {
    const w = await workload(`${prefix}.${11 + i}`, h.name);
    apps.set(h.name, w);
    await h.call('PUT', '/v1/agent/service/register', { Name: 'api', ID: `api-${h.name}`, Address: w.ip, Port: w.port, Connect: { SidecarService: {} } });
  }
  const webIp = `${prefix}.21`;
  const rogueIp = `${prefix}.22`;
  const webPort = await freePort(webIp);
  const roguePort = await freePort(rogueIp);
  const upstream = (ip: string, port: number) => ({ Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: ip, LocalBindPort: port }] } } } });
  await caller.call('PUT', '/v1/agent/service/register', { Name: 'web', Address: webIp, Port: 1, ...upstream(webIp, webPort) });
  await caller.call('PUT', '/v1/agent/service/register', { Name: 'rogue', Address: rogueIp, Port: 1, ...upstream(rogueIp, roguePort) });
  await caller.call('POST', '/v1/connect/intentions', { SourceName: 'web', DestinationName: 'api', Action: 'allow' });
  await waitFor(async () => assert.equal((await caller.get<unknown[]>('/v1/health/connect/api?passing')).length, hosts.length), 20_000);
  for (const h of hosts) await waitFor(async () => assert.ok((await h.get<{ SourceName: string }[]>('/v1/connect/intentions')).some((i) => i.SourceName === 'web'), `${h.name} has web → api`), 20_000);
  return { apps, webIp, webPort, rogueIp, roguePort, close: async () => { for (const w of apps.values()) await w.close(); } };
}
