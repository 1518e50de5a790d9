// The pool's edges as one graph: the callers' side preferred, the callees' where no caller reports, success weighted
// by requests, p99 the highest (quantiles do not add), and where a split sent the requests.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { edgeGraph } from '../dataplane/metrics/edge-graph.js';
import type { EdgeSummary } from '../dataplane/metrics/edge-stats.js';

const e = (over: Partial<EdgeSummary>): EdgeSummary => ({
  direction: 'outbound', source: 'web', destination: 'api', service: 'api', subset: '', windowSeconds: 60, requests: 0, requestsPerSecond: 0,
  successRate: null, p50Ms: null, p99Ms: null, connections: 0, openConnections: 0, bytesTx: 0, bytesRx: 0, denied: 0, deniedBy: {}, ...over,
});

test('two callers\' agents and a callee\'s: one edge from the callers\' side, with both callees\' denials', () => {
  const [g, ...rest] = edgeGraph([
    { Edges: [e({ requests: 60, requestsPerSecond: 1, successRate: 1, p50Ms: 2, p99Ms: 10, subset: 'v1' })] },
    { Edges: [e({ requests: 180, requestsPerSecond: 3, successRate: 0.9, p50Ms: 4, p99Ms: 40, service: 'api-canary', subset: '' })] },
    { Edges: [e({ direction: 'inbound', service: 'api', requests: 999, requestsPerSecond: 99, successRate: 0, denied: 2, deniedBy: { intention: 2 } })] },
  ]);
  assert.equal(rest.length, 0);
  assert.equal(g.requestsPerSecond, 4, 'the callers\' counts, not the callee\'s again');
  assert.equal(g.successRate, (60 + 162) / 240);
  assert.equal(g.p50Ms, (2 * 60 + 4 * 180) / 240);
  assert.equal(g.p99Ms, 40);
  assert.equal(g.denied, 2);
  assert.deepEqual({ ...g.deniedBy }, { intention: 2 });
  // A hostile peer's reason named like an Object member adds up as a plain key.
  const [h] = edgeGraph([{ Edges: [e({ denied: 1, deniedBy: JSON.parse('{"__proto__": 1}') as Record<string, number> }), e({ denied: 1, deniedBy: { constructor: 2 } })] }]);
  assert.equal(JSON.stringify(h.deniedBy), '{"__proto__":1,"constructor":2}');
  assert.deepEqual(g.targets, [{ service: 'api-canary', subset: '', requestsPerSecond: 3 }, { service: 'api', subset: 'v1', requestsPerSecond: 1 }]);
});

test('an edge only the callee reports (its caller runs no agent) still shows; an L4 edge has no rates', () => {
  const g = edgeGraph([{ Edges: [
    e({ direction: 'inbound', source: 'legacy', destination: 'db', service: '', requests: 0, openConnections: 3, bytesRx: 100 }),
    e({ direction: 'inbound', source: 'web', destination: 'api', requests: 10, requestsPerSecond: 0.5, successRate: 1, p50Ms: 1, p99Ms: 2 }),
  ] }]);
  assert.deepEqual(g.map((x) => `${x.source}→${x.destination}`), ['web→api', 'legacy→db']);
  const l4 = g[1];
  assert.equal(l4.successRate, null);
  assert.equal(l4.p99Ms, null);
  assert.equal(l4.openConnections, 3);
  assert.deepEqual(l4.targets, []);
  assert.deepEqual(edgeGraph([]), []);
  assert.deepEqual(edgeGraph([{ Edges: undefined }]), []);
});
