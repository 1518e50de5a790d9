// Wires one agent together — data dir, catalog, local state, checks, HTTP API — and shuts it down cleanly.

import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Catalog } from '../catalog/catalog-store.js';
import { NodemeshError } from '../lib/errors.js';
import type { NodeInfo } from '../model/catalog-types.js';
import type { ApiDeps } from '../api/api-deps.js';
import { Router } from '../api/http-router.js';
import { checkStartPosture } from '../config/start-posture.js';
import { localIdentities } from '../api/local-identities.js';
import { agentCheckRoutes } from '../api/routes-agent-checks.js';
import { agentSelfRoutes } from '../api/routes-agent-self.js';
import { agentServiceRoutes } from '../api/routes-agent-services.js';
import { catalogRoutes } from '../api/routes-catalog.js';
import { healthRoutes } from '../api/routes-health.js';
import { authorizeRoute, connectRoutes } from '../api/routes-connect.js';
import { configRoutes } from '../api/routes-config.js';
import { operatorKeyringRoutes } from '../api/routes-operator-keyring.js';
import { ConfigEntryStore } from '../policy/config-entry-store.js';
import { protocolOf } from '../model/config-entry.js';
import { decideRequest } from '../policy/decision.js';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { LeafCerts } from '../identity/ca/leaf-certs.js';
import { IntentionStore } from '../policy/intention-store.js';
import { Authorizer, withDefault } from '../policy/authorizer.js';
import { DataPlane } from '../dataplane/data-plane.js';
import { ProxyMetrics } from '../dataplane/proxy-metrics.js';
import { ServiceTls } from '../identity/tls-identity.js';
import { IdentityBinding } from '../identity/identity-binding.js';
import { TrustBundle } from '../identity/ca/trust-bundle.js';
import { GossipMembership, registerGossipMetrics } from '../backend/gossip/gossip-membership.js';
import { CatalogReplicator } from '../catalog/replication.js';
import { NodeState } from '../membership/wire-messages.js';
import { Counter } from 'prom-client';
import { PoolAuthority, loadPolicyCredential } from '../identity/authority/pool-authority.js';
import { signedPolicySet } from '../identity/authority/signed-policy-set.js';
import type { RecordSeal } from '../catalog/lww-record-store.js';
import { LocalPolicyWrites, type PolicyWrites } from '../backend/gossip/policy-writes.js';
import { ForwardedPolicyWrites, startPolicyEndpoint } from '../backend/gossip/policy-forwarding.js';
import { ConsulBackend } from '../backend/consul/consul-backend.js';
import { consulForward, FORWARDED_PREFIXES } from '../api/consul-api-forward.js';
import type { LeafSource, TrustSource } from '../identity/trust-sources.js';
import type { IntentionSource } from '../policy/authorizer.js';

/** First byte of nodemesh's own gossip messages: outside Serf's types (0–9), so Serf logs and skips them. */
const NODEMESH_GOSSIP_TYPE = 0x6e;
import type { AgentConfig } from '../config/agent-config.js';
import { LocalState } from '../local/local-state.js';
import { createMetrics } from '../api/metrics.js';
import { decodeServiceObject } from '../model/service-definition.js';
import { META_POD_UID } from '../local/kubernetes/pod-registrations.js';
import { PodWatcher } from '../local/kubernetes/pod-watcher.js';
import { VERSION } from '../lib/version.js';
import { assessPosture } from '../config/posture.js';

export interface RunningAgent {
  /** Where the HTTP API listens. */
  http: { host: string; port: number };
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
}

