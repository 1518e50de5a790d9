// /v1/catalog/*: services, their instances and nodes, as blocking queries.

import { NodemeshError } from '../lib/errors.js';
import type { ApiDeps } from './api-deps.js';
import { answerBlocking } from './blocking-query.js';
import { sendJson, type Router } from './http-router.js';
import { nearSorter } from './near-sort.js';
import { nodeMetaFilter } from './node-meta-filter.js';
import { renderAgentService, renderNode, renderServiceNode } from './render.js';

export function catalogRoutes(r: Router, d: ApiDeps): void {
  const { catalog } = d;
  const near = (q: URLSearchParams) => nearSorter(q, d.config.node, d.coordinates);

  // One datacenter: the pool is one (WAN federation is not built).
  r.on('GET', '/v1/catalog/datacenters', (ctx) => sendJson(ctx.res, 200, [d.config.datacenter]));

  r.on('GET', '/v1/catalog/services', (ctx) => {
    const meta = nodeMetaFilter(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.tableIdx('services'),
      body: Object.fromEntries(catalog.serviceNames(meta)),
    }));
  });

  r.on('GET', '/v1/catalog/service/:name*', (ctx) => {
    if (!ctx.params.name) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    const meta = nodeMetaFilter(ctx.query) ?? (() => true);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.serviceIdx(ctx.params.name),
      body: sort(catalog.serviceNodes(ctx.params.name, ctx.query.getAll('tag')).filter(({ node }) => meta(node))
        .map(({ node, service }) => renderServiceNode(node, service, d.virtualIps.ofRecord(service))), (s) => String(s.Node)),
    }));
  });

  r.on('GET', '/v1/catalog/connect/:name*', (ctx) => {
    const meta = nodeMetaFilter(ctx.query) ?? (() => true);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.tableIdx('services'),
      body: sort(catalog.connectNodes(ctx.params.name).filter(({ node }) => meta(node)).map(({ node, service }) => renderServiceNode(node, service, d.virtualIps.ofRecord(service))), (s) => String(s.Node)),
    }));
  });

  r.on('GET', '/v1/catalog/nodes', (ctx) => {
    const meta = nodeMetaFilter(ctx.query) ?? (() => true);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.tableIdx('nodes'),
      body: sort(catalog.allNodes().filter(meta).map(renderNode), (n) => String(n.Node)),
    }));
  });

  r.on('GET', '/v1/catalog/node/:node*', (ctx) => answerBlocking(ctx, catalog.feed, () => {
    const n = catalog.getNode(ctx.params.node);
    return {
      index: catalog.tableIdx('nodes', 'services'),
      body: n ? {
        Node: renderNode(n),
        Services: Object.fromEntries([...n.services.values()].map((s) => [s.ID, renderAgentService(s, n.info.Datacenter)])),
      } : null,
    };
  }));
}

