// /v1/agent/join and /v1/agent/force-leave: Consul's pool operations, run by this agent's gossip membership.

import { NodemeshError } from '../lib/errors.js';
import type { GossipMembership } from '../backend/gossip/gossip-membership.js';
import type { Router } from './http-router.js';
import { sendText } from './http-router.js';

export function agentPoolRoutes(r: Router, gossip: () => GossipMembership | undefined): void {
  const membership = () => {
    const g = gossip();
    if (!g) throw new NodemeshError('GOSSIP_NOT_STARTED', 'gossip is not started yet: retry in a moment', 503);
    return g;
  };

  // `consul join ADDR`: ADDR is host or host:port (8301 by default); ?wan=1 has no meaning without WAN federation.
  r.on('PUT', '/v1/agent/join/:address*', async (ctx) => {
    const address = ctx.params.address;
    if (!address) throw new NodemeshError('API_BAD_QUERY', 'Missing address to join: PUT /v1/agent/join/<host[:port]>', 400);
    if (ctx.query.get('wan') && ctx.query.get('wan') !== '0') throw new NodemeshError('API_UNSUPPORTED', 'WAN join is not supported: nodemesh has one LAN pool per datacenter', 400);
    const n = await membership().join([address]);
    if (n === 0) throw new NodemeshError('JOIN_FAILED', `Failed to join ${address}: check the address and port, and that the gossip key matches the pool's`, 500);
    sendText(ctx.res, 200, '');
  });

  // `consul force-leave NODE`: a failed member is announced as left and goes from every catalog now.
  r.on('PUT', '/v1/agent/force-leave/:node*', async (ctx) => {
    const node = ctx.params.node;
    if (!node) throw new NodemeshError('API_BAD_QUERY', 'Missing node name: PUT /v1/agent/force-leave/<node>', 400);
    if (!membership().forceLeave(node)) throw new NodemeshError('NODE_UNKNOWN', `agent: No node found with name '${node}'`, 404);
    sendText(ctx.res, 200, '');
  });
}
