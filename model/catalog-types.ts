// Catalog record shapes: nodes, service instances and checks, in Consul's field names.

export type HealthStatus = 'passing' | 'warning' | 'critical' | 'maintenance';
export const HEALTH_STATUSES: readonly HealthStatus[] = ['passing', 'warning', 'critical', 'maintenance'];

export interface Weights { Passing: number; Warning: number }

export interface Upstream {
  DestinationType: string;
  DestinationNamespace?: string;
  DestinationName: string;
  Datacenter?: string;
  LocalBindAddress?: string;
  LocalBindPort: number;
  Config?: Record<string, unknown>;
  MeshGateway?: Record<string, unknown>;
}

export interface ProxyConfig {
  DestinationServiceName: string;
  DestinationServiceID?: string;
  LocalServiceAddress?: string;
  LocalServicePort?: number;
  Config?: Record<string, unknown>;
  Upstreams?: Upstream[];
  MeshGateway?: Record<string, unknown>;
  Expose?: Record<string, unknown>;
}

export interface ConnectConfig { Native?: boolean; SidecarService?: unknown }

/** One service instance registered on a node (Consul's AgentService). */
export interface ServiceRecord {
  Kind?: string;
  ID: string;
  Service: string;
  Tags: string[];
  Meta: Record<string, string>;
  Port: number;
  Address: string;
  TaggedAddresses?: Record<string, { Address: string; Port: number }>;
  Weights: Weights;
  EnableTagOverride: boolean;
  Proxy?: ProxyConfig;
  Connect?: ConnectConfig;
  /** Set on a sidecar made from its parent's Connect.SidecarService: it goes when the parent goes. */
  LocallyRegisteredAsSidecar?: boolean;
  CreateIndex: number;
  ModifyIndex: number;
}

/** How a check is run; durations in milliseconds (0 = unset). */
export interface CheckDefinition {
  HTTP?: string;
  Header?: Record<string, string[]>;
  Method?: string;
  Body?: string;
  TLSSkipVerify?: boolean;
  TCP?: string;
  TTL?: number;
  Interval?: number;
  Timeout?: number;
  DeregisterCriticalServiceAfter?: number;
  SuccessBeforePassing?: number;
  FailuresBeforeCritical?: number;
  OutputMaxSize?: number;
  AliasNode?: string;
  AliasService?: string;
}

export interface CheckRecord {
  Node: string;
  CheckID: string;
  Name: string;
  Status: HealthStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Type: string;
  Definition: CheckDefinition;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface NodeInfo {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string>;
  Meta: Record<string, string>;
}

/** Everything one node owns: the unit of persistence and, later, of replication. */
export interface NodeEntry {
  info: NodeInfo;
  /** Bumped on every change to this node's own entries; only the owning agent writes it. */
  version: number;
  createIndex: number;
  modifyIndex: number;
  services: Map<string, ServiceRecord>;
  checks: Map<string, CheckRecord>;
}

/** The serializable form of a NodeEntry. */
export interface NodeSnapshot {
  info: NodeInfo;
  version: number;
  createIndex: number;
  modifyIndex: number;
  services: ServiceRecord[];
  checks: CheckRecord[];
}
