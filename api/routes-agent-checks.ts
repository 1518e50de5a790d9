// /v1/agent/check*: this agent's checks — list, register, deregister, and TTL updates.

import { NodemeshError } from '../lib/errors.js';
import type { HealthStatus } from '../model/catalog-types.js';
import { decodeBody } from '../lib/strict-json.js';
import { decodeCheckBody, decodeOrThrow } from '../model/service-definition.js';
import type { ApiDeps } from './api-deps.js';
import { applyFilter, filterOf } from './blocking-query.js';
import type { Router } from './http-router.js';
import { sendJson, sendText } from './http-router.js';
import { renderCheck } from './render.js';
import { maintenanceFlag } from './routes-agent-services.js';

export function agentCheckRoutes(r: Router, d: ApiDeps): void {
  r.on('PUT', '/v1/agent/maintenance', async (ctx) => {
    await d.local.setMaintenance(undefined, maintenanceFlag(ctx.query), ctx.query.get('reason') ?? '');
    sendText(ctx.res, 200, '');
  });

  r.on('GET', '/v1/agent/checks', (ctx) => {
    const filter = filterOf(ctx.query);
    const out: Record<string, unknown> = {};
    for (const c of d.local.agentChecks()) out[c.CheckID] = renderCheck(c);
    sendJson(ctx.res, 200, applyFilter(out, filter));
  });

  for (const [verb, status] of [['pass', 'passing'], ['warn', 'warning'], ['fail', 'critical']] as const) {
    r.on('PUT', `/v1/agent/check/${verb}/:id*`, async (ctx) => {
      await d.local.updateTtl(ctx.params.id, status, ctx.query.get('note') ?? '');
      sendText(ctx.res, 200, '');
    });
  }

  r.on('PUT', '/v1/agent/check/update/:id*', async (ctx) => {
    const text = await ctx.body();
    const parsed = decodeOrThrow<{ Status?: string; Output?: string }>(() => decodeBody(text, { Status: 'string', Output: 'string' }));
    const status = parsed.Status ?? '';
    if (!['passing', 'warning', 'critical'].includes(status)) throw new NodemeshError('CHECK_BAD_STATUS', `Invalid check status: '${status}'`, 400);
    await d.local.updateTtl(ctx.params.id, status as HealthStatus, parsed.Output ?? '');
    sendText(ctx.res, 200, '');
  });

  r.on('PUT', '/v1/agent/check/register', async (ctx) => {
    const input = decodeCheckBody(await ctx.body());
    await d.local.registerCheck(input);
    sendText(ctx.res, 200, '');
  });

  r.on('PUT', '/v1/agent/check/deregister/:id*', async (ctx) => {
    if (!ctx.params.id) throw new NodemeshError('CHECK_ID_MISSING', 'CheckID missing', 500);
    await d.local.deregisterCheck(ctx.params.id);
    sendText(ctx.res, 200, '');
  });
}
