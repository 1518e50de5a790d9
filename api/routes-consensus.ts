// Consul's endpoints that need its servers (KV, sessions, locks, transactions, prepared queries, snapshots, Raft and
// autopilot operations, the ACL system): forwarded to Consul in Consul mode; in the gossip pool a clear 501 (401 for ACLs,
// as Consul without ACLs) that names the way to get them, never an empty store.

import type { Router } from './http-router.js';
import { sendError } from './http-router.js';

/** The endpoints that only a consensus store answers right. */
export const CONSENSUS_PREFIXES = ['/v1/kv', '/v1/session', '/v1/txn', '/v1/query', '/v1/snapshot'];
/** Consul's server operations: Raft peers, autopilot, network areas. */
export const SERVER_PREFIXES = ['/v1/operator/raft', '/v1/operator/autopilot', '/v1/operator/area'];

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
  router.mount('needs servers', SERVER_PREFIXES, async (ctx) => {
    sendError(ctx.res, 501, 'CONSENSUS_REQUIRED',
      `${ctx.params.path.slice(4)}: the gossip pool has no servers (no Raft, no autopilot, no areas) to operate on. With --consul-addr these go to the Consul cluster.`,
      { 'X-Consul-Index': '1', 'X-Consul-KnownLeader': 'false' });
  });
  // Consul without ACLs answers this way; nodemesh has an agent token and an operator token, not Consul's ACL system.
  router.mount('no ACL system', ['/v1/acl'], async (ctx) => {
    sendError(ctx.res, 401, 'ACL_SYSTEM_ABSENT',
      'ACL support disabled: nodemesh has no ACL system (tokens, policies, roles); it takes one agent token (acl_token) and one operator token (operator_token) from its config. With --consul-addr, /v1/acl goes to the Consul cluster.');
  });
}
