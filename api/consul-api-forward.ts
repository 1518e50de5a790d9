// The HTTP API in Consul mode: catalog, health, intentions and CA requests go to Consul as they came (blocking queries included), so the CLI and Consul clients see Consul's own answers.

import type { Handler } from './http-router.js';
import { sendError, tokenAllows } from './http-router.js';
import { checkLeafIsLocal, type LocalIdentities } from './local-identities.js';
import type { ConsulHttp } from '../backend/consul/consul-http.js';
import { passThrough } from '../backend/consul/consul-pass-through.js';
import { CONSENSUS_PREFIXES } from './routes-consensus.js';

/**
 * What is Consul's to answer: the cluster-wide state, and what needs its consensus (KV, sessions, locks, transactions,
 * queries, snapshots, the operator and ACL endpoints). The agent's own endpoints (services, checks, self, ready) stay local.
 */
export const FORWARDED_PREFIXES = ['/v1/catalog', '/v1/health', '/v1/connect', '/v1/agent/connect/ca', '/v1/config', '/v1/event', '/v1/coordinate', '/v1/acl', '/v1/operator', ...CONSENSUS_PREFIXES];

/** Response headers worth passing back (blocking-query indexes, cache state). */
const PASS_HEADERS = ['x-consul-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency', 'x-cache', 'age'];

export function consulForward(http: ConsulHttp, consulToken: () => string | undefined, aclToken: string | undefined, local: () => LocalIdentities): Handler {
  return async (ctx) => {
    const method = ctx.req.method ?? 'GET';
    // A leaf carries a private key: as in gossip mode, reading one needs the agent's token when one is set
    // (else any local caller would get a key through the agent's Consul token).
    if (ctx.params.path.startsWith('/v1/agent/connect/ca/leaf/')) {
      if (!tokenAllows(ctx.req, ctx.query, aclToken)) return sendError(ctx.res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: reading a leaf certificate needs the agent\'s ACL token');
      // And, as in gossip mode, only for this node's services (Consul itself would sign any name the token may write).
      checkLeafIsLocal(ctx.params.path.slice('/v1/agent/connect/ca/leaf/'.length), local());
    }
    const header = ctx.req.headers['x-consul-token'];
    const given = (typeof header === 'string' && header) || ctx.query.get('token') || undefined;
    // The caller's Consul token when it brings one (Consul checks it); the agent's own Consul token when it
    // brings none, or brings nodemesh's API token (which means nothing to Consul), as a Consul agent does.
    const token = given && given !== aclToken ? given : consulToken();
    const body = method === 'GET' || method === 'HEAD' ? undefined : await ctx.bytes();
    const search = new URLSearchParams();
    for (const [k, v] of ctx.query) if (k !== 'token') search.append(k, v);
    const qs = search.toString();
    const out: Record<string, string> = token ? { 'x-consul-token': token } : {};
    const type = ctx.req.headers['content-type'];
    if (typeof type === 'string') out['content-type'] = type;
    const r = await passThrough(http.url, method, `${ctx.params.path}${qs ? `?${qs}` : ''}`, body, out, ctx.signal);
    const headers: Record<string, string> = {};
    for (const h of [...PASS_HEADERS, 'content-type']) {
      const v = r.headers[h];
      if (typeof v === 'string') headers[h.replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase())] = v;
    }
    // Consul's own answer, errors included, goes back as Consul sent it, byte for byte (no X-Nodemesh-Error: the code
    // would be Consul's).
    ctx.res.writeHead(r.status, headers);
    ctx.res.end(r.body);
  };
}
