// GET /v1/agent/edges: the golden metrics of every edge this agent carried in the last minute (both its callers' side
// and its callees'), for the topology view and `nodemesh top`.

import type { ApiDeps } from './api-deps.js';
import { sendJson, type Router } from './http-router.js';

export function edgeRoutes(r: Router, d: ApiDeps): void {
  r.on('GET', '/v1/agent/edges', (ctx) => sendJson(ctx.res, 200, { Node: d.config.node, Edges: d.edges() }));
}
