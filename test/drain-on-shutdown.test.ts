// Draining on SIGTERM and `nodemesh leave`: new connections refused at once, open ones carry on until drain_timeout, then close.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { put, runCli, spawnAgent, tempDir } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

/** An agent with one echo service `api` and a workload `web` (at `web`) whose upstream reaches it; an open connection through the mesh. */
async function meshWithOpenConnection(bind: string, appHost: string, web: string) {
  const dir = tempDir();
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ drain_timeout: '3s', default_intention_policy: 'allow' }));
  const agent = await spawnAgent(['--dev', '--node', `drain-${bind}`, '--bind', bind, '--config-file', join(dir, 'agent.json')]);
  const app = await echoApp(appHost);
  const up = await freePort('127.0.0.1');
  await fetch(`${agent.url}/v1/agent/service/register`, put({ Name: 'api', Address: appHost, Port: app.port, Connect: { SidecarService: {} } }));
  await fetch(`${agent.url}/v1/agent/service/register`, put({ Name: 'web', Address: web, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal((await roundTrip(web, up, 'warm')).reply.toString(), 'warm'), 10_000);
  const open: Socket = connect({ host: '127.0.0.1', port: up, localAddress: web });
  open.on('error', () => undefined);
  let closed = false;
  open.on('close', () => { closed = true; });
  const echo = (text: string) => new Promise<string>((resolve) => { open.once('data', (c) => resolve(String(c))); open.write(text); });
  assert.equal(await echo('before'), 'before');
  return { agent, app, up, echo, isClosed: () => closed };
}

/** Whether a new connection to the upstream port is refused (nothing listens any more). */
const refused = (from: string, port: number) => new Promise<boolean>((resolve) => {
  const s = connect({ host: '127.0.0.1', port, localAddress: from });
  s.once('connect', () => { s.destroy(); resolve(false); });
  s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
});

test('SIGTERM drains: new connections are refused at once, the open one keeps working, then it is closed at drain_timeout and the agent exits 0', async () => {
  const m = await meshWithOpenConnection('127.0.19.31', '127.0.19.33', '127.0.19.32');
  m.agent.proc.kill('SIGTERM');
  await waitFor(async () => assert.equal(await refused('127.0.19.32', m.up), true), 5000);
  assert.equal(await m.echo('during the drain'), 'during the drain', 'an open connection survives the start of the drain');
  assert.equal(m.isClosed(), false);
  assert.equal(await m.agent.exited, 0);
  await waitFor(() => assert.equal(m.isClosed(), true, 'closed at the drain timeout'));
  assert.match(m.agent.output(), /drain timeout: closing the connections still open/);
  m.app.server.close();
});

test('`nodemesh leave` drains the same way through the API', async () => {
  const m = await meshWithOpenConnection('127.0.19.41', '127.0.19.43', '127.0.19.42');
  const r = await runCli(['--http-addr', m.agent.url, 'leave']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Graceful leave started/);
  await waitFor(async () => assert.equal(await refused('127.0.19.42', m.up), true), 5000);
  assert.equal(await m.echo('still here'), 'still here');
  assert.equal(await m.agent.exited, 0);
  await waitFor(() => assert.equal(m.isClosed(), true));
  m.app.server.close();
});
