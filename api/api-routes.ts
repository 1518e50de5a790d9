// Every route of the HTTP API: this agent's own (services, checks, self, authorize) and the backend's (the pool's catalog, health, connect, config entries and keyring, or Consul's, passed through).

import type { ConsulBackend } from '../backend/consul/consul-backend.js';
import type { GossipBackend } from '../backend/gossip/gossip-backend.js';
import type { Decision } from '../policy/decision.js';
import { protocolOf } from '../model/config-entry.js';
import type { ApiDeps } from './api-deps.js';
import { consulForward, FORWARDED_PREFIXES } from './consul-api-forward.js';
import type { Router } from './http-router.js';
import { localIdentities } from './local-identities.js';
import { catalogRoutes } from './routes-catalog.js';
import { consensusRoutes } from './routes-consensus.js';
import { configRoutes } from './routes-config.js';
import { connectCaConfigRoutes } from './routes-connect-ca-config.js';
import { authorizeRoute, connectRoutes } from './routes-connect.js';
import { agentCheckRoutes } from './routes-agent-checks.js';
import { agentSelfRoutes } from './routes-agent-self.js';
import { agentMonitorRoutes } from './routes-agent-monitor.js';
import { edgeRoutes } from './routes-edges.js';
import { uiRoutes } from './ui-assets.js';
import { agentServiceRoutes } from './routes-agent-services.js';
import { healthRoutes } from './routes-health.js';
import { operatorKeyringRoutes } from './routes-operator-keyring.js';
import { agentPoolRoutes } from './routes-agent-pool.js';
import { eventRoutes } from './routes-event.js';
import { coordinateRoutes } from './routes-coordinate.js';

/** Whether `source` may call `destination` now (POST /v1/agent/connect/authorize). */
type Authorize = (source: { service: string; namespace: string }, destination: string) => Decision;

export function apiRoutes(router: Router, deps: ApiDeps, backend: GossipBackend | ConsulBackend, authorize: Authorize): void {
  const { config, local } = deps;
  agentServiceRoutes(router, deps);
  agentCheckRoutes(router, deps);
  agentSelfRoutes(router, deps);
  agentMonitorRoutes(router, deps);
  edgeRoutes(router, deps);
  uiRoutes(router);
  authorizeRoute(router, authorize);
  if (backend.kind === 'consul') {
    // Cluster-wide reads and writes are Consul's to answer.
    router.mount('consul pass-through', FORWARDED_PREFIXES, consulForward(backend.http, () => config.consulToken, config.aclToken, () => localIdentities(local, config.node)));
    return;
  }
  catalogRoutes(router, deps);
  healthRoutes(router, deps);
  consensusRoutes(router);
  connectRoutes(router, deps, {
    intentions: backend.store, trust: backend.bundle, leaves: backend.leaves, defaultPolicy: backend.intentions.defaultPolicy(),
    protocolOf: (svc) => protocolOf(svc, backend.entries.get), writes: backend.writes,
  });
  connectCaConfigRoutes(router, deps, {
    trust: backend.bundle, replaceSigningCa: (chain, key, force) => backend.replaceSigningCa(chain, key, force), authorize: (t) => backend.writes.tokenAllows(t),
  });
  configRoutes(router, backend.entryStore, backend.writes);
  // The gossip keyring (this agent's): the pool is joined after the HTTP server listens, hence the lazy reference.
  operatorKeyringRoutes(router, deps, () => backend.gossip);
  agentPoolRoutes(router, () => backend.gossip);
  eventRoutes(router, deps, () => backend.events);
  coordinateRoutes(router, deps);
}
