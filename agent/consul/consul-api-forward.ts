// The HTTP API in Consul mode: catalog, health, intentions and CA requests go to Consul as they came (blocking queries included), so the CLI and Consul clients see Consul's own answers.

import type { Handler } from '../api/http-router.js';
import { sendJson, sendText } from '../api/http-router.js';
import type { ConsulHttp } from './consul-http.js';

/** What is Consul's to answer: the cluster-wide state. The agent's own endpoints (services, checks, self, ready) stay local. */
export const FORWARDED_PREFIXES = ['/v1/catalog', '/v1/health', '/v1/connect', '/v1/agent/connect/ca'];

/** Response headers worth passing back (blocking-query indexes, cache state). */
const PASS_HEADERS = ['x-consul-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency', 'x-cache', 'age'];

export function consulForward(http: ConsulHttp, agentToken: () => string | undefined): Handler {
  return async (ctx) => {
    const method = ctx.req.method ?? 'GET';
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of ctx.query) {
      if (k === 'token') continue;
      const have = query[k];
      query[k] = have === undefined ? v : Array.isArray(have) ? [...have, v] : [have, v];
    }
    const header = ctx.req.headers['x-consul-token'];
    // The caller's token when it brings one (Consul checks it); otherwise the agent's, as a Consul agent does.
    const token = (typeof header === 'string' && header) || ctx.query.get('token') || agentToken();
    const body = method === 'GET' || method === 'HEAD' ? undefined : await ctx.body();
    const path = ctx.params.path.replace(/^\/v1/, '');
    const r = await http.raw(method, path, query as Record<string, string>, body || undefined, token);
    const headers: Record<string, string> = {};
    for (const h of PASS_HEADERS) {
      const v = r.headers[h];
      if (typeof v === 'string') headers[h.replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase())] = v;
    }
    if (Buffer.isBuffer(r.body)) return sendText(ctx.res, r.status, r.body.toString('utf8'), headers);
    if (typeof r.body === 'string') return sendText(ctx.res, r.status, r.body, headers);
    if (r.body === undefined) return sendText(ctx.res, r.status, '', headers);
    return sendJson(ctx.res, r.status, r.body, headers);
  };
}
