// Serf's network coordinates: Vivaldi places nodes so their distances match measured round trips; the ack payload is
// Serf's byte for byte and a hostile one is refused; in a mixed pool (two nodemesh agents, a real serf agent) `serf rtt`
// finds nodemesh's coordinates and `consul rtt` finds serf's through nodemesh's /v1/coordinate; ?near= orders answers.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { distance, decodePingPayload, encodePingPayload, newCoordinate, type Coordinate } from '../membership/network-coordinate.js';
import { VivaldiClient } from '../membership/vivaldi-client.js';
import { nearSorter } from '../api/near-sort.js';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { poolCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { serfAvailable, serfCli, startSerf, type SerfAgent } from './helpers/serf-agent.js';
import { waitFor } from './helpers/wait-for.js';

test('Vivaldi converges: four nodes on a line get coordinates whose distances match their round trips', () => {
  // Node i sits at i × 10 ms on a line; each "probe" reports the true distance plus a 0.2 ms floor.
  const pos = [0, 10, 20, 30];
  const clients = pos.map(() => new VivaldiClient());
  const rtt = (i: number, j: number) => Math.abs(pos[i] - pos[j]) + 0.2;
  for (let round = 0; round < 400; round++) {
    for (let i = 0; i < pos.length; i++) {
      const j = (i + 1 + (round % (pos.length - 1))) % pos.length;
      assert.ok(clients[i].update(`n${j}`, clients[j].own, rtt(i, j)));
    }
  }
  for (let i = 0; i < pos.length; i++) {
    for (let j = i + 1; j < pos.length; j++) {
      const est = distance(clients[i].own, clients[j].own) * 1000;
      assert.ok(Math.abs(est - rtt(i, j)) < 0.25 * rtt(i, j), `n${i}↔n${j}: estimated ${est.toFixed(2)} ms, measured ${rtt(i, j)} ms`);
    }
  }
});

test('a round trip out of range (negative, over 10 s) or an invalid peer coordinate changes nothing', () => {
  const c = new VivaldiClient();
  const before = c.own;
  assert.equal(c.update('x', newCoordinate(), -1), false);
  assert.equal(c.update('x', newCoordinate(), 10_001), false);
  assert.equal(c.update('x', { ...newCoordinate(), vec: [NaN, 0, 0, 0, 0, 0, 0, 0] }, 5), false);
  assert.deepEqual(c.own, before);
  assert.equal(c.peer('x'), undefined);
});

test('the ack payload is Serf\'s: version 1, then a msgpack map of float64s; it decodes back', () => {
  const c: Coordinate = { vec: [0, 0.001, -0.002, 0, 0, 0, 0, 0], error: 1.5, adjustment: 0, height: 1e-5 };
  const p = encodePingPayload(c);
  assert.equal(p[0], 1);
  assert.equal(p[1], 0x84, 'a map of four fields');
  // Every number is a float64 (cb), even 0 and 1.5, as Go writes a float64 field.
  assert.equal(p.subarray(2).toString('latin1').match(/\xcb/g)?.length, 11);
  assert.deepEqual(decodePingPayload(p), c);
});

test('hostile ack payloads are refused with a clear error: wrong version, short vector, NaN, absurd sizes, garbage', () => {
  const good = encodePingPayload(newCoordinate());
  const bad: [string, Buffer][] = [
    ['version 2', Buffer.concat([Buffer.from([2]), good.subarray(1)])],
    ['7 dimensions', encodePingPayload({ ...newCoordinate(), vec: [0, 0, 0, 0, 0, 0, 0] })],
    ['NaN', encodePingPayload({ ...newCoordinate(), vec: [NaN, 0, 0, 0, 0, 0, 0, 0] })],
    ['a component of 1e9 s', encodePingPayload({ ...newCoordinate(), vec: [1e9, 0, 0, 0, 0, 0, 0, 0] })],
    ['negative height', encodePingPayload({ ...newCoordinate(), height: -1 })],
    ['truncated', good.subarray(0, 20)],
    ['not a map', Buffer.from([1, 0x93, 1, 2, 3])],
  ];
  for (const [what, p] of bad) assert.throws(() => decodePingPayload(p), /coordinate|version|Vec|finite|truncat|map|end/i, what);
});

test('?near= orders by estimated round trip, unknown coordinates last, and leaves the order alone for an unknown node', () => {
  const at = (x: number): Coordinate => ({ ...newCoordinate(), vec: [x, 0, 0, 0, 0, 0, 0, 0], error: 0.1 });
  const coords = new Map([['me', at(0)], ['far', at(0.05)], ['near', at(0.001)], ['mid', at(0.01)]]);
  const items = ['far', 'nocoord', 'mid', 'near', 'me'];
  const sort = (q: string) => nearSorter(new URLSearchParams(q), 'me', () => coords)(items, (x) => x);
  assert.deepEqual(sort('near=_agent'), ['me', 'near', 'mid', 'far', 'nocoord']);
  assert.deepEqual(sort('near=far'), ['far', 'mid', 'near', 'me', 'nocoord']);
  assert.deepEqual(sort('near=ghost'), items);
  assert.deepEqual(sort(''), items);
});

// ---- a mixed pool, real serf and consul binaries ----

const skip = !serfAvailable() || consulMissing() !== undefined;
let a: TestAgent;
let b: TestAgent;
let s: SerfAgent;

before(async () => {
  if (skip) return;
  const ca = await poolCa();
  a = await startTestAgent({ node: 'co-a', bind: '127.0.25.1', ...ca });
  b = await startTestAgent({ node: 'co-b', bind: '127.0.25.2', join: [`127.0.25.1:${a.gossip.port}`], ...ca });
  s = await startSerf('co-serf', '127.0.25.3');
  await serfCli(s.rpc, 'join', `127.0.25.1:${a.gossip.port}`);
});
after(async () => {
  await s?.stop();
  await b?.stop();
  await a?.stop();
});

interface CoordEntry { Node: string; Segment: string; Coord: { Vec: number[]; Error: number; Adjustment: number; Height: number } }

test('every member\'s coordinate appears in /v1/coordinate/nodes (the serf agent\'s too), in Consul\'s shape', { skip }, async () => {
  await waitFor(async () => {
    const list = (await (await a.api('/v1/coordinate/nodes')).json()) as CoordEntry[];
    assert.deepEqual(list.map((e) => e.Node), ['co-a', 'co-b', 'co-serf'], 'all three coordinates known to co-a');
  }, 20_000);
  const r = await a.api('/v1/coordinate/node/co-serf');
  assert.equal(r.status, 200);
  assert.ok(r.headers.get('x-consul-index'));
  const [e] = (await r.json()) as CoordEntry[];
  assert.equal(e.Segment, '');
  assert.equal(e.Coord.Vec.length, 8);
  // The serf agent has moved off the origin: its coordinate was measured, not a default.
  assert.ok(e.Coord.Error < 1.5, `serf's error estimate ${e.Coord.Error} has come down from 1.5`);
  assert.equal((await a.api('/v1/coordinate/node/nobody')).status, 404);
  assert.equal((await a.api('/v1/coordinate/update', { method: 'PUT', body: '{}' })).status, 405);
  const dcs = (await (await a.api('/v1/coordinate/datacenters')).json()) as { Datacenter: string; Coordinates: unknown[] }[];
  assert.deepEqual(dcs.map((d) => d.Coordinates), [[]]);
});

test('serf rtt on the serf agent finds nodemesh\'s coordinate (carried in nodemesh\'s acks)', { skip }, async () => {
  await waitFor(async () => {
    const out = await serfCli(s.rpc, 'rtt', 'co-b').catch((e: Error) => e.message);
    assert.match(out, /Estimated co-b <-> co-serf rtt: [\d.]+ ms/, out);
  }, 20_000);
});

test('consul rtt against a nodemesh agent: between two members, and from the agent itself', { skip }, async () => {
  const env = { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${a.http.port}` };
  await waitFor(async () => {
    const two = await promisify(execFile)(CONSUL_BIN, ['rtt', 'co-b', 'co-serf'], { env }).then((r) => r.stdout, (e: { stdout?: string; stderr?: string }) => `${e.stdout}${e.stderr}`);
    assert.match(two, /Estimated co-b <-> co-serf rtt: [\d.]+ ms \(using LAN coordinates\)/, two);
  }, 20_000);
  const one = await promisify(execFile)(CONSUL_BIN, ['rtt', 'co-b'], { env });
  assert.match(one.stdout, /Estimated co-b <-> co-a rtt/);
  const missing = await promisify(execFile)(CONSUL_BIN, ['rtt', 'nobody'], { env }).then(() => '', (e: { stderr?: string }) => e.stderr ?? '');
  assert.match(missing, /Could not find a coordinate for node "nobody"/);
});

test('?near= is taken on the catalog and health endpoints (order checked above; loopback round trips are all alike)', { skip }, async () => {
  for (const x of [a, b]) await x.api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'near-svc', Port: 9 }) });
  await waitFor(async () => {
    const nodes = (await (await a.api('/v1/catalog/service/near-svc?near=_agent')).json()) as { Node: string }[];
    assert.equal(nodes.length, 2, 'both instances');
  }, 10_000);
  for (const path of ['/v1/catalog/service/near-svc', '/v1/health/service/near-svc', '/v1/catalog/nodes', '/v1/health/checks/near-svc', '/v1/health/state/any', '/v1/catalog/connect/near-svc', '/v1/health/connect/near-svc']) {
    for (const near of ['_agent', 'co-b', 'nobody']) {
      const r = await a.api(`${path}?near=${near}`);
      assert.equal(r.status, 200, `${path}?near=${near}`);
      const plain = (await (await a.api(path)).json()) as unknown[];
      assert.equal(((await r.json()) as unknown[]).length, plain.length, `${path}?near=${near} lists as many`);
    }
  }
});
