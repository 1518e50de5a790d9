// /v1/operator/keyring: Consul's gossip keyring operations (list, install, use, remove), on the agent that receives the call.

import { NodemeshError } from '../lib/errors.js';
import type { GossipMembership } from '../backend/gossip/gossip-membership.js';
import { decodeOrThrow } from '../model/service-definition.js';
import type { ApiDeps } from './api-deps.js';
import type { RequestContext, Router } from './http-router.js';
import { sendError, sendJson, sendText, tokenAllows } from './http-router.js';
import { decodeBody } from '../lib/strict-json.js';

/*
 * Deviation from Consul: Consul runs each operation on every member of the pool through Serf queries and
 * counts the answers. nodemesh changes only the keyring of the agent that receives the call, so a rotation is
 * each step on every agent in turn: install the new key everywhere, then use it everywhere, then remove the
 * old one everywhere. The list is this agent's own view: each key counted once and NumNodes 1 (not the
 * number of live members: no other member was asked which keys it holds).
 */

/** Consul's api.KeyringResponse, for the LAN pool (an agent has no WAN keyring). */
interface KeyringResponse {
  WAN: boolean;
  Datacenter: string;
  Segment: string;
  Keys: Record<string, number>;
  PrimaryKeys: Record<string, number>;
  NumNodes: number;
}

export function operatorKeyringRoutes(r: Router, d: ApiDeps, gossip: () => GossipMembership | undefined): void {
  const membership = () => {
    const g = gossip();
    if (!g) throw new NodemeshError('GOSSIP_NOT_STARTED', 'gossip is not started yet: retry in a moment', 503);
    return g;
  };

  /** The request's `{"Key": "<base64>"}`, decoded strictly (unknown fields and wrong types are 400s). */
  const keyOf = async (ctx: RequestContext): Promise<string> => {
    const text = await ctx.body();
    const body = decodeOrThrow<{ Key?: string }>(() => decodeBody(text, { Key: 'string' }));
    if (body.Key === undefined) throw new NodemeshError('API_DECODE', 'Request decode failed: Key is missing: send {"Key": "<base64 gossip key>"}', 400);
    return body.Key;
  };

  // Unlike other reads, the list needs the token: it returns the keys themselves (Consul's keyring:read).
  r.on('GET', '/v1/operator/keyring', (ctx) => {
    if (!tokenAllows(ctx.req, ctx.query, d.config.aclToken)) {
      return sendError(ctx.res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: listing the gossip keyring returns the keys, so it needs the agent\'s ACL token (X-Consul-Token header, ?token= or Authorization: Bearer)');
    }
    const keys = membership().listKeys();
    const counted = (list: typeof keys) => Object.fromEntries(list.map((k) => [k.key, 1]));
    const lan: KeyringResponse = {
      WAN: false, Datacenter: d.config.datacenter, Segment: '',
      Keys: counted(keys), PrimaryKeys: counted(keys.filter((k) => k.primary)), NumNodes: 1,
    };
    sendJson(ctx.res, 200, [lan]);
  });

  // Writes: the router already requires the token for them. 200 and an empty body on success, as Consul.
  r.on('POST', '/v1/operator/keyring', async (ctx) => {
    membership().installKey(await keyOf(ctx));
    sendText(ctx.res, 200, '');
  });

  r.on('PUT', '/v1/operator/keyring', async (ctx) => {
    membership().useKey(await keyOf(ctx));
    sendText(ctx.res, 200, '');
  });

  r.on('DELETE', '/v1/operator/keyring', async (ctx) => {
    membership().removeKey(await keyOf(ctx));
    sendText(ctx.res, 200, '');
  });
}