function advertiseAddress(bind: string): string {
  if (bind !== '0.0.0.0' && bind !== '::') return bind;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function nodeId(dataDir: string): string {
  const path = join(dataDir, 'node-id');
  try {
    const id = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
  } catch { /* first start */ }
  const id = randomUUID();
  // Write-and-rename: a torn file after a crash must not give the node a new identity.
  writeFileSync(`${path}.tmp`, `${id}\n`, { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
  return id;
}

export async function startAgent(config: AgentConfig, log: Logger, opts: StartOptions = {}): Promise<RunningAgent> {
  checkStartPosture(config, log);
  const tempDir = config.dataDir === undefined;
  const dataDir = config.dataDir ?? mkdtempSync(join(tmpdir(), 'nodemesh-dev-'));
  try {
    return await startIn(config, log, dataDir, tempDir, opts);
  } catch (e) {
    if (tempDir) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}

async function startIn(config: AgentConfig, log: Logger, dataDir: string, tempDir: boolean, opts: StartOptions): Promise<RunningAgent> {
  if (tempDir) log.warn({ dataDir }, 'dev mode: state is kept in a fresh temporary directory and deleted at exit; pass --data-dir to keep it');
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new NodemeshError('DATA_DIR_UNUSABLE', `cannot create data dir ${dataDir}: ${(e as Error).message}`, 1);
  }

  const address = advertiseAddress(config.bind);
  const info: NodeInfo = {
    ID: nodeId(dataDir), Node: config.node, Address: address, Datacenter: config.datacenter,
    TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
    Meta: { ...config.nodeMeta, 'consul-network-segment': '' },
  };
  const catalog = new Catalog();
  const metrics = createMetrics(catalog);
  const local = new LocalState({
    catalog, node: info, statePath: join(dataDir, 'local-state.json'), log,
    reapIntervalMs: config.checkReapIntervalMs, deregisterMinMs: config.checkDeregisterIntervalMinMs,
  });
  await local.start(config.services, decodeServiceObject);
  const defaultPolicy = config.defaultIntentionPolicy ?? (config.dev ? 'allow' : 'deny');
  // The backend: trust, leaves and intentions from the gossip pool's own CA and store, or from Consul.
  let consul: ConsulBackend | undefined;
  let builtin: { ca: CertificateAuthority; leafCerts: LeafCerts; store: IntentionStore; bundle: TrustBundle; entries: ConfigEntryStore; authority: PoolAuthority } | undefined;
  let trust: TrustSource;
  let leaves: LeafSource;
  let intentionList: IntentionSource;
  if (config.consulAddr) {
    try {
      consul = await ConsulBackend.start({ address: config.consulAddr, token: config.consulToken, catalog, node: config.node, log, registry: metrics.registry });
    } catch (e) {
      await local.close();
      throw e;
    }
    ({ trust, leaves } = consul);
    intentionList = consul.intentions;
  } else {
    const ca = await CertificateAuthority.open({ dataDir, caFile: config.caFile, caKeyFile: config.caKeyFile });
    const leafCerts = new LeafCerts(ca, { datacenter: config.datacenter, ttlMs: config.leafCertTtlMs, log });
    const store = new IntentionStore(join(dataDir, 'intentions.json'), config.node);
    await store.load();
    const bundle = TrustBundle.open(ca, dataDir, config.caTrustedRootsFile);
    const entries = new ConfigEntryStore(join(dataDir, 'config-entries.json'), config.node);
    await entries.load();
    // Who may sign what: this node's entry with its CA key; pool-wide policy with a policy credential (or the root key).
    let authority: PoolAuthority;
    try {
      const policyCred = config.policyCertFile && config.policyKeyFile ? loadPolicyCredential(config.policyCertFile, config.policyKeyFile, ca.trustDomain) : undefined;
      authority = new PoolAuthority(bundle, ca, config.node, policyCred, log);
    } catch (e) {
      bundle.stop();
      leafCerts.stop();
      await store.close();
      await entries.close();
      await local.close();
      throw e;
    }
    if (useSigner(authority, ca, store, entries)) {
      const resealed = await store.sealUnsigned() + await entries.sealUnsigned();
      if (resealed) log.info({ records: resealed }, 'signed policy records written before signing existed here');
    }
    if (ca.holdsRootKey && config.caFile && !config.dev) {
      log.warn({ code: 'AUTHORITY_ROOT_KEY_ON_NODE' }, 'this agent holds the pool\'s root key: every node given it is a policy authority and can sign any identity; use per-node intermediates (`nodemesh ca issue-intermediate --node`) and a policy writer (`nodemesh ca issue-policy`)');
    }
    builtin = { ca, leafCerts, store, bundle, entries, authority };
    trust = bundle;
    leaves = leafCerts;
    intentionList = withDefault(store, defaultPolicy);
  }
  // Kubernetes: this node's annotated pods register themselves; off without a cluster config and NODE_NAME.
  const podWatcher = await PodWatcher.fromEnvironment(log, {
    register: async (def) => {
      await local.registerService(decodeServiceObject(def as unknown as Record<string, unknown>), { replaceExistingChecks: true });
    },
    deregister: (id) => local.deregisterService(id),
    previous: () => local.services().filter((s) => s.Meta[META_POD_UID] !== undefined && !s.LocallyRegisteredAsSidecar).map((s) => s.ID),
  });

  // Decisions run per connection: matched once per destination and decided once per source, per change.
  const authorizer = new Authorizer(intentionList);
  const authorize = (source: { service: string; namespace: string }, destination: string) => authorizer.decide(source, destination);
  const proxyMetrics = new ProxyMetrics(metrics.registry, () => leaves);
  const dataPlane = new DataPlane({
    catalog, nodeName: config.node, bind: config.bind, tls: new ServiceTls(trust, leaves,
      // The pool's own CA: a node's intermediate speaks only for what the catalog lists on that node (Consul's CA has no node intermediates).
      consul ? undefined : new IdentityBinding(catalog, trust, { graceMs: config.identityGraceMs, log, metrics: proxyMetrics })), leaves,
    authorize, intentionsFeed: intentionList.feed, trustFeed: trust.feed, metrics: proxyMetrics, log,
    onListening: (proxyId) => local.checks.probeNow(proxyId),
    tunnel: config.dataPlaneTunnel,
    decideRequest: (i, r) => decideRequest(i, r, intentionList.defaultPolicy()),
    accessLog: config.accessLog,
    entries: consul ? consul.entries : { feed: builtin!.entries.feed, get index() { return builtin!.entries.index; }, get: (k, n) => builtin!.entries.get(k, n) },
  });
  await dataPlane.start();

  // Policy writes: signed here by a policy writer (or a root-key holder), else forwarded to one found in the pool.
  const refusedTotal = new Counter({ name: 'nodemesh_replication_refused_total', help: 'Replicated records and announcements refused: unsigned, signed by the wrong authority, or invalid.', labelNames: ['set'], registers: [metrics.registry] });
  const refusedLogged = new Set<string>();
  const refused = (set: string, subject: string, reason: string, from = '?') => {
    refusedTotal.inc({ set });
    const key = `${set}\0${subject}\0${reason}`;
    if (refusedLogged.has(key)) return;
    if (refusedLogged.size > 4096) refusedLogged.clear();
    refusedLogged.add(key);
    log.warn({ code: 'REPLICATED_STATE_REFUSED', set, subject, from, reason }, 'refused replicated state from a peer: it is not applied (logged once per subject and reason)');
  };
  const gossipRef: { current?: GossipMembership } = {};
  let policyWrites: PolicyWrites | undefined;
  let policySets: ReturnType<typeof signedPolicySet>[] = [];
  let policyEndpoint: { port: number; close(): Promise<void> } | undefined;
  if (builtin) {
    const b = builtin;
    // Records the stores refuse as the API would (from a peer, or found in their files at load, reported as this is
    // set): never applied, logged once per record and reason, counted.
    b.store.onRefused = b.entries.onRefused = (set, id, reason, from) => refused(set, id, reason, from);
    // A record from a signer not learned yet prompts a pull from its writer's node, at most every 5 s per node: a
    // peer sending records under made-up signers cannot turn each into a push/pull.
    const lastPull = new Map<string, number>();
    const events = {
      unknownSigner: (node: string) => {
        const now = Date.now();
        if (now - (lastPull.get(node) ?? 0) < 5000) return;
        if (lastPull.size > 4096) lastPull.clear();
        lastPull.set(node, now);
        gossipRef.current?.pull(node);
      },
      refused: (set: string, id: string, reason: string, from: string) => refused(set, id, reason, from),
    };
    policySets = [signedPolicySet('intentions', b.store, b.authority.verifier, events), signedPolicySet('config-entries', b.entries, b.authority.verifier, events)];
    if (b.authority.policySigner(b.ca)) {
      policyWrites = new LocalPolicyWrites(b.store, b.entries, config.operatorToken ?? config.aclToken);
    } else {
      policyWrites = new ForwardedPolicyWrites(
        () => (gossipRef.current?.serf.members() ?? []).filter((m) => m.status === 'alive' && /^\d{1,5}$/.test(m.tags.pw ?? '') && m.name !== config.node)
          .map((m) => ({ name: m.name, addr: m.addr, port: Number(m.tags.pw) })),
        b.bundle,
        (records, chain) => {
          b.authority.verifier.learn(chain);
          for (const r of records) policySets.find((ps) => ps.name === r?.set)?.merge([r.sig]);
        },
        log,
      );
    }
    if (b.authority.policy) {
      try {
        policyEndpoint = await startPolicyEndpoint({ bind: config.bind, port: config.policyPort, credential: b.authority.policy, writes: policyWrites, log });
      } catch (e) {
        await closeParts();
        throw e;
      }
      log.info({ policyWriter: b.authority.policy.name, listen: `${config.bind}:${policyEndpoint.port}` }, 'policy writer: signing intentions and config entries for the pool, taking forwarded writes');
    }
  }

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => { resolveStopped = r; });
  const router = new Router({ aclToken: config.aclToken, readsNeedToken: config.aclDefaultPolicy === 'deny', log, observe: metrics.observeHttp });
  let syncedWithPeer = false;
  const deps: ApiDeps = {
    config, catalog, local, log, metrics, version: VERSION, startedAt: new Date(),
    members: () => gossipRef.current?.members() ?? [],
    leave: () => void stop('leave requested through the API'),
    reload: () => reloadFromSource(),
    posture: () => assessPosture({
      config, dataDir, backend: consul ? 'consul' : 'gossip', defaultPolicy: intentionList.defaultPolicy(), leafExpiries: leaves.expiries(),
      caKeyFile: builtin ? (config.caKeyFile ?? join(dataDir, 'ca', 'root-key.pem')) : undefined,
      authority: builtin ? { holdsRootKey: builtin.ca.holdsRootKey, policyWriter: builtin.authority.policy?.name } : undefined,
    }),
    notReady: () => {
      const reasons: string[] = [];
      if (stopping) reasons.push('agent is shutting down');
      if (consul) reasons.push(...consul.notReady());
      else if (!gossipRef.current) reasons.push('gossip is not started yet');
      // Alone by config (no join, no retry_join): nothing to wait for.
      else if ((config.join.length || config.retryJoin.length) && !syncedWithPeer) {
        reasons.push(`catalog not yet synced with any peer (joining ${[...config.join, ...config.retryJoin].join(', ')})`);
      }
      const missing = dataPlane.missingListeners();
      if (missing.length) reasons.push(`listeners not open: ${missing.join(', ')}`);
      return reasons;
    },
  };
  agentServiceRoutes(router, deps);
  agentCheckRoutes(router, deps);
  agentSelfRoutes(router, deps);
  authorizeRoute(router, authorize);
  if (consul) {
    // Cluster-wide reads and writes are Consul's to answer.
    router.mount('consul pass-through', FORWARDED_PREFIXES, consulForward(consul.http, () => config.consulToken, config.aclToken, () => localIdentities(local, config.node)));
  } else {
    catalogRoutes(router, deps);
    healthRoutes(router, deps);
    connectRoutes(router, deps, { intentions: builtin!.store, trust: builtin!.bundle, leaves, defaultPolicy, protocolOf: (svc) => protocolOf(svc, (k, n) => builtin!.entries.get(k, n)), writes: policyWrites! });
    configRoutes(router, builtin!.entries, policyWrites!);
    // The gossip keyring (this agent's): gossip starts below, after the HTTP server, hence the lazy reference.
    operatorKeyringRoutes(router, deps, () => gossipRef.current);
  }

  /** Stops everything below the HTTP server and gossip, and flushes state: shared by a failed start and stop(). */
  async function closeParts(): Promise<void> {
    await policyEndpoint?.close();
    await dataPlane.stop();
    leaves.stop();
    if (consul) await consul.stop(false);
    if (builtin) {
      builtin.bundle.stop();
      await builtin.store.close();
      await builtin.entries.close();
    }
    await local.close();
  }

  const server: Server = createServer({ requestTimeout: 60_000, headersTimeout: 30_000 }, (req, res) => {
    router.handle(req, res).catch((e: Error) => {
      log.error({ err: e.stack }, 'request failed outside its handler');
      res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(new NodemeshError('HTTP_LISTEN_FAILED', `cannot listen on ${config.client}:${config.httpPort}: ${e.code ?? e.message}${e.code === 'EADDRINUSE' ? ' (another agent running? pick another --http-port)' : ''}`, 1));
    });
    server.listen(config.httpPort, config.client, () => resolve());
  }).catch(async (e) => {
    await closeParts();
    throw e;
  });
  const bound = server.address() as AddressInfo;
  // The gossip backend: the pool carries the catalog and intentions; members' liveness is node health.
  let gossip: GossipMembership | undefined;
  let reaper: NodeJS.Timeout | undefined;
  if (builtin) {
    const store = builtin.store;
    const replicator = new CatalogReplicator(catalog, config.node, policySets, {
      broadcast: (body, key) => gossipRef.current?.serf.broadcastApp(body, key),
      pull: (node) => gossipRef.current?.pull(node),
      isMember: (node) => {
        const n = gossipRef.current?.serf.memberlist.nodes.get(node);
        return n !== undefined && n.state !== NodeState.left;
      },
      refused: (what, node, reason) => refused(what, node, reason),
    }, builtin.authority);
    const warnedDomains = new Set<string>();
    /** Failed nodes whose tunnels were closed (once per failure). */
    const cutOff = new Set<string>();
    const syncHealth = () => {
      const g = gossipRef.current;
      if (!g) return;
      for (const n of g.serf.memberlist.nodes.values()) {
        if (n.name === config.node) continue;
        if (n.state !== NodeState.dead) cutOff.delete(n.name);
        else if (!cutOff.has(n.name)) {
          cutOff.add(n.name);
          dataPlane.tunnels.closeTo(n.addr, `node ${n.name} failed`);
          log.info({ node: n.name, addr: n.addr }, 'node failed: its tunnels are closed so callers move to live instances');
        }
        if (n.state === NodeState.left) catalog.removeNode(n.name);
        else if (n.state === NodeState.dead) {
          // A failed node is kept, critical, for reconnect_timeout (Consul: 72 h), then forgotten.
          if (Date.now() - n.stateChange > config.reconnectTimeoutMs) {
            catalog.removeNode(n.name);
            g.serf.memberlist.nodes.delete(n.name);
            cutOff.delete(n.name);
            log.info({ node: n.name }, 'reaped a node failed for longer than reconnect_timeout');
          } else catalog.setNodeHealth(n.name, 'critical', 'Agent not live or unreachable');
        } else catalog.setNodeHealth(n.name, 'passing', 'Agent alive and reachable');
      }
      for (const mb of g.serf.members()) {
        const td = mb.tags.td;
        if (!td || mb.status !== 'alive' || td === trust.trustDomain || warnedDomains.has(mb.name)) continue;
        warnedDomains.add(mb.name);
        log.warn({ node: mb.name, theirTrustDomain: td, ourTrustDomain: trust.trustDomain },
          'a pool member uses another trust domain: mesh traffic between us will be refused; give every agent the same CA (ca_file/ca_key_file)');
      }
    };
    reaper = setInterval(syncHealth, Math.min(15_000, Math.max(1000, config.reconnectTimeoutMs / 2)));
    reaper.unref();
    try {
      gossip = await GossipMembership.start({
        config, dataDir, advertise: address, httpPort: bound.port, nodeId: info.ID, log, onChange: syncHealth, trustDomain: trust.trustDomain,
        tags: policyEndpoint ? { pw: String(policyEndpoint.port) } : {},
        app: {
          type: NODEMESH_GOSSIP_TYPE,
          onMessage: (b) => replicator.onMessage(b),
          localState: () => replicator.localState(),
          mergeState: (b) => { replicator.mergeState(b); syncedWithPeer = true; syncHealth(); },
        },
      });
    } catch (e) {
      await new Promise<void>((r) => server.close(() => r()));
      await closeParts();
      throw e;
    }
    gossipRef.current = gossip;
    registerGossipMetrics(metrics.registry, gossip);
    catalog.feed.subscribe(() => replicator.localChanged());
    store.feed.subscribe(() => replicator.localChanged());
    builtin.entries.feed.subscribe(() => replicator.localChanged());
    replicator.localChanged();
  }
  podWatcher?.start();
  log.info({
    node: config.node, datacenter: config.datacenter, http: `${bound.address}:${bound.port}`, dataDir, version: VERSION,
    trustDomain: trust.trustDomain, defaultIntentionPolicy: intentionList.defaultPolicy(),
    ...(gossip ? { gossip: `${config.bind}:${gossip.port}` } : { consul: consul!.http.address }),
  }, 'nodemesh agent running');

  function stop(reason = 'shutdown'): Promise<void> {
    stopping ??= (async () => {
      log.info({ reason, drainTimeoutMs: config.drainTimeoutMs }, `agent stopping: refusing new connections, ${consul ? 'deregistering from consul' : 'leaving the gossip pool'}, draining open ones`);
      clearInterval(reaper);
      await podWatcher?.stop();
      // Drain: no new connections from here; open ones may finish while we leave the pool.
      const drained = dataPlane.drain(config.drainTimeoutMs);
      await gossip?.leave().catch((e: Error) => log.warn({ err: e.message }, 'gossip leave failed'));
      await gossip?.shutdown().catch((e: Error) => log.warn({ err: e.message }, 'gossip shutdown failed'));
      // Consul: our registrations go first, so peers stop picking this node while open connections finish.
      await consul?.stop(true).catch((e: Error) => log.warn({ err: e.message }, 'consul deregistration failed'));
      await drained;
      const closed = new Promise<void>((r) => server.close(() => r()));
      router.abortAll();
      catalog.feed.close();
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), 10_000);
      await closed;
      clearTimeout(force);
      await closeParts();
      if (tempDir) rmSync(dataDir, { recursive: true, force: true });
      log.info('agent stopped');
      resolveStopped();
    })();
    return stopping;
  }

  let caFiles = { caFile: config.caFile, caKeyFile: config.caKeyFile };
  let lastCaText = caText(config);
  async function reload(next: AgentConfig): Promise<void> {
    const services = await local.reloadConfigServices(next.services, decodeServiceObject);
    log.info(services, 'config services reloaded');
    const text = caText(next);
    const changedCa = next.caFile !== caFiles.caFile || next.caKeyFile !== caFiles.caKeyFile || text !== lastCaText;
    lastCaText = text;
    if (!builtin) {
      if (changedCa) log.warn('ca_file / ca_key_file are ignored with the Consul backend: the CA is Consul\'s');
    } else if (changedCa) {
      const nextCa = await CertificateAuthority.open({ dataDir, caFile: next.caFile, caKeyFile: next.caKeyFile });
      const { bundle, leafCerts } = builtin;
      if (nextCa.rootPems[0] !== bundle.ca.rootPems[0] || nextCa.intermediates.join() !== bundle.ca.intermediates.join()) {
        log.warn({ from: bundle.ca.trustDomain, to: nextCa.trustDomain }, 'CA rotation: new root active, old root trusted for one leaf lifetime; re-issuing leaves');
        bundle.rotate(nextCa, next.caTrustedRootsFile, config.leafCertTtlMs + 3_600_000);
        await leafCerts.rotate(nextCa);
        builtin.authority.rotate(nextCa);
        builtin.ca = nextCa;
        useSigner(builtin.authority, nextCa, builtin.store, builtin.entries);
      }
      caFiles = { caFile: next.caFile, caKeyFile: next.caKeyFile };
    } else {
      builtin.bundle.setExtraRoots(next.caTrustedRootsFile);
    }
    for (const k of ['node', 'datacenter', 'dataDir', 'bind', 'client', 'httpPort', 'aclToken'] as const) {
      if (next[k] !== config[k]) log.warn({ key: k }, 'config change needs a restart to take effect');
    }
  }

  async function reloadFromSource(): Promise<void> {
    await reload(opts.loadConfig ? opts.loadConfig() : config);
  }

  return {
    http: { host: bound.address, port: bound.port }, dataDir, catalog, local,
    backend: consul ? 'consul' : 'gossip',
    get ca() { return builtin?.bundle.ca; },
    trust, leaves, intentions: builtin?.store, consul, configEntries: builtin?.entries, dataPlane, gossip, stop, stopped, reload, reloadFromSource,
  };
}

/** Seals the policy stores' local writes with this agent's policy key for `ca` (none: they stay unsigned); whether it has one. */
function useSigner(authority: PoolAuthority, ca: CertificateAuthority, ...stores: { sealer?: (body: string) => RecordSeal }[]): boolean {
  const signer = authority.policySigner(ca);
  for (const s of stores) s.sealer = signer ? (body) => signer.signBlob(body) : undefined;
  return signer !== undefined;
}

/** The CA files' contents, so a reload notices a file replaced in place. */
function caText(c: AgentConfig): string {
  try {
    return c.caFile && c.caKeyFile ? readFileSync(c.caFile, 'utf8') + readFileSync(c.caKeyFile, 'utf8') : '';
  } catch {
    return '';
  }
}
