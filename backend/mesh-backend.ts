// The seam between the agent and where its mesh state comes from: what either backend (gossip pool, Consul) gives the layers above.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Catalog } from '../catalog/catalog-store.js';
import type { ChangeFeed } from '../lib/change-feed.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { PostureInput } from '../config/posture.js';
import type { NodeInfo } from '../model/catalog-types.js';
import type { EntrySource } from '../model/config-entry.js';
import type { IntentionSource } from '../policy/authorizer.js';
import type { LeafSource, TrustSource } from '../identity/trust-sources.js';

/** What opening a backend needs from the agent. */
export interface BackendInputs {
  config: AgentConfig;
  dataDir: string;
  /** This node as the catalog lists it (its ID and advertised address). */
  node: NodeInfo;
  catalog: Catalog;
  log: Logger;
  registry: Registry;
}

/** What joining needs: things that exist only once the HTTP API and the data plane run. */
export interface JoinInputs {
  /** The HTTP API's port (advertised to the pool). */
  httpPort: number;
  /** Extra Serf tags to advertise (the peer endpoint's port, `sp`). */
  tags?: Record<string, string>;
  /** A peer node failed: its tunnels should close so callers move to live instances. */
  onNodeFailed(name: string, addr: string): void;
}

export interface MeshBackend {
  readonly kind: 'gossip' | 'consul';
  /** The roots a peer's chain may end in. */
  readonly trust: TrustSource;
  /** Local services' leaves, kept fresh. */
  readonly leaves: LeafSource;
  /** Intentions, with the default policy that applies when none matches. */
  readonly intentions: IntentionSource;
  /** Config entries (protocol, routing, mesh). */
  readonly entries: EntrySource & { readonly feed: ChangeFeed };
  /** Whether a node's intermediate speaks only for what the catalog lists on that node (the pool's own CA; Consul has no node intermediates). */
  readonly bindsNodeIdentities: boolean;
  /** Joins the pool (or starts following Consul): after the HTTP API listens. */
  join(inputs: JoinInputs): Promise<void>;
  /** Why the agent is not ready yet, from the backend's side; empty when it is. */
  notReady(): string[];
  /** The backend's part of the security posture. */
  posture(): Pick<PostureInput, 'backend' | 'caKeyFile' | 'authority'>;
  /** A clean stop's first step: leave the pool or deregister, so peers stop picking this node while open connections finish. */
  leave(): Promise<void>;
  /** Stops watches and timers and flushes stores; after a failed start too. Idempotent. */
  close(): Promise<void>;
  /** Applies what can change without a restart (CA files, extra trusted roots). */
  reload(next: AgentConfig): Promise<void>;
  /** What the start-up log line says about it. */
  describe(): Record<string, string>;
}
