// /v1/coordinate/*: Serf's network coordinates, measured by this agent's probes (`consul rtt`, Consul's coordinate API).

import { NodemeshError } from '../lib/errors.js';
import { coordinateJson, type Coordinate } from '../membership/network-coordinate.js';
import type { ApiDeps } from './api-deps.js';
import { answerBlocking } from './blocking-query.js';
import { sendJson, type Router } from './http-router.js';

export function coordinateRoutes(r: Router, d: ApiDeps): void {
  const { catalog } = d;
  const entry = (node: string, c: Coordinate, index: number) => ({ Node: node, Segment: '', Coord: coordinateJson(c), CreateIndex: index, ModifyIndex: index });

  // No WAN pool: this datacenter only, with no server coordinates (`consul rtt -wan` finds none).
  r.on('GET', '/v1/coordinate/datacenters', (ctx) => sendJson(ctx.res, 200, [{ Datacenter: d.config.datacenter, AreaID: 'wan', Coordinates: [] }]));

  // Every member whose coordinate this agent knows (its own, and each that has acked its probes), by name.
  r.on('GET', '/v1/coordinate/nodes', (ctx) => answerBlocking(ctx, catalog.feed, () => {
    const index = catalog.tableIdx('nodes');
    return { index, body: [...d.coordinates()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([node, c]) => entry(node, c, index)) };
  }));

  r.on('GET', '/v1/coordinate/node/:node*', (ctx) => {
    const c = d.coordinates().get(ctx.params.node);
    if (!c) throw new NodemeshError('NODE_UNKNOWN', `no coordinate for node '${ctx.params.node}' yet: a member's coordinate arrives with its first acked probe`, 404);
    const index = catalog.tableIdx('nodes');
    sendJson(ctx.res, 200, [entry(ctx.params.node, c, index)], { 'X-Consul-Index': String(index) });
  });

  // Consul's agents report their coordinates to the servers; here each agent measures its own, so none is taken.
  r.on('PUT', '/v1/coordinate/update', () => {
    throw new NodemeshError('API_UNSUPPORTED', 'coordinates are measured by each agent from its own probes; a reported coordinate is not taken', 405);
  });
}
