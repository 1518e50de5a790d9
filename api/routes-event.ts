// /v1/event/fire and /v1/event/list: Consul's user events over the gossip pool (`consul event`, `consul watch -type=event`).

import { NodemeshError } from '../lib/errors.js';
import { eventIndex, type UserEventLog } from '../backend/gossip/user-event-log.js';
import { parseBlocking, waitWhile } from './blocking-query.js';
import type { ApiDeps } from './api-deps.js';
import type { Router } from './http-router.js';
import { sendJson } from './http-router.js';

export function eventRoutes(r: Router, d: ApiDeps, log: () => UserEventLog | undefined): void {
  const events = () => {
    const l = log();
    if (!l) throw new NodemeshError('GOSSIP_NOT_STARTED', 'gossip is not started yet: retry in a moment', 503);
    return l;
  };
  const sameDc = (q: URLSearchParams) => {
    const dc = q.get('dc');
    if (dc && dc !== d.config.datacenter) throw new NodemeshError('API_UNSUPPORTED', `No path to datacenter: ${dc} (nodemesh has one datacenter per pool)`, 500);
  };

  r.on('PUT', '/v1/event/fire/:name*', async (ctx) => {
    sameDc(ctx.query);
    const ev = events().fire(ctx.params.name, await ctx.bytes(), {
      node: ctx.query.get('node') ?? undefined, service: ctx.query.get('service') ?? undefined, tag: ctx.query.get('tag') ?? undefined,
    });
    sendJson(ctx.res, 200, ev);
  });

  // Blocking on Consul's event index (the last event's ID folded to 64 bits): it changes, it does not grow.
  r.on('GET', '/v1/event/list', async (ctx) => {
    sameDc(ctx.query);
    const name = ctx.query.get('name') ?? undefined;
    // Validates ?index (digits) and ?wait; the index itself is compared as text (a 64-bit hash, past 2^53).
    const { waitMs } = parseBlocking(ctx.query);
    const raw = ctx.query.get('index');
    const l = events();
    const compute = () => {
      const list = l.list(name);
      return { list, index: eventIndex(list.at(-1)?.ID) };
    };
    let result = compute();
    if (raw) result = await waitWhile(ctx, l.feed, waitMs, result, compute, (r) => r.index === raw);
    if (ctx.res.destroyed) return;
    sendJson(ctx.res, 200, result.list, { 'X-Consul-Index': result.index });
  });
}
