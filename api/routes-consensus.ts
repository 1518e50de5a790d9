// Consul's endpoints that need its servers' consensus (KV, sessions, locks, transactions, prepared queries, snapshots):
// forwarded to Consul in Consul mode; in the gossip pool a clear 501 that names the way to get them, never an empty store.

import type { Router } from './http-router.js';
import { sendError } from './http-router.js';

/** The endpoints that only a consensus store answers right. */
export const CONSENSUS_PREFIXES = ['/v1/kv', '/v1/session', '/v1/txn', '/v1/query', '/v1/snapshot'];

/**
 * The gossip pool has no consensus, so no KV, sessions or locks: a 501 that says so. It carries an X-Consul-Index,
 * so a watch (consul watch, consul-template) backs off instead of spinning, and it is not a 404, which clients
 * read as "no such key".
 */
export function consensusRoutes(router: Router): void {
  router.mount('needs consensus', CONSENSUS_PREFIXES, async (ctx) => {
    const what = (CONSENSUS_PREFIXES.find((p) => ctx.params.path.startsWith(p)) ?? '/v1/kv').slice(4);
    sendError(ctx.res, 501, 'CONSENSUS_REQUIRED',
      `${what} needs Consul's servers (a consensus store): the gossip pool has none, so nodemesh does not pretend to. Run the agent with --consul-addr to use a Consul cluster's ${what}.`,
      { 'X-Consul-Index': '1', 'X-Consul-KnownLeader': 'false' });
  });
}
