// Pool hygiene: failed nodes are forgotten after reconnect_timeout; a member from another trust domain is called out.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { poolCa, put, spawnAgent, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const agents: TestAgent[] = [];
after(async () => { for (const a of agents) await a.stop().catch(() => undefined); });

test('a failed node is critical, then reaped from the catalog after reconnect_timeout; a peer that still has it cannot bring it back', async () => {
  const a = await startTestAgent({ node: 'keeper', bind: '127.0.11.1', reconnectTimeoutMs: 2000, ...await poolCa() });
  agents.push(a);
  // A peer with the default 72 h keeps the failed node (critical) long after `keeper` forgot it.
  const c = await startTestAgent({ node: 'rememberer', bind: '127.0.11.5', join: [`127.0.11.1:${a.gossip.port}`], ...await poolCa() });
  agents.push(c);
  const b = await startTestAgent({ node: 'goner', bind: '127.0.11.2', join: [`127.0.11.1:${a.gossip.port}`], ...await poolCa() });
  agents.push(b); // stopped by after() too, should an assertion fail first
  await b.api('/v1/agent/service/register', put({ Name: 'gone-soon', Port: 1 }));
  for (const x of [a, c]) await waitFor(async () => assert.equal(((await (await x.api('/v1/catalog/service/gone-soon')).json()) as unknown[]).length, 1));
  await b.gossip.shutdown();
  await waitFor(async () => {
    const nodes = (await (await a.api('/v1/catalog/nodes')).json()) as { Node: string }[];
    assert.deepEqual(nodes.map((n) => n.Node), ['keeper', 'rememberer']);
  }, 30_000);
  assert.deepEqual(await (await a.api('/v1/catalog/service/gone-soon')).json(), []);
  assert.equal(((await (await c.api('/v1/catalog/service/gone-soon')).json()) as unknown[]).length, 1, 'the peer still has it');
  await a.gossip.serf.memberlist.pushPullWith('127.0.11.5', c.gossip.port, false);
  assert.deepEqual(await (await a.api('/v1/catalog/service/gone-soon')).json(), [], 'a push/pull from that peer does not resurrect it');
  await b.stop().catch(() => undefined);
});

test('an agent that joins with another CA (trust domain) is called out in the log, with what to do', async () => {
  const a = await startTestAgent({ node: 'td-a', bind: '127.0.11.3' });
  agents.push(a);
  const other = await spawnAgent(['--dev', '--node', 'td-b', '--bind', '127.0.11.4', '--join', `127.0.11.3:${a.gossip.port}`]);
  try {
    await waitFor(() => assert.match(other.output(), /another trust domain[^\n]*same CA/), 15_000);
  } finally {
    other.proc.kill('SIGTERM');
    await other.exited;
  }
});
