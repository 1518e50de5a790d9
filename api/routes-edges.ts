// GET /v1/agent/edges: the golden metrics of every edge this agent carried in the last minute (both its callers' side
// and its callees'); GET /v1/pool/edges: every agent's; GET /v1/pool/topology: those as one graph, for the topology view
// and `nodemesh top`.

import { setTimeout as sleep } from 'node:timers/promises';
import { NodemeshError } from '../lib/errors.js';
import { edgeGraph } from '../dataplane/metrics/edge-graph.js';
import type { ApiDeps } from './api-deps.js';
import { sendJson, type Router } from './http-router.js';

/** What a slow stream reader may have waiting before updates are skipped. */
const MAX_BUFFERED = 256 * 1024;

export function edgeRoutes(r: Router, d: ApiDeps): void {
  r.on('GET', '/v1/agent/edges', (ctx) => sendJson(ctx.res, 200, { Node: d.config.node, Edges: d.edges() }));

  // The whole pool's, asked of each agent over mTLS: a node that did not answer is listed with why.
  r.on('GET', '/v1/pool/edges', async (ctx) => {
    const nodes = await d.poolEdges();
    if (!nodes) throw new NodemeshError('API_UNSUPPORTED', 'the pool-wide view needs the peer endpoint (peer_port is -1 here, or the agent runs on Consul): use /v1/agent/edges on each agent, or Prometheus', 501);
    sendJson(ctx.res, 200, { Nodes: nodes });
  });

  // The same as one graph: each source → destination once, and which agents did not answer.
  const build = async () => {
    const nodes = (await d.poolEdges()) ?? [{ Node: d.config.node, Edges: d.edges() }];
    return { Edges: edgeGraph(nodes), Unreachable: nodes.filter((n) => n.Error !== undefined).map((n) => ({ Node: n.Node, Error: n.Error })) };
  };
  // One pool-wide ask serves every caller for a second: ten open UI tabs do not ask every peer ten times.
  let recent: { at: number; graph: ReturnType<typeof build> } | undefined;
  const topology = () => {
    if (!recent || Date.now() - recent.at > 1000) recent = { at: Date.now(), graph: build() };
    return recent.graph;
  };
  r.on('GET', '/v1/pool/topology', async (ctx) => sendJson(ctx.res, 200, await topology()));

  // Live, for the UI: the graph as server-sent events every ?interval (2 s by default, 1–60 s) until the client leaves.
  r.on('GET', '/v1/pool/topology/stream', async (ctx) => {
    const seconds = Number(ctx.query.get('interval') ?? '2');
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > 60) throw new NodemeshError('API_BAD_QUERY', 'interval is a number of seconds from 1 to 60', 400);
    ctx.res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
    while (!ctx.signal.aborted) {
      // A reader that does not keep up skips updates rather than piling them up here.
      if (ctx.res.writableLength < MAX_BUFFERED) ctx.res.write(`event: topology\ndata: ${JSON.stringify(await topology())}\n\n`);
      await sleep(seconds * 1000, undefined, { signal: ctx.signal }).catch(() => undefined);
    }
    ctx.res.end();
  });
}
