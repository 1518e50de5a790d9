// /v1/connect/* and /v1/agent/connect/*: intentions, CA roots and leaf certificates from the gossip backend, and authorization.

import { NodemeshError } from '../lib/errors.js';
import { decide, matchIntentions, type Decision } from '../policy/decision.js';
import type { Intention, IntentionInput } from '../model/intention.js';
import type { IntentionStore } from '../policy/intention-store.js';
import type { TrustBundle } from '../identity/ca/trust-bundle.js';
import type { LeafSource } from '../identity/trust-sources.js';
import { parseServiceId } from '../identity/spiffe/spiffe-id.js';
import { decodeOrThrow } from '../model/service-definition.js';
import type { ApiDeps } from './api-deps.js';
import { answerBlocking } from './blocking-query.js';
import { checkLeafIsLocal, localIdentities } from './local-identities.js';
import type { RequestContext, Router } from './http-router.js';
import { requestToken, sendError, sendJson, tokenAllows } from './http-router.js';
import type { PolicyWrites } from '../backend/gossip/policy-writes.js';
import { decodeBody, type Schema } from '../lib/strict-json.js';

export interface ConnectDeps {
  intentions: IntentionStore;
  trust: TrustBundle;
  leaves: LeafSource;
  defaultPolicy: 'allow' | 'deny';
  /** The protocol a service speaks by config entries (L7 intentions need an HTTP-family one). */
  protocolOf?: (service: string) => string;
  /** Intention writes: signed here on a policy writer, forwarded to one elsewhere. */
  writes: PolicyWrites;
}

const INTENTION_SCHEMA: Schema = {
  ID: 'string', Description: 'string', SourceNS: 'string', SourceName: 'string', DestinationNS: 'string',
  DestinationName: 'string', SourceType: 'string', Action: 'string', DefaultAddr: 'string', DefaultPort: 'int',
  Meta: 'map[string]string',
  // Read-only fields a client echoes back from a GET; accepted and ignored, as Consul does.
  Precedence: 'int', CreatedAt: 'any', UpdatedAt: 'any', Hash: 'any', CreateIndex: 'any', ModifyIndex: 'any', LegacyID: 'any',
  // Consul 1.9's L7 rules.
  Permissions: { array: { struct: {
    Action: 'string',
    HTTP: { struct: {
      PathExact: 'string', PathPrefix: 'string', PathRegex: 'string', Methods: { array: 'string' },
      Header: { array: { struct: { Name: 'string', Present: 'bool', Exact: 'string', Prefix: 'string', Suffix: 'string', Regex: 'string', Invert: 'bool' } } },
    } },
  } } },
};

const READ_ONLY = ['Precedence', 'CreatedAt', 'UpdatedAt', 'Hash', 'CreateIndex', 'ModifyIndex', 'LegacyID'];

async function intentionBody(ctx: RequestContext, protocolOf?: (service: string) => string): Promise<IntentionInput> {
  return parseIntentionBody(await ctx.body(), protocolOf);
}

/** An intention as the API takes it: strict decode, read-only fields dropped, the L7 protocol check (4xx NodemeshError on bad input). */
export function parseIntentionBody(text: string, protocolOf?: (service: string) => string): IntentionInput {
  const body = decodeOrThrow<Record<string, unknown>>(() => decodeBody(text, INTENTION_SCHEMA));
  for (const k of READ_ONLY) delete body[k];
  // Consul: L7 rules need a destination that speaks HTTP, so each request can be seen.
  if (Array.isArray(body.Permissions) && body.Permissions.length > 0 && protocolOf) {
    const dest = String(body.DestinationName ?? '');
    const p = protocolOf(dest);
    if (!['http', 'http2', 'grpc'].includes(p)) {
      throw new NodemeshError('INTENTION_L7_PROTOCOL', `Permissions need an HTTP-family destination, but ${JSON.stringify(dest)} has protocol ${JSON.stringify(p)}: set Protocol "http" in its service-defaults first`, 400);
    }
  }
  return body as IntentionInput;
}

const required = (q: URLSearchParams, name: string) => {
  const v = q.get(name);
  if (!v) throw new NodemeshError('API_MISSING_PARAM', `required query parameter '${name}' not set`, 400);
  return v;
};

