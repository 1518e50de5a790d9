// The pool's edges as one graph: each source → destination once, from the callers' agents where they report it (the
// callees' otherwise), with where its requests went (a split's services and subsets): what `nodemesh top` and the
// topology view show.

import type { EdgeSummary } from './edge-stats.js';

export interface GraphEdge {
  source: string;
  destination: string;
  requestsPerSecond: number;
  /** Requests answered below 500 over all requests; null without requests (an L4 edge, or idle). */
  successRate: number | null;
  /** The request-weighted mean of the agents' p50s, and the highest p99 (a bound, not a merge: quantiles do not add). */
  p50Ms: number | null;
  p99Ms: number | null;
  openConnections: number;
  bytesTx: number;
  bytesRx: number;
  /** Connections and requests refused on either side, and by reason. */
  denied: number;
  deniedBy: Record<string, number>;
  /** Where the requests went, when a route sent them on (a split's service and subset); largest share first. */
  targets: { service: string; subset: string; requestsPerSecond: number }[];
}

/** One edge per source → destination, from every node's edges. */
export function edgeGraph(nodes: { Edges?: EdgeSummary[] }[]): GraphEdge[] {
  const all = nodes.flatMap((n) => n.Edges ?? []);
  const pairs = new Map<string, EdgeSummary[]>();
  for (const e of all) {
    const k = `${e.source}\u0000${e.destination}`;
    pairs.set(k, [...(pairs.get(k) ?? []), e]);
  }
  const out: GraphEdge[] = [];
  for (const edges of pairs.values()) {
    // The callers' side saw every attempt (also those that never reached a callee); the callees' side only fills in
    // edges whose callers report nothing (a caller outside the mesh's agents).
    const outbound = edges.filter((e) => e.direction === 'outbound');
    const side = outbound.length ? outbound : edges;
    const requests = side.reduce((a, e) => a + e.requests, 0);
    const rps = side.reduce((a, e) => a + e.requestsPerSecond, 0);
    const ok = side.reduce((a, e) => a + (e.successRate === null ? 0 : e.successRate * e.requests), 0);
    const timed = side.filter((e) => e.p50Ms !== null && e.requests > 0);
    const weight = timed.reduce((a, e) => a + e.requests, 0);
    const targets = new Map<string, { service: string; subset: string; requestsPerSecond: number }>();
    for (const e of side) {
      if (!e.service || e.requests === 0) continue;
      const k = `${e.service}\u0000${e.subset}`;
      const t = targets.get(k) ?? { service: e.service, subset: e.subset, requestsPerSecond: 0 };
      t.requestsPerSecond += e.requestsPerSecond;
      targets.set(k, t);
    }
    out.push({
      source: edges[0].source, destination: edges[0].destination, requestsPerSecond: rps,
      successRate: requests ? ok / requests : null,
      p50Ms: weight ? timed.reduce((a, e) => a + e.p50Ms! * e.requests, 0) / weight : null,
      p99Ms: timed.length ? Math.max(...timed.map((e) => e.p99Ms!)) : null,
      openConnections: side.reduce((a, e) => a + e.openConnections, 0),
      bytesTx: side.reduce((a, e) => a + e.bytesTx, 0), bytesRx: side.reduce((a, e) => a + e.bytesRx, 0),
      denied: edges.reduce((a, e) => a + e.denied, 0),
      deniedBy: edges.reduce<Record<string, number>>((acc, e) => {
        for (const [r, n] of Object.entries(e.deniedBy ?? {})) acc[r] = (acc[r] ?? 0) + n;
        return acc;
      }, Object.create(null) as Record<string, number>),
      targets: [...targets.values()].sort((a, b) => b.requestsPerSecond - a.requestsPerSecond),
    });
  }
  return out.sort((a, b) => b.requestsPerSecond - a.requestsPerSecond || (a.source + a.destination < b.source + b.destination ? -1 : 1));
}
