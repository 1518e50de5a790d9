// GET /v1/agent/edges: the golden metrics of every edge this agent carried in the last minute (both its callers' side
// and its callees'); GET /v1/pool/edges: every agent's; GET /v1/pool/topology: those as one graph, for the topology view
// and `nodemesh top`.

import { NodemeshError } from '../lib/errors.js';
import { edgeGraph } from '../dataplane/metrics/edge-graph.js';
import type { ApiDeps } from './api-deps.js';
import { sendJson, type Router } from './http-router.js';

export function edgeRoutes(r: Router, d: ApiDeps): void {
  r.on('GET', '/v1/agent/edges', (ctx) => sendJson(ctx.res, 200, { Node: d.config.node, Edges: d.edges() }));

  // The whole pool's, asked of each agent over mTLS: a node that did not answer is listed with why.
  r.on('GET', '/v1/pool/edges', async (ctx) => {
    const nodes = await d.poolEdges();
    if (!nodes) throw new NodemeshError('API_UNSUPPORTED', 'the pool-wide view needs the peer endpoint (peer_port is -1 here, or the agent runs on Consul): use /v1/agent/edges on each agent, or Prometheus', 501);
    sendJson(ctx.res, 200, { Nodes: nodes });
  });

  // The same as one graph: each source → destination once, and which agents did not answer.
  r.on('GET', '/v1/pool/topology', async (ctx) => {
    const nodes = (await d.poolEdges()) ?? [{ Node: d.config.node, Edges: d.edges() }];
    sendJson(ctx.res, 200, {
      Edges: edgeGraph(nodes),
      Unreachable: nodes.filter((n) => n.Error !== undefined).map((n) => ({ Node: n.Node, Error: n.Error })),
    });
  });
}