export function connectRoutes(r: Router, d: ApiDeps, c: ConnectDeps): void {
  const store = c.intentions;

  r.on('GET', '/v1/connect/intentions', (ctx) => answerBlocking(ctx, store.feed, () => ({ index: store.index, body: store.list() })));

  r.on('POST', '/v1/connect/intentions', async (ctx) => {
    const created = (await c.writes.apply({ op: 'intention.create', input: await intentionBody(ctx, c.protocolOf) }, requestToken(ctx.req, ctx.query))).result as Intention;
    d.log.info({ id: created.ID, source: created.SourceName, destination: created.DestinationName, action: created.Action }, 'intention created');
    sendJson(ctx.res, 200, { ID: created.ID });
  }, { authorize: (t) => c.writes.tokenAllows(t) });

  r.on('GET', '/v1/connect/intentions/match', (ctx) => {
    const by = required(ctx.query, 'by');
    if (by !== 'source' && by !== 'destination') throw new NodemeshError('API_BAD_PARAM', "'by' parameter must be one of 'source' or 'destination'", 400);
    required(ctx.query, 'name');
    const names = ctx.query.getAll('name');
    return answerBlocking(ctx, store.feed, () => ({
      index: store.index,
      body: Object.fromEntries(names.map((n) => [n, matchIntentions(store.list(), by, n)])),
    }));
  });

  r.on('GET', '/v1/connect/intentions/check', (ctx) => {
    const source = required(ctx.query, 'source');
    const destination = required(ctx.query, 'destination');
    const type = ctx.query.get('source-type') ?? 'consul';
    if (type !== 'consul') throw new NodemeshError('API_BAD_PARAM', `unsupported SourceType: ${JSON.stringify(type)}`, 400);
    sendJson(ctx.res, 200, { Allowed: decide(store.list(), source, destination, c.defaultPolicy).allowed });
  });

  r.on('GET', '/v1/connect/intentions/:id', (ctx) => sendJson(ctx.res, 200, store.get(ctx.params.id)));

  r.on('PUT', '/v1/connect/intentions/:id', async (ctx) => {
    const body = await intentionBody(ctx, c.protocolOf);
    delete body.ID; // the URL's ID wins
    const updated = (await c.writes.apply({ op: 'intention.update', id: ctx.params.id, input: body }, requestToken(ctx.req, ctx.query))).result as Intention;
    d.log.info({ id: updated.ID, action: updated.Action }, 'intention updated');
    sendJson(ctx.res, 200, true);
  }, { authorize: (t) => c.writes.tokenAllows(t) });

  r.on('DELETE', '/v1/connect/intentions/:id', async (ctx) => {
    await c.writes.apply({ op: 'intention.delete', id: ctx.params.id }, requestToken(ctx.req, ctx.query));
    d.log.info({ id: ctx.params.id }, 'intention deleted');
    sendJson(ctx.res, 200, true);
  }, { authorize: (t) => c.writes.tokenAllows(t) });

  const roots = (ctx: RequestContext) => answerBlocking(ctx, c.trust.feed, () => ({ index: c.trust.index, body: c.trust.rootsView() }));
  r.on('GET', '/v1/agent/connect/ca/roots', roots);
  r.on('GET', '/v1/connect/ca/roots', roots);

  r.on('GET', '/v1/agent/connect/ca/leaf/:service*', async (ctx) => {
    const service = ctx.params.service;
    if (!service) throw new NodemeshError('SERVICE_NAME_MISSING', 'Missing service name', 400);
    // A leaf carries a private key: with a token configured, reading one needs it too.
    if (!tokenAllows(ctx.req, ctx.query, d.config.aclToken)) return sendError(ctx.res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: reading a leaf certificate needs the agent\'s ACL token');
    // This agent mints identities only for workloads on its own node (as ztunnel): another node's service gets none here.
    checkLeafIsLocal(service, localIdentities(d.local, d.config.node));
    await c.leaves.get(service);
    return answerBlocking(ctx, c.leaves.feed, () => {
      const leaf = c.leaves.current(service)!;
      return { index: leaf.ModifyIndex, body: leaf };
    });
  });
}

/** POST /v1/agent/connect/authorize: the decision a connection from ClientCertURI to Target gets here (both backends). */
export function authorizeRoute(r: Router, authorize: (source: { service: string; namespace: string }, destination: string) => Decision): void {
  r.on('POST', '/v1/agent/connect/authorize', async (ctx) => {
    const text = await ctx.body();
    let body: { Target?: string; ClientCertURI?: string; ClientCertSerial?: string };
    try {
      body = decodeOrThrow(() => decodeBody(text, { Target: 'string', ClientCertURI: 'string', ClientCertSerial: 'string', Namespace: 'string' }));
    } catch (e) {
      throw new NodemeshError('API_DECODE', `Bad request: ${(e as Error).message}`, 400);
    }
    if (!body.Target) throw new NodemeshError('AUTHZ_BAD_REQUEST', 'Bad request: Target service must be specified', 400);
    const uri = body.ClientCertURI ?? '';
    if (!uri.startsWith('spiffe://')) throw new NodemeshError('AUTHZ_BAD_REQUEST', 'Bad request: ClientCertURI not a valid Connect identifier', 400);
    const id = parseServiceId(uri);
    if (!id) throw new NodemeshError('AUTHZ_BAD_REQUEST', 'Bad request: ClientCertURI not a valid Service identifier', 400);
    const decision = authorize({ service: id.service, namespace: id.namespace }, body.Target);
    // As Consul 1.9: an L4 check that meets an L7 intention is not authorized (only a request can be).
    sendJson(ctx.res, 200, { Authorized: decision.allowed && !decision.l7, Reason: decision.reason }, { 'X-Cache': 'MISS', Age: '0' });
  });
}

