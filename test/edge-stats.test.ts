// The per-edge window behind the topology and `nodemesh top`: a minute in six 10 s slots, success rate, quantiles
// from latency buckets, connections open and bytes, and a bounded table.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EdgeStats, type EdgeKey } from '../dataplane/metrics/edge-stats.js';

const edge: EdgeKey = { direction: 'outbound', source: 'web', destination: 'api', service: 'api', subset: 'v2' };

test('requests, success rate and quantiles over the window; old slots slide out', () => {
  let now = 1_000_000;
  const s = new EdgeStats(() => now);
  for (let i = 0; i < 98; i++) s.request(edge, 200, 0.003);
  s.request(edge, 503, 0.003);
  s.request(edge, 200, 1.5);
  now += 5_000;
  const [e] = s.summaries();
  assert.equal(e.requests, 100);
  assert.equal(e.successRate, 0.99);
  assert.ok(e.p50Ms! > 2 && e.p50Ms! <= 4, `p50 ${e.p50Ms} ms in the 2–4 ms bucket`);
  assert.ok(e.p99Ms! > 2 && e.p99Ms! <= 4, `p99 ${e.p99Ms} ms: one slow request in 100 is the 100th percentile, not the 99th`);
  assert.equal(e.subset, 'v2');
  // A minute later, with nothing new, the edge has left the view.
  now += 61_000;
  assert.deepEqual(s.summaries(), []);
});

test('connections: open ones keep an idle edge in view; bytes and denials counted per edge', () => {
  let now = 5_000_000;
  const s = new EdgeStats(() => now);
  const l4: EdgeKey = { direction: 'inbound', source: 'web', destination: 'db', service: '', subset: '' };
  s.connectionOpened(l4);
  s.connectionOpened(l4);
  s.connectionClosed(l4, 100, 2000);
  s.denied(l4, 'intention');
  s.denied(l4, 'intention');
  s.denied(l4, 'tls_handshake');
  now += 120_000;
  const [e] = s.summaries();
  assert.equal(e.openConnections, 1, 'one still open, so the edge is shown though idle');
  assert.equal(e.connections, 0, 'opened before the window');
  assert.equal(e.denied, 0, 'the denials were before the window too');
  now -= 120_000 - 1000;
  assert.deepEqual(s.summaries()[0].deniedBy, { intention: 2, tls_handshake: 1 });
  now += 120_000 - 1000;
  s.connectionClosed(l4, 10, 20);
  assert.equal(s.summaries()[0].bytesRx, 20);
  assert.equal(s.summaries()[0].requestsPerSecond, 0);
  assert.equal(s.summaries()[0].successRate, null);
});

test('the table is bounded: a flood of distinct edges evicts idle ones first', () => {
  let now = 9_000_000;
  const s = new EdgeStats(() => now);
  s.connectionOpened({ ...edge, destination: 'kept-open' });
  for (let i = 0; i < 5000; i++) s.request({ ...edge, destination: `d${i}` }, 200, 0.001);
  now += 1;
  const all = s.summaries();
  assert.ok(all.length <= 4097, `${all.length} edges kept`);
  assert.ok(all.some((e) => e.destination === 'kept-open'), 'an edge with an open connection is never the one evicted');
});
