// /v1/catalog/*: services, their instances and nodes, as blocking queries.

import { NodemeshError } from '../../catalog/errors.js';
import type { ServiceRecord } from '../../catalog/types.js';
import type { ApiDeps } from './api-deps.js';
import { answerBlocking } from './blocking-query.js';
import type { Router } from './http-router.js';
import { renderAgentService, renderNode, renderServiceNode } from './render.js';

/** Connect-capable endpoints for a service: its proxies, and the service itself if Connect-native. */
export const connectCapable = (name: string) => (s: ServiceRecord) =>
  (s.Kind === 'connect-proxy' && s.Proxy?.DestinationServiceName === name) || (s.Service === name && s.Connect?.Native === true);

export function catalogRoutes(r: Router, d: ApiDeps): void {
  const { catalog } = d;

  r.on('GET', '/v1/catalog/services', (ctx) => answerBlocking(ctx, catalog.feed, () => ({
    index: catalog.tableIdx('services'),
    body: Object.fromEntries(catalog.serviceNames()),
  })));

  r.on('GET', '/v1/catalog/service/:name*', (ctx) => {
    if (!ctx.params.name) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.serviceIdx(ctx.params.name),
      body: catalog.serviceNodes(ctx.params.name, ctx.query.getAll('tag')).map(({ node, service }) => renderServiceNode(node, service)),
    }));
  });

  r.on('GET', '/v1/catalog/connect/:name*', (ctx) => answerBlocking(ctx, catalog.feed, () => {
    const match = connectCapable(ctx.params.name);
    return {
      index: catalog.tableIdx('services'),
      body: catalog.allNodes().flatMap((n) => [...n.services.values()].filter(match).map((s) => renderServiceNode(n, s))),
    };
  }));

  r.on('GET', '/v1/catalog/nodes', (ctx) => answerBlocking(ctx, catalog.feed, () => ({
    index: catalog.tableIdx('nodes'),
    body: catalog.allNodes().map(renderNode),
  })));

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
