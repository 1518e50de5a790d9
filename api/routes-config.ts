// /v1/config: Consul's config entries API (write with optional check-and-set, read one, list a kind with blocking, delete).

import { NodemeshError } from '../lib/errors.js';
import type { ConfigEntryStore } from '../policy/config-entry-store.js';
import { KINDS, type Kind } from '../model/config-entry.js';
import { answerBlocking } from './blocking-query.js';
import type { Router } from './http-router.js';
import { requestToken, sendJson } from './http-router.js';
import type { PolicyWrites } from '../backend/gossip/policy-writes.js';

function kindOf(raw: string): Kind {
  const k = raw.toLowerCase();
  if (!(KINDS as readonly string[]).includes(k)) throw new NodemeshError('CONFIG_ENTRY_KIND', `invalid config entry kind: ${raw} (supported: ${KINDS.join(', ')})`, 400);
  return k as Kind;
}

export function configRoutes(r: Router, store: ConfigEntryStore, writes: PolicyWrites): void {
  const authorize = (t: string | undefined) => writes.tokenAllows(t);
  r.on('PUT', '/v1/config', async (ctx) => {
    const text = await ctx.body();
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new NodemeshError('API_DECODE', `Request decode failed: ${text.trim() === '' ? 'EOF' : (e as Error).message}`, 400);
    }
    const casText = ctx.query.get('cas');
    let cas: number | undefined;
    if (casText !== null) {
      cas = Number(casText);
      if (!/^\d+$/.test(casText) || !Number.isSafeInteger(cas)) throw new NodemeshError('API_BAD_PARAM', `Invalid cas index: ${JSON.stringify(casText)}`, 400);
    }
    sendJson(ctx.res, 200, (await writes.apply({ op: 'entry.write', raw, cas }, requestToken(ctx.req, ctx.query))).result);
  }, { authorize });

  r.on('GET', '/v1/config/:kind', (ctx) => {
    const kind = kindOf(ctx.params.kind);
    return answerBlocking(ctx, store.feed, () => ({ index: store.index, body: store.list(kind) }));
  });

  r.on('GET', '/v1/config/:kind/:name', (ctx) => {
    const kind = kindOf(ctx.params.kind);
    return answerBlocking(ctx, store.feed, () => {
      const e = store.get(kind, ctx.params.name);
      if (!e) throw new NodemeshError('CONFIG_ENTRY_NOT_FOUND', `Config entry not found for ${JSON.stringify(kind)} / ${JSON.stringify(ctx.params.name)}`, 404);
      return { index: e.ModifyIndex, body: e };
    });
  });

  r.on('DELETE', '/v1/config/:kind/:name', async (ctx) => {
    await writes.apply({ op: 'entry.delete', kind: kindOf(ctx.params.kind), name: ctx.params.name }, requestToken(ctx.req, ctx.query));
    sendJson(ctx.res, 200, true);
  }, { authorize });
}
