// What the HTTP routes need from the running agent.

import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog-store.js';
import type { VirtualIps } from '../catalog/virtual-ips.js';
import { NodemeshError } from '../lib/errors.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { LocalState } from '../local/local-state.js';
import type { AgentMetrics } from './metrics.js';

export interface ApiDeps {
  config: AgentConfig;
  catalog: Catalog;
  /** Mesh services' virtual IPs (tagged addresses in catalog answers). */
  virtualIps: VirtualIps;
  local: LocalState;
  log: Logger;
  metrics: AgentMetrics;
  version: string;
  startedAt: Date;
  /** The gossip pool's members, in Consul's shape. */
  members(): import('../backend/gossip/gossip-membership.js').ConsulMember[];
  /** The agent log's tap (GET /v1/agent/monitor); absent when the agent was given a logger without one. */
  logTap?: import('../lib/log-tap.js').LogTap;
  /** Serf's network coordinates by node name (this node's included), for /v1/coordinate and ?near=. */
  coordinates(): Map<string, import('../membership/network-coordinate.js').Coordinate>;
  /** This agent's edges over the last minute (golden metrics per source → destination). */
  edges(): import('../dataplane/metrics/edge-stats.js').EdgeSummary[];
  /** Every live agent's edges (this one's included), asked over the peer endpoint; undefined when it is off. */
  poolEdges(): Promise<import('./pool-edges.js').NodeEdges[] | undefined>;
  /** Starts a graceful shutdown (PUT /v1/agent/leave). */
  leave(): void;
  /** Re-reads the config files and applies them (PUT /v1/agent/reload); rejects with a 4xx error on a bad config. */
  reload(): Promise<void>;
  /** Why the agent is not ready to carry traffic yet; empty when it is (GET /v1/agent/ready). */
  notReady(): string[];
  /** Security posture findings (GET /v1/agent/posture, `nodemesh verify`). */
  posture(): import('../config/posture.js').Finding[];
}

/** Consul's boolean query flags: present, "", "true" or "1" mean yes. */
export function queryFlag(query: URLSearchParams, name: string, error: string): boolean {
  if (!query.has(name)) return false;
  const v = query.get(name) ?? '';
  if (v === '' || v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new NodemeshError('API_BAD_QUERY', error, 400);
}
