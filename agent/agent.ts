// The composition root: builds one agent from its configuration out of the layers below, runs it and stops it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Catalog } from '../catalog/catalog-store.js';
import { checkStartPosture } from '../config/start-posture.js';
import { assessPosture } from '../config/posture.js';
import type { AgentConfig } from '../config/agent-config.js';
import { VERSION } from '../lib/version.js';
import { decodeServiceObject } from '../model/service-definition.js';
import { Authorizer } from '../policy/authorizer.js';
import { decideRequest } from '../policy/decision.js';
import type { ConfigEntryStore } from '../policy/config-entry-store.js';
import type { IntentionStore } from '../policy/intention-store.js';
import type { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { IdentityBinding } from '../identity/identity-binding.js';
import { ServiceTls } from '../identity/tls-identity.js';
import type { LeafSource, TrustSource } from '../identity/trust-sources.js';
import { LocalState } from '../local/local-state.js';
import { watchLocalPods } from '../local/kubernetes/local-pods.js';
import { ConsulBackend } from '../backend/consul/consul-backend.js';
import { GossipBackend } from '../backend/gossip/gossip-backend.js';
import type { BackendInputs } from '../backend/mesh-backend.js';
import type { GossipMembership } from '../backend/gossip/gossip-membership.js';
import { DataPlane } from '../dataplane/data-plane.js';
import { ProxyMetrics } from '../dataplane/metrics/proxy-metrics.js';
import { TransparentCapture } from '../dataplane/capture/transparent-capture.js';
import type { ApiDeps } from '../api/api-deps.js';
import type { LogTap } from '../lib/log-tap.js';
import { apiRoutes } from '../api/api-routes.js';
import { startMetricsServer } from '../api/metrics-server.js';
import { startPeerEndpoint } from '../api/peer-endpoint.js';
import { poolEdges } from '../api/pool-edges.js';
import { AgentCredential } from '../identity/ca/agent-credential.js';
import type { EdgeSummary } from '../dataplane/metrics/edge-stats.js';
import { startApiServer } from '../api/api-server.js';
import { Router } from '../api/http-router.js';
import { createMetrics } from '../api/metrics.js';
import { VirtualIps } from '../catalog/virtual-ips.js';
import { DnsAnswers } from '../dns/dns-answers.js';
import { Recursors } from '../dns/dns-recursors.js';
import { startDnsServer } from '../dns/dns-server.js';
import { localNode } from './local-node.js';

export interface RunningAgent {
  /** Where the HTTP API listens. */
  http: { host: string; port: number };
  /** Where DNS listens (UDP and TCP, on addresses.dns or the HTTP API's host); undefined with DNS off. */
  dnsPort: number | undefined;
  /** The metrics listener's port, when ports.metrics is on. */
  metricsPort: number | undefined;
  dataDir: string;
  catalog: Catalog;
  local: LocalState;
  /** Where the mesh state comes from: the gossip pool (built-in CA, replicated intentions) or a Consul agent. */
  backend: 'gossip' | 'consul';
  /** The built-in CA that signs this agent's leaves now (gossip backend only). */
  readonly ca: CertificateAuthority | undefined;
  trust: TrustSource;
  leaves: LeafSource;
  /** The replicated intention store (gossip backend only; Consul holds them in the other). */
  intentions: IntentionStore | undefined;
  /** The Consul backend, when it runs. */
  consul: ConsulBackend | undefined;
  /** Config entries replicated by gossip (gossip backend only; Consul holds them in the other). */
  configEntries: ConfigEntryStore | undefined;
  dataPlane: DataPlane;
  gossip: GossipMembership | undefined;
  /** Graceful stop: stop accepting, finish in-flight requests, flush state. Idempotent. */
  stop(reason?: string): Promise<void>;
  /** Resolves when the agent has stopped (for example after PUT /v1/agent/leave). */
  stopped: Promise<void>;
  /**
   * Applies what can change without a restart (SIGHUP): config-file services (registered, changed or
   * removed; API-registered ones untouched), the CA files and extra trusted roots. A new CA re-issues
   * every leaf; the old roots stay trusted for one leaf lifetime, so traffic keeps flowing.
   */
  reload(next: AgentConfig): Promise<void>;
  /** Re-reads the config from where it came from (flags, files) and reloads (SIGHUP, PUT /v1/agent/reload). */
  reloadFromSource(): Promise<void>;
}

export interface StartOptions {
  /** Reads the config again for a reload; without it a reload re-applies the config the agent started with. */
  loadConfig?: () => AgentConfig;
  /** The tap on `log` that GET /v1/agent/monitor streams from (createLogger's); without it the monitor is unavailable. */
  logTap?: LogTap;
}

/** The backend the config names: a Consul agent (`consul_addr`), else the gossip pool with its own CA. */
function openBackend(i: BackendInputs): Promise<GossipBackend | ConsulBackend> {
  const { config, catalog, log, registry } = i;
  if (config.consulAddr) return ConsulBackend.start({ address: config.consulAddr, token: config.consulToken, catalog, node: config.node, log, registry });
  return GossipBackend.open(i);
}

/** Config keys read only at start. */
const RESTART_KEYS = ['node', 'datacenter', 'dataDir', 'bind', 'client', 'httpPort', 'aclToken'] as const;

export async function startAgent(config: AgentConfig, log: Logger, opts: StartOptions = {}): Promise<RunningAgent> {
  checkStartPosture(config, log);
  const tempDir = config.dataDir === undefined;
  const dataDir = config.dataDir ?? mkdtempSync(join(tmpdir(), 'nodemesh-dev-'));
  if (tempDir) log.warn({ dataDir }, 'dev mode: state is kept in a fresh temporary directory and deleted at exit; pass --data-dir to keep it');
  // What is open, in start order; a failed start and stop() close it in reverse.
  const closers: (() => unknown)[] = [];
  const closeParts = async () => { for (const close of closers.splice(0).reverse()) await close(); };
  try {
    return await startIn(config, log, dataDir, opts, closers, closeParts, tempDir);
  } catch (e) {
    await closeParts();
    if (tempDir) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}

async function startIn(
  config: AgentConfig, log: Logger, dataDir: string, opts: StartOptions,
  closers: (() => unknown)[], closeParts: () => Promise<void>, tempDir: boolean,
): Promise<RunningAgent> {
  const node = localNode(config, dataDir);
  const catalog = new Catalog();
  const virtualIps = new VirtualIps(catalog, config.virtualIpRange);
  const metrics = createMetrics(catalog);
  const local = new LocalState({
    catalog, node, statePath: join(dataDir, 'local-state.json'), log,
    reapIntervalMs: config.checkReapIntervalMs, deregisterMinMs: config.checkDeregisterIntervalMinMs,
  });
  await local.start(config.services, decodeServiceObject);
  closers.push(() => local.close());
  // Trust, leaves, intentions and config entries: the gossip pool's own CA and stores, or a Consul agent's.
  const backend = await openBackend({ config, dataDir, node, catalog, log, registry: metrics.registry });
  closers.push(() => backend.close());

  // Decisions run per connection: matched once per destination and decided once per source, per change.
  const authorizer = new Authorizer(backend.intentions);
  const authorize = (source: { service: string; namespace: string }, destination: string) => authorizer.decide(source, destination);
  const proxyMetrics = new ProxyMetrics(metrics.registry, () => backend.leaves);
  const dataPlane = new DataPlane({
    catalog, nodeName: config.node, bind: config.bind, leaves: backend.leaves, metrics: proxyMetrics, log, authorize,
    tls: new ServiceTls(backend.trust, backend.leaves, backend.bindsNodeIdentities
      ? new IdentityBinding(catalog, backend.trust, { graceMs: config.identityGraceMs, log, metrics: proxyMetrics }) : undefined),
    intentionsFeed: backend.intentions.feed, trustFeed: backend.trust.feed, entries: backend.entries,
    decideRequest: (i, r) => decideRequest(i, r, backend.intentions.defaultPolicy()),
    onListening: (proxyId) => local.checks.probeNow(proxyId), tunnel: config.dataPlaneTunnel, accessLog: config.accessLog,
    capture: config.transparentProxy ? new TransparentCapture(virtualIps, config.transparentProxy, log, metrics.registry) : undefined,
  });
  closers.push(() => dataPlane.stop());
  await dataPlane.start();

  // The peer endpoint: this agent's edges for the pool's other agents, over mTLS with an agent certificate (gossip pool only).
  const peers = backend.kind === 'gossip' && config.peerPort >= 0 ? await openPeers(backend, config, log, () => proxyMetrics.edges.summaries(), closers) : undefined;

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => { resolveStopped = r; });
  const deps: ApiDeps = {
    config, catalog, virtualIps, local, log, metrics, version: VERSION, startedAt: new Date(),
    logTap: opts.logTap,
    members: () => (backend.kind === 'gossip' ? backend.members() : []),
    coordinates: () => (backend.kind === 'gossip' ? backend.coordinates() : new Map()),
    edges: () => proxyMetrics.edges.summaries(),
    poolEdges: () => (peers ? poolEdges(config.node, backend.kind === 'gossip' ? backend.members() : [], () => proxyMetrics.edges.summaries(), peers.credential) : Promise.resolve(undefined)),
    leave: () => void stop('leave requested through the API'),
    reload: () => reloadFromSource(),
    posture: () => assessPosture({ config, dataDir, defaultPolicy: backend.intentions.defaultPolicy(), leafExpiries: backend.leaves.expiries(), ...backend.posture() }),
    notReady: () => {
      const missing = dataPlane.missingListeners();
      return [...(stopping ? ['agent is shutting down'] : []), ...backend.notReady(), ...(missing.length ? [`listeners not open: ${missing.join(', ')}`] : [])];
    },
  };
  const router = new Router({ aclToken: config.aclToken, readsNeedToken: config.aclDefaultPolicy === 'deny', browserHosts: [config.node], log, observe: metrics.observeHttp });
  apiRoutes(router, deps, backend, authorize);
  const api = await startApiServer(router, { host: config.client, port: config.httpPort, log });
  closers.push(async () => {
    const closing = api.close();
    catalog.feed.close();
    await closing;
  });
  // The scrape endpoint for a cluster's Prometheus, apart from the API.
  let metricsPort: number | undefined;
  if (config.metricsPort >= 0) {
    const m = await startMetricsServer(metrics.registry, { host: config.metricsAddr ?? config.client, port: config.metricsPort, log });
    closers.push(() => m.close());
    metricsPort = m.port;
  }
  // Consul's DNS interface: names from the catalog, on the API's address.
  let dnsPort: number | undefined;
  if (config.dnsPort >= 0) {
    const { domain, datacenter, dnsConfig: c } = config;
    const dns = await startDnsServer({
      host: config.dnsAddr ?? config.client, port: config.dnsPort, domain, recursors: new Recursors(config.recursors), log,
      answers: new DnsAnswers(catalog, virtualIps, { domain, datacenter, onlyPassing: c.onlyPassing, serviceTtl: c.serviceTtlS, nodeTtl: c.nodeTtlS }),
      udpAnswerLimit: c.udpAnswerLimit, enableTruncate: c.enableTruncate,
    });
    closers.push(() => dns.close());
    dnsPort = dns.port;
  }
  await backend.join({
    httpPort: api.port, onNodeFailed: (name, addr) => dataPlane.tunnels.closeTo(addr, `node ${name} failed`),
    tags: peers ? { sp: String(peers.endpoint.port) } : {},
  });
  // Kubernetes: this node's annotated pods register themselves; off without a cluster config and NODE_NAME.
  const pods = await watchLocalPods(local, log);
  pods?.start();
  log.info({
    node: config.node, datacenter: config.datacenter, http: `${api.host}:${api.port}`, dataDir, version: VERSION,
    trustDomain: backend.trust.trustDomain, defaultIntentionPolicy: backend.intentions.defaultPolicy(), ...backend.describe(),
  }, 'nodemesh agent running');

  function stop(reason = 'shutdown'): Promise<void> {
    stopping ??= (async () => {
      log.info({ reason, drainTimeoutMs: config.drainTimeoutMs }, `agent stopping: refusing new connections, ${backend.kind === 'consul' ? 'deregistering from consul' : 'leaving the gossip pool'}, draining open ones`);
      await pods?.stop();
      // Drain: no new connections from here; open ones may finish while we leave the pool (or deregister from Consul).
      const drained = dataPlane.drain(config.drainTimeoutMs);
      await backend.leave();
      await drained;
      await closeParts();
      if (tempDir) rmSync(dataDir, { recursive: true, force: true });
      log.info('agent stopped');
      resolveStopped();
    })();
    return stopping;
  }

  async function reload(next: AgentConfig): Promise<void> {
    const services = await local.reloadConfigServices(next.services, decodeServiceObject);
    log.info(services, 'config services reloaded');
    await backend.reload(next);
    for (const k of RESTART_KEYS) if (next[k] !== config[k]) log.warn({ key: k }, 'config change needs a restart to take effect');
  }

  /** Async, so a config that fails to load rejects (the caller keeps the running one) instead of throwing. */
  async function reloadFromSource(): Promise<void> {
    await reload(opts.loadConfig ? opts.loadConfig() : config);
  }

  const gossip = backend.kind === 'gossip' ? backend : undefined;
  return {
    http: { host: api.host, port: api.port }, dnsPort, metricsPort, dataDir, catalog, local, backend: backend.kind,
    get ca() { return gossip?.ca; },
    trust: backend.trust, leaves: backend.leaves, intentions: gossip?.store, consul: backend.kind === 'consul' ? backend : undefined,
    configEntries: gossip?.entryStore, dataPlane, get gossip() { return gossip?.gossip; },
    stop, stopped, reload, reloadFromSource,
  };
}

/** This agent's credential for its peers and the endpoint that serves them its edges; closed with the agent. */
async function openPeers(backend: GossipBackend, config: AgentConfig, log: Logger, edges: () => EdgeSummary[], closers: (() => unknown)[]) {
  const credential = await AgentCredential.start(backend.bundle, { datacenter: config.datacenter, node: config.node, ttlMs: config.leafCertTtlMs, log });
  closers.push(() => credential.stop());
  const endpoint = await startPeerEndpoint({
    bind: config.bind, port: config.peerPort, credential: () => credential.current(), edges, log,
    isMember: (node) => backend.members().some((m) => m.Name === node && m.Status === 1),
  });
  closers.push(() => endpoint.close());
  credential.feed.subscribe(() => endpoint.refresh());
  return { endpoint, credential };
}
