// /v1/agent/service*: register, deregister and read this agent's services, and their aggregated health.

import { createHash } from 'node:crypto';
import { NodemeshError, type ErrorCode } from '../lib/errors.js';
import type { CheckRecord, HealthStatus, ServiceRecord } from '../model/catalog-types.js';
import { decodeServiceBody } from '../model/service-definition.js';
import type { ApiDeps } from './api-deps.js';
import { queryFlag } from './api-deps.js';
import { applyFilter, filterOf, parseBlocking } from './blocking-query.js';
import type { Router } from './http-router.js';
import { errorHeader, sendError, sendJson, sendText } from './http-router.js';
import { renderAgentService, renderCheck } from './render.js';

const RANK: Record<HealthStatus, number> = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

export function aggregateStatus(checks: CheckRecord[]): HealthStatus {
  let worst: HealthStatus = 'passing';
  for (const c of checks) if (RANK[c.Status] > RANK[worst]) worst = c.Status;
  return worst;
}

const HEALTH_CODE: Record<HealthStatus, number> = { passing: 200, warning: 429, critical: 503, maintenance: 503 };
/** The code a 429/503 health answer carries in X-Nodemesh-Error (the status is the health, as Consul's). */
const HEALTH_ERROR: Record<HealthStatus, ErrorCode | undefined> = { passing: undefined, warning: 'HEALTH_WARNING', critical: 'HEALTH_CRITICAL', maintenance: 'HEALTH_MAINTENANCE' };
const healthHeaders = (s: HealthStatus): Record<string, string> => { const c = HEALTH_ERROR[s]; return c ? errorHeader(c) : {}; };

function contentHash(body: unknown): string {
  return createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16);
}

export function agentServiceRoutes(r: Router, d: ApiDeps): void {
  const dc = d.config.datacenter;

  r.on('PUT', '/v1/agent/service/register', async (ctx) => {
    const replace = queryFlag(ctx.query, 'replace-existing-checks', 'Invalid value for ?replace-existing-checks');
    const input = decodeServiceBody(await ctx.body());
    await d.local.registerService(input, { replaceExistingChecks: replace });
    sendText(ctx.res, 200, '');
  });

  r.on('PUT', '/v1/agent/service/deregister/:id*', async (ctx) => {
    if (!ctx.params.id) throw new NodemeshError('SERVICE_ID_MISSING', 'ServiceID missing', 500);
    await d.local.deregisterService(ctx.params.id);
    sendText(ctx.res, 200, '');
  });

  r.on('PUT', '/v1/agent/service/maintenance/:id*', async (ctx) => {
    await d.local.setMaintenance(ctx.params.id, maintenanceFlag(ctx.query), ctx.query.get('reason') ?? '');
    sendText(ctx.res, 200, '');
  });

  r.on('GET', '/v1/agent/services', (ctx) => {
    const filter = filterOf(ctx.query);
    const out: Record<string, unknown> = {};
    for (const s of d.local.services()) out[s.ID] = renderAgentService(s, dc);
    sendJson(ctx.res, 200, applyFilter(out, filter));
  });

  r.on('GET', '/v1/agent/service/:id*', async (ctx) => {
    const id = ctx.params.id;
    const { waitMs } = parseBlocking(ctx.query);
    const want = ctx.query.get('hash');
    const render = () => {
      const s = d.local.service(id);
      if (!s) return undefined;
      const body = renderAgentService(s, dc);
      return { ...body, ContentHash: contentHash(body) };
    };
    let body = render();
    if (want) {
      const deadline = Date.now() + waitMs + Math.random() * (waitMs / 16);
      while (body?.ContentHash === want && Date.now() < deadline && !ctx.signal.aborted && !d.catalog.feed.isClosed) {
        await d.catalog.feed.wait(deadline - Date.now(), ctx.signal);
        body = render();
      }
    }
    if (!body) throw new NodemeshError('SERVICE_UNKNOWN', `unknown service ID: ${id}`, 404);
    sendJson(ctx.res, 200, body, { 'X-Consul-ContentHash': body.ContentHash });
  });

  const healthOf = (s: ServiceRecord) => {
    const checks = d.local.agentChecks().filter((c) => c.ServiceID === s.ID);
    return { AggregatedStatus: aggregateStatus(checks), Service: renderAgentService(s, dc), Checks: checks.map(renderCheck) };
  };
  const asText = (ctx: { query: URLSearchParams }) => ctx.query.get('format') === 'text';

  r.on('GET', '/v1/agent/health/service/id/:id*', (ctx) => {
    const s = d.local.service(ctx.params.id);
    if (!s) {
      if (asText(ctx)) return sendError(ctx.res, 404, 'SERVICE_UNKNOWN', `ServiceId ${ctx.params.id} not found`);
      throw new NodemeshError('SERVICE_UNKNOWN', `ServiceId ${ctx.params.id} not found`, 404);
    }
    const h = healthOf(s);
    const code = HEALTH_CODE[h.AggregatedStatus];
    if (asText(ctx)) return sendText(ctx.res, code, h.AggregatedStatus, healthHeaders(h.AggregatedStatus));
    sendJson(ctx.res, code, h, healthHeaders(h.AggregatedStatus));
  });

  r.on('GET', '/v1/agent/health/service/name/:name*', (ctx) => {
    const list = d.local.services().filter((s) => s.Service === ctx.params.name).map(healthOf);
    if (list.length === 0) {
      if (asText(ctx)) return sendError(ctx.res, 404, 'SERVICE_UNKNOWN', `ServiceName ${ctx.params.name} Not Found`);
      throw new NodemeshError('SERVICE_UNKNOWN', `ServiceName ${ctx.params.name} Not Found`, 404);
    }
    const worst = aggregateStatus(list.map((h) => ({ Status: h.AggregatedStatus }) as CheckRecord));
    const code = HEALTH_CODE[worst];
    if (asText(ctx)) return sendText(ctx.res, code, worst, healthHeaders(worst));
    sendJson(ctx.res, code, list, healthHeaders(worst));
  });
}

/** Consul's `?enable=` of the maintenance endpoints: required, true or false. */
export function maintenanceFlag(query: URLSearchParams): boolean {
  const v = query.get('enable');
  if (v === null || v === '') throw new NodemeshError('API_BAD_QUERY', 'Missing value for enable', 400);
  if (v !== 'true' && v !== 'false') throw new NodemeshError('API_BAD_QUERY', `Invalid value for enable: ${JSON.stringify(v)}`, 400);
  return v === 'true';
}
