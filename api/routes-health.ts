// /v1/health/*: instances with their checks, checks by service, node or state, as blocking queries.

import { NodemeshError } from '../lib/errors.js';
import { foldName, sameName } from '../model/service-names.js';
import type { NodeEntry, ServiceRecord } from '../model/catalog-types.js';
import type { ApiDeps } from './api-deps.js';
import { queryFlag } from './api-deps.js';
import { answerBlocking } from './blocking-query.js';
import { nearSorter } from './near-sort.js';
import { nodeMetaFilter } from './node-meta-filter.js';
import type { Router } from './http-router.js';
import { renderCheck, renderHealthService, renderNode } from './render.js';

export function healthRoutes(r: Router, d: ApiDeps): void {
  const { catalog } = d;
  const near = (q: URLSearchParams) => nearSorter(q, d.config.node, d.coordinates);

  const entries = (pairs: { node: NodeEntry; service: ServiceRecord }[], passingOnly: boolean) =>
    pairs
      .map(({ node, service }) => ({ node, service, checks: catalog.checksForInstance(node, service.ID) }))
      .filter((e) => !passingOnly || e.checks.every((c) => c.Status === 'passing'))
      .map((e) => ({ Node: renderNode(e.node), Service: renderHealthService(e.service), Checks: e.checks.map(renderCheck) }));

  r.on('GET', '/v1/health/service/:name*', (ctx) => {
    const name = ctx.params.name;
    if (!name) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    const passing = queryFlag(ctx.query, 'passing', 'Invalid value for ?passing');
    const meta = nodeMetaFilter(ctx.query) ?? (() => true);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.serviceIdx(name),
      body: sort(entries(catalog.serviceNodes(name, ctx.query.getAll('tag')).filter(({ node }) => meta(node)), passing), (e) => String(e.Node.Node)),
    }));
  });

  r.on('GET', '/v1/health/connect/:name*', (ctx) => {
    const name = ctx.params.name;
    if (!name) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    const passing = queryFlag(ctx.query, 'passing', 'Invalid value for ?passing');
    const meta = nodeMetaFilter(ctx.query) ?? (() => true);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.tableIdx('services', 'checks'),
      body: sort(entries(catalog.connectNodes(name).filter(({ node }) => meta(node)), passing), (e) => String(e.Node.Node)),
    }));
  });

  r.on('GET', '/v1/health/checks/:service*', (ctx) => {
    const name = ctx.params.service;
    if (!name) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    const folded = foldName(name);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.serviceIdx(name),
      body: sort(catalog.allChecks().filter((c) => sameName(c.ServiceName, folded)).map(renderCheck), (c) => String(c.Node)),
    }));
  });

  r.on('GET', '/v1/health/node/:node*', (ctx) => answerBlocking(ctx, catalog.feed, () => ({
    index: catalog.tableIdx('checks'),
    body: catalog.allChecks().filter((c) => c.Node === ctx.params.node).map(renderCheck),
  })));

  r.on('GET', '/v1/health/state/:state', (ctx) => {
    const state = ctx.params.state;
    if (!['any', 'passing', 'warning', 'critical'].includes(state)) throw new NodemeshError('API_BAD_STATE', `Invalid state: ${state}`, 400);
    const sort = near(ctx.query);
    return answerBlocking(ctx, catalog.feed, () => ({
      index: catalog.tableIdx('checks'),
      body: sort(catalog.allChecks().filter((c) => state === 'any' || c.Status === state).map(renderCheck), (c) => String(c.Node)),
    }));
  });
}
